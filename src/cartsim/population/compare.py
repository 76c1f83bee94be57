"""Paired comparison of virtual trials on the same virtual patients: two trials
(:func:`compare_trials`, ``cartsim compare``) or one trial at several doses
(:func:`dose_sweep`, ``cartsim sweep``).

"What would a different product, dose, regimen or policy change?" Both trials are run on
the same virtual patients: patient ``i`` has the same covariates and random effects in
both (the draws are counter-based on the seed and the patient's index), so each patient
is their own control and the differences have far narrower intervals than two separate
trials would give. Trial B takes A's ``n``, ``seed`` and follow-up; both must concern the
same indication. Patients flagged in either trial are left out of the pairs.

Intervals (95%):

- binary endpoints (ORR, CR, CRS and ICANS any / grade >= 3, tocilizumab and steroid
  use): the difference of the paired proportions with Newcombe's hybrid score interval
  for paired data (Newcombe RG. Stat Med 1998;17:2635-2650, method 10), built from the
  Wilson intervals of the two rates and the continuity-corrected phi correlation of the
  pairs (written here: scipy, a dependency already, has no paired-proportion interval;
  it matches the formula of R's biostatUZH::confIntPairedProportion);
- Cmax and AUC: the geometric mean ratio B/A, exp of a t interval on the paired log
  differences; Tmax: the mean paired difference with a t interval.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
from scipy import stats

from cartsim.params import InputError
from cartsim.population.endpoints import SUBGROUP_ENDPOINTS, _floats, endpoint_flags, wilson
from cartsim.population.spec import DoseRule, TrialSpec
from cartsim.population.trial import run_trial

#: Binary endpoints compared, in the order reported.
COMPARED_ENDPOINTS = (*SUBGROUP_ENDPOINTS, "tocilizumab", "steroids")
#: Positive kinetic metrics compared as geometric mean ratios (B over A).
RATIO_METRICS = ("cmax_cells_per_ul", "cmax_copies_per_ug", "auc_0_28")
#: Kinetic metrics compared as mean paired differences (B minus A).
DIFFERENCE_METRICS = ("tmax_days",)


def paired_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Difference of paired proportions, B minus A, in percentage points, with Newcombe's
    method-10 95% interval; ``a`` and ``b`` are the pairs' 0/1 outcomes."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    n = a.size
    if n == 0:
        return math.nan, math.nan, math.nan
    both, b_only, a_only, neither = (int(np.sum(x)) for x in (a & b, b & ~a, a & ~b, ~a & ~b))
    p_b, p_a = (both + b_only) / n, (both + a_only) / n
    l_b, u_b = (x / 100 for x in wilson(both + b_only, n))
    l_a, u_a = (x / 100 for x in wilson(both + a_only, n))
    den = (both + b_only) * (a_only + neither) * (both + a_only) * (b_only + neither)
    cross = both * neither - b_only * a_only
    cross = max(cross - n / 2, 0.0) if cross > 0 else cross  # Newcombe's continuity correction
    phi = cross / math.sqrt(den) if den > 0 else 0.0
    d = p_b - p_a
    lower = math.sqrt(max((p_b - l_b) ** 2 - 2 * phi * (p_b - l_b) * (u_a - p_a) + (u_a - p_a) ** 2, 0.0))
    upper = math.sqrt(max((u_b - p_b) ** 2 - 2 * phi * (u_b - p_b) * (p_a - l_a) + (p_a - l_a) ** 2, 0.0))
    return 100 * d, 100 * max(d - lower, -1.0), 100 * min(d + upper, 1.0)


def _t_interval(d: np.ndarray) -> tuple[float, float, float]:
    """Mean of paired differences ``d`` with its 95% t interval (NaN if fewer than 2)."""
    d = d[np.isfinite(d)]
    if d.size < 2:
        return (float(d.mean()) if d.size else math.nan), math.nan, math.nan
    m, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size))
    half = float(stats.t.ppf(0.975, d.size - 1)) * se
    return m, m - half, m + half


def compare_tables(a: pa.Table, b: pa.Table) -> dict:
    """Paired endpoints of two per-patient tables of the same patients (``patient`` column)."""
    ia, ib = (np.asarray(t.column("patient").to_numpy()) for t in (a, b))
    if not np.array_equal(ia, ib):
        raise ValueError("the two trials do not hold the same patients")
    ok = (np.asarray(a.column("ok").to_numpy(zero_copy_only=False), dtype=bool)
          & np.asarray(b.column("ok").to_numpy(zero_copy_only=False), dtype=bool))
    a, b = a.filter(pa.array(ok)), b.filter(pa.array(ok))
    fa, fb = endpoint_flags(a), endpoint_flags(b)
    out: dict = {"n_paired": int(ok.sum()), "endpoints": {}, "kinetics": {}}
    for e in COMPARED_ENDPOINTS:
        d, lo, hi = paired_difference(fa[e], fb[e])
        out["endpoints"][e] = {"a_pct": 100 * float(fa[e].mean()) if ok.any() else None,
                               "b_pct": 100 * float(fb[e].mean()) if ok.any() else None,
                               "difference_pct": _num(d), "difference_ci95": [_num(lo), _num(hi)]}
    for m in RATIO_METRICS:
        xa, xb = _floats(a.column(m)), _floats(b.column(m))
        good = (xa > 0) & (xb > 0) & np.isfinite(xa) & np.isfinite(xb)
        mean, lo, hi = _t_interval(np.log(xb[good]) - np.log(xa[good]))
        out["kinetics"][m] = {"geo_mean_ratio": _num(math.exp(mean)), "ci95": [_num(math.exp(lo)), _num(math.exp(hi))],
                              "n": int(good.sum())}
    for m in DIFFERENCE_METRICS:
        d = _floats(b.column(m)) - _floats(a.column(m))
        mean, lo, hi = _t_interval(d)
        out["kinetics"][m] = {"mean_difference": _num(mean), "ci95": [_num(lo), _num(hi)],
                              "n": int(np.isfinite(d).sum())}
    return out


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def compare_trials(a: TrialSpec, b: TrialSpec, out: Path | None = None, progress=None) -> dict:
    """Run ``a`` and ``b`` on the same virtual patients and compare them (B against A).

    B takes A's ``n``, ``seed`` and ``follow_up_days``; results of each trial go to
    ``out/a`` and ``out/b`` (as :func:`run_trial` writes them), the comparison to
    ``out/comparison.json`` by the caller. ``progress(label, done, total)`` reports both runs.
    """
    if b.indication != a.indication:
        raise InputError(f"{b.name}.indication", b.indication,
                         f"the indication of {a.name} ({a.indication}): a paired comparison needs the same patients")
    b = b.model_copy(update={"n": a.n, "seed": a.seed, "follow_up_days": a.follow_up_days})
    results = {}
    for label, spec in (("a", a), ("b", b)):
        cb = None if progress is None else (lambda done, total, label=label: progress(label, done, total))
        results[label] = run_trial(spec, None if out is None else out / label, progress=cb)
    cmp = compare_tables(results["a"].patients, results["b"].patients)
    return {"a": a.name, "b": b.name, "indication": a.indication, "n": a.n, "seed": a.seed,
            "follow_up_days": a.follow_up_days, **cmp,
            "summaries": {"a": results["a"].summary, "b": results["b"].summary}}


#: Endpoints (with their 95% CIs) reported for each arm of a dose sweep.
SWEEP_ENDPOINTS = ("orr", "cr", "crs_any", "crs_grade3plus", "icans_any", "icans_grade3plus", "tocilizumab")


def dose_rule(text: str) -> DoseRule:
    """``1e8`` (flat CAR+ cells) or ``2e6/kg`` as a trial's dose rule."""
    from cartsim.patient.simulate import parse_dose

    d = parse_dose(text)
    return DoseRule(per_kg=d.value) if d.per_kg else DoseRule(flat=d.value)


