"""Population calibration: between-patient variances, and typical values by indication
that only trial outcomes show, fitted to published trial endpoints.

The typical patient is calibrated first, to kinetic and toxicity targets
(``scripts/calibrate_kinetics.py``, ``scripts/calibrate_toxicity.py``); this step fits
what a typical patient cannot show, the spread between patients, which sets response,
CRS and ICANS *rates*. The free parameters are the variances (omega^2) of three lognormal
random effects in ``variability.csv``: tumour sensitivity to killing (``kill.gamma``),
inflammatory responsiveness (``act.K_kill``) and neurotoxicity susceptibility
(``neuro.K_il6``); and, in ``parameters.csv``, the median share of antigen-negative cells
at infusion in B-ALL, lymphoma and myeloma (``indication.<name>.antigen_negative_fraction``),
which sets antigen-negative relapse and so EFS and ongoing response, and in myeloma the
depth of response (CR); and the steepness of
the ICE score's fall with neuro-inflammatory drive (``neuro.ice_hill``), which sets how
much of ICANS is severe. None of them moves a typical patient's kinetics, so the kinetic
fit stays valid. ``neuro.ice_hill`` does move the typical patient's ICANS grade, which
``scripts/calibrate_toxicity.py`` fits: run that again after this step, and this step
again if it moved (docs/validation.md shows both).

Targets are the rows of ``params/data/population_targets.csv`` with ``role ==
calibration``; every one of them is ``verified`` or ``secondary`` (checked on load).
``check`` rows (unverified values, other grading scales) and ``prediction`` rows (JULIET,
held out of the fit) are only reported. No trial result enters the model: each virtual
trial is simulated from its preset's product, indication, dose and population alone.

Grading scales. The model grades CRS and ICANS by ASTCT consensus criteria. Any-grade
CRS is fever-defined in every scale (Lee 2014, Penn, ASTCT), so any-grade rates are
compared directly. Grade >= 3 is compared for ASTCT and Lee 2014 (both: vasopressors or
high-flow oxygen) but not for the Penn scale, which grades higher. Neurotoxicity reported
as "neurological events" (ELIANA, JULIET, ZUMA-1) or as all CAR-T neurotoxicity
(CARTITUDE-1, with parkinsonism and cranial nerve palsies) counts events ICANS does not,
so it is shown but not fitted.

The objective is the sum of squared differences between simulated and published
percentages, each scaled by the binomial standard error of the published value (its
trial's n). Simulations use common random numbers (fixed seed; variances scale the same
standard-normal draws), so the objective is deterministic and Nelder-Mead applies.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import date

import numpy as np

from cartsim.params import InputError, data_path
from cartsim.patient.simulate import variability
from cartsim.population.endpoints import ci_key, wilson
from cartsim.population.spec import load_trial
from cartsim.population.trial import run_trial

#: Free parameters: variance (omega^2) names and bounds.
FREE = {
    "kill.gamma": (0.01, 4.0),
    "act.K_kill": (0.01, 6.0),
    "neuro.K_il6": (0.01, 6.0),
}
#: Free typical values (``parameters.csv``) fitted at population level, with their
#: bounds: what only a trial's rates show. The median share of antigen-negative cells at
#: infusion sets how many responders carry a clone above the extinction size, i.e.
#: CD19-negative relapse: in B-ALL (ELIANA EFS at 12 months) and lymphoma (ZUMA-1 ongoing
#: response at 15.4 months); in myeloma, disease that escapes BCMA CAR-T killing, which
#: keeps M-protein above the CR threshold and regrows (KarMMa and CARTITUDE-1 CR). The steepness of the ICE score's fall with neuro-inflammatory
#: drive sets the share of ICANS that is severe (grade >= 3 against any grade).
FREE_TYPICAL = {
    "indication.b-all.antigen_negative_fraction": (1e-13, 1e-6),
    "indication.lbcl.antigen_negative_fraction": (1e-13, 1e-6),
    "indication.mm.antigen_negative_fraction": (1e-8, 1e-2),
    "neuro.ice_hill": (1.0, 12.0),
}
TARGET_EVIDENCE = ("verified", "secondary")


@dataclass(frozen=True)
class Target:
    trial: str
    endpoint: str
    published: float
    n: int
    role: str
    scale: str
    evidence: str
    source: str
    notes: str

    @property
    def is_pct(self) -> bool:
        return self.endpoint.endswith("_pct")

    def published_ci(self) -> tuple[float | None, float | None]:
        """Wilson 95% CI of a published percentage (its trial's n); None for other endpoints."""
        if not self.is_pct:
            return None, None
        return wilson(round(self.published * self.n / 100), self.n)


def load_targets() -> list[Target]:
    with open(data_path("population_targets.csv"), newline="", encoding="utf-8") as fh:
        rows = [Target(r["trial"], r["endpoint"], float(r["published"]), int(r["n"]), r["role"],
                       r["scale"], r["evidence"], r["source"], r["notes"]) for r in csv.DictReader(fh)]
    for t in rows:
        if t.role == "calibration" and t.evidence not in TARGET_EVIDENCE:
            raise InputError(f"population_targets.csv[{t.trial}.{t.endpoint}].evidence", t.evidence,
                             "verified or secondary for a calibration target")
    return rows


@dataclass
class Comparison:
    target: Target
    simulated: float | None
    simulated_ci: tuple[float | None, float | None]
    n_simulated: int

    @property
    def within(self) -> bool | None:
        """Simulated value inside the 95% CI of the published percentage."""
        lo, hi = self.target.published_ci()
        if lo is None or self.simulated is None:
            return None
        return lo <= self.simulated <= hi


def simulate_trials(trials, n: int, seed: int = 20261122, omega2: dict | None = None,
                    progress=None, typical: dict | None = None) -> dict[str, dict]:
    """Summaries of the named trial presets, each with ``n`` virtual patients; ``typical``
    replaces values of the parameter table (population calibration). ``preset@dose`` (e.g.
    ``crb-401@5e7``, ``zuma-1@1e6/kg``) is the preset at that dose, for dose-level rows."""
    from cartsim.params import load_parameters
    from cartsim.population.compare import dose_rule

    params = load_parameters().replace(typical, source="population calibration trial") if typical else None
    out = {}
    for name in trials:
        preset, _, dose = name.partition("@")
        spec = load_trial(preset, n=n, seed=seed, dose=dose_rule(dose) if dose else None)
        out[name] = run_trial(spec, omega2=omega2, params=params).summary
        if progress is not None:
            progress(name)
    return out


def compare(targets, summaries: dict[str, dict]) -> list[Comparison]:
    rows = []
    for t in targets:
        s = summaries.get(t.trial)
        if s is None:
            continue
        val = s.get(t.endpoint)
        ci = tuple(s.get(ci_key(t.endpoint)) or (None, None))
        rows.append(Comparison(t, val, ci, int(s.get("n_evaluated", 0))))
    return rows


def objective(comparisons) -> float:
    total = 0.0
    for c in comparisons:
        if c.target.role != "calibration":
            continue
        p = min(max(c.target.published / 100, 0.02), 0.98)
        se = 100 * math.sqrt(p * (1 - p) / c.target.n)
        sim = c.simulated if c.simulated is not None else 0.0
        total += ((sim - c.target.published) / se) ** 2
    return total


def fit(n: int = 200, max_evals: int = 60, seed: int = 20261122, log=print) -> tuple[dict[str, float], dict[str, float]]:
    """Fit the variances in :data:`FREE` and the typical values in :data:`FREE_TYPICAL`
    (both on a log scale, clipped to their bounds); returns the best ``(omega2, typical)``."""
    from scipy.optimize import minimize

    from cartsim.params import load_parameters

    targets = load_targets()
    trials = sorted({t.trial for t in targets if t.role == "calibration"})
    w0, p0 = variability(), load_parameters()
    names = list(FREE) + list(FREE_TYPICAL)
    bounds = [*FREE.values(), *FREE_TYPICAL.values()]
    lo, hi = np.log([b[0] for b in bounds]), np.log([b[1] for b in bounds])
    x0 = np.clip(np.log([w0[k] for k in FREE] + [p0.value(k) for k in FREE_TYPICAL]), lo, hi)
    k = [0]

    def split(x):
        v = dict(zip(names, np.exp(np.clip(x, lo, hi))))
        return {a: v[a] for a in FREE}, {a: v[a] for a in FREE_TYPICAL}

    def cost(x):
        om, typ = split(x)
        c = objective(compare(targets, simulate_trials(trials, n, seed, om, typical=typ)))
        k[0] += 1
        log(f"  evaluation {k[0]}: " + ", ".join(f"{a}={b:.3g}" for a, b in {**om, **typ}.items()) + f"  cost {c:.4g}")
        return c

    res = minimize(cost, x0, method="Nelder-Mead",
                   options={"maxfev": max_evals, "xatol": 0.05, "fatol": 0.1, "initial_simplex": _simplex(x0, lo, hi)})
    return split(res.x)


def _simplex(x0, lo, hi):
    pts = [x0]
    for i in range(len(x0)):
        x = x0.copy()
        x[i] = x[i] + 1.0 if x[i] + 1.0 <= hi[i] else x[i] - 1.0
        pts.append(x)
    return np.array(pts)


def _store(file: str, column: str, values: dict[str, float], n: int, seed: int, notes: str | None = None) -> None:
    """Write fitted ``values`` into ``column`` of the named rows of a data CSV, with their
    provenance (evidence ``calibrated``, source: this command, date, n and seed)."""
    path = data_path(file)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    stamp = (f"cartsim calibrate ({date.today().isoformat()}; n={n} per trial, seed {seed}) to the "
             "calibration rows of population_targets.csv")
    for r in rows:
        if r["name"] in values:
            r[column] = f"{values[r['name']]:.4g}"
            r["evidence"] = "calibrated"
            r["source"] = stamp
            if notes is not None:
                r["notes"] = notes
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def write_variability(omega2: dict[str, float], n: int, seed: int) -> None:
    """Store fitted variances in ``variability.csv`` with their provenance."""
    _store("variability.csv", "omega2", omega2, n, seed, "Fitted variance; see docs/validation.md (virtual trials).")
    from cartsim.patient.simulate import _variability

    _variability.cache_clear()  # later simulations in this process see the new variances


def write_typical(values: dict[str, float], n: int, seed: int) -> None:
    """Store fitted typical values in ``parameters.csv`` with their provenance."""
    _store("parameters.csv", "value", values, n, seed)
    from cartsim.params.loader import _default_table

    _default_table.cache_clear()  # later simulations in this process see the new values
