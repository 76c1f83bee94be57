"""Side-by-side comparison of the typical simulated patient with published kinetics.

The reference values, tolerances and their sources live in
``params/data/kinetic_targets.csv``; ``role`` says whether a row was a calibration
target, a check of a parameter taken from the same source, or a true prediction.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from cartsim.params import ParameterTable, data_path
from cartsim.patient.build import PatientSpec
from cartsim.patient.simulate import SimulationResult, simulate_many

DAYS = 365


@dataclass(frozen=True)
class KineticCheck:
    id: str
    indication: str
    product: str
    metric: str
    reference: float | str
    low: float
    high: float
    unit: str
    role: str
    source: str
    evidence: str
    simulated: float | None

    @property
    def ok(self) -> bool:
        return self.simulated is not None and self.low <= self.simulated <= self.high


TARGET_FILES = {"kinetics": "kinetic_targets.csv", "toxicity": "toxicity_targets.csv"}


def load_targets(kind: str = "kinetics") -> list[dict]:
    with open(data_path(TARGET_FILES[kind]), newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def metric_value(result: SimulationResult, metric: str) -> float | None:
    if metric.startswith("cells_per_ul_day"):
        day = int(metric.removeprefix("cells_per_ul_day"))
        return float(result.daily["car_t_cells_per_ul"][day])
    v = result.metrics.get(metric)
    return None if v is None else float(v)


def kinetic_checks(params: ParameterTable | None = None, kind: str = "kinetics") -> list[KineticCheck]:
    """Simulate each referenced (indication, product) typical patient once; compare.

    ``kind`` selects the target table: ``kinetics`` or ``toxicity``.
    """
    targets = load_targets(kind)
    cases = sorted({(t["indication"], t["product"]) for t in targets})
    results = dict(zip(cases, simulate_many([(i, p, PatientSpec()) for i, p in cases],
                                            days=DAYS, params=params)))
    return [
        KineticCheck(t["id"], t["indication"], t["product"], t["metric"], _number(t["reference"]),
                     float(t["tolerance_low"]), float(t["tolerance_high"]), t["unit"], t["role"],
                     t["source"], t["evidence"],
                     metric_value(results[(t["indication"], t["product"])], t["metric"]))
        for t in targets
    ]


def _fmt(x: float | str | None) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.3e}"


@dataclass(frozen=True)
class TrialCheck:
    """One published trial endpoint beside its virtual-trial estimate."""

    id: str
    trial: str
    endpoint: str
    published: float
    published_ci: tuple
    simulated: float | None
    simulated_ci: tuple
    scale: str
    role: str
    source: str
    evidence: str
    within: bool | None

    HEADER = ("trial", "endpoint", "published", "published 95% CI", "simulated", "simulated 95% CI",
              "scale", "evidence", "role", "within")

    def cells(self) -> list[str]:
        def ci(c):
            return "-" if c[0] is None or c[1] is None else f"{c[0]:.1f}-{c[1]:.1f}"
        return [self.trial, self.endpoint, _fmt(self.published), ci(self.published_ci), _fmt(self.simulated),
                ci(self.simulated_ci), self.scale or "-", self.evidence, self.role,
                "-" if self.within is None else ("yes" if self.within else "NO")]


def trial_comparisons(n: int = 400, seed: int = 20261122) -> list[TrialCheck]:
    """Simulate every trial preset with targets in population_targets.csv and compare."""
    from cartsim.population.calibrate import compare, load_targets, simulate_trials

    targets = load_targets()
    trials = list(dict.fromkeys(t.trial for t in targets))
    out = []
    for c in compare(targets, simulate_trials(trials, n, seed)):
        t = c.target
        out.append(TrialCheck(f"{t.trial}.{t.endpoint}", t.trial, t.endpoint, t.published, t.published_ci(),
                              c.simulated, c.simulated_ci, t.scale, t.role, t.source, t.evidence, c.within))
    return out


def render_table(checks: list) -> list[list[str]]:
    if checks and isinstance(checks[0], TrialCheck):
        return [list(TrialCheck.HEADER)] + [c.cells() for c in checks]
    header = ["check", "indication", "product", "metric", "reference", "simulated",
              "tolerance", "unit", "role", "within"]
    rows = [header]
    for c in checks:
        rows.append([c.id, c.indication, c.product, c.metric, _fmt(c.reference), _fmt(c.simulated),
                     f"{_fmt(c.low)}-{_fmt(c.high)}", c.unit, c.role, "yes" if c.ok else "NO"])
    return rows


def render_markdown(checks: list) -> str:
    rows = render_table(checks)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    lines.append("")
    lines.append("Sources:")
    lines.append("")
    seen = set()
    for c in checks:
        key = c.trial if isinstance(c, TrialCheck) else c.id
        if isinstance(c, TrialCheck):
            if (key, c.source) in seen:
                continue
            seen.add((key, c.source))
        lines.append(f"- `{key}`: {c.source}" + ("" if isinstance(c, TrialCheck) else f" (evidence: {c.evidence})"))
    return "\n".join(lines)