def dose_sweep(spec: TrialSpec, doses: list[str], out: Path | None = None, progress=None) -> dict:
    """Run ``spec`` at each of ``doses`` (``1e8`` flat, ``2e6/kg`` per kg) on the same
    virtual patients: each arm's endpoints with their 95% CIs (Wilson; the median Cmax
    with its distribution-free CI) and each later arm against the first with paired 95%
    CIs (:func:`compare_tables`). Arm ``k`` (from 1) is written to ``out/dose-k``;
    ``progress(k, done, total)`` reports the runs."""
    if not doses:
        raise InputError("dose", "", "at least one dose, e.g. 5e7,1.5e8,4.5e8 or 1e6/kg,2e6/kg")
    rules = [dose_rule(text) for text in doses]  # every dose checked before any arm runs
    arms, first = [], None
    for k, (text, rule) in enumerate(zip(doses, rules), start=1):
        arm = spec.model_copy(update={"dose": rule})
        cb = None if progress is None else (lambda done, total, k=k: progress(k, done, total))
        res = run_trial(arm, None if out is None else out / f"dose-{k}", progress=cb)
        s, cmax = res.summary, res.summary["kinetics"]["cmax_cells_per_ul"]
        row = {"dose": text, "n_evaluated": s["n_evaluated"], "n_failed": s["n_failed"],
               **{f"{e}_{x}": s[f"{e}_{x}"] for e in SWEEP_ENDPOINTS for x in ("pct", "ci95")},
               "cmax_cells_per_ul_median": cmax["median"], "cmax_cells_per_ul_median_ci95": cmax["median_ci95"]}
        if first is None:
            first = res.patients
        else:
            row["vs_first"] = compare_tables(first, res.patients)
        arms.append(row)
    return {"trial": spec.name, "indication": spec.indication, "n": spec.n, "seed": spec.seed,
            "follow_up_days": spec.follow_up_days, "arms": arms}
