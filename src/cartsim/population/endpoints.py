"""Trial endpoints with 95% confidence intervals.

Proportions use the Wilson score interval. Times to an event that follow-up may not see
(progression, event-free survival, the end of B-cell aplasia) use the Kaplan-Meier
estimator of lifelines: median and 12-month rate, each with its 95% CI (lifelines'
exponential Greenwood interval). Medians of times every patient has (CRS onset and
duration, Tmax, Cmax) get the distribution-free interval of order statistics (exact
binomial; ``scipy.stats.quantile_test``). Only patients whose simulation succeeded enter
the endpoints; failures are counted in ``n_failed``.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

Z95 = 1.959963984540054  # two-sided 95% normal quantile
RESPONDED = ("CR", "VGPR", "PR")  # objective response: PR or better
#: Response and toxicity rates, overall and per subgroup (each with its Wilson 95% CI).
SUBGROUP_ENDPOINTS = ("orr", "cr", "crs_any", "crs_grade3plus", "icans_any", "icans_grade3plus")


def wilson(k: int, n: int) -> tuple[float | None, float | None]:
    """Wilson score 95% interval for k successes in n, in percent."""
    if n == 0:
        return None, None
    p = k / n
    den = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / den
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / den
    # at k = 0 (k = n) the bound is exactly 0 (100); the subtraction would leave rounding
    lo = 0.0 if k == 0 else 100 * max(0.0, centre - half)
    hi = 100.0 if k == n else 100 * min(1.0, centre + half)
    return lo, hi


def ci_key(endpoint: str) -> str:
    """The summary key of an endpoint's 95% CI: ``orr_pct`` -> ``orr_ci95``,
    ``crs_onset_median_days`` -> ``crs_onset_median_ci95``, ``median_pfs_days`` ->
    ``median_pfs_ci95``."""
    return endpoint.removesuffix("_pct").removesuffix("_days") + "_ci95"


def _pct(mask: np.ndarray, name: str, out: dict) -> None:
    n, k = int(mask.size), int(mask.sum())
    out[f"{name}_pct"] = None if n == 0 else 100.0 * k / n
    lo, hi = wilson(k, n)
    out[f"{name}_ci95"] = [lo, hi]


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    """A table column as floats, nulls as NaN."""
    return np.asarray(column.cast(pa.float64()).fill_null(float("nan")).to_numpy(), dtype=float)


def _finite(x) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x[np.isfinite(x)]


def _median(x) -> float | None:
    x = _finite(x)
    return float(np.median(x)) if x.size else None


def _median_ci(x) -> list[float | None]:
    """Distribution-free 95% CI of the median (order statistics, exact binomial); an end
    the sample cannot bound (too few values) is None."""
    from scipy.stats import quantile_test

    x = _finite(x)
    if not x.size:
        return [None, None]
    ci = quantile_test(x, q=float(np.median(x)), p=0.5).confidence_interval(0.95)
    return [float(v) if np.isfinite(v) else None for v in (ci.low, ci.high)]


def _iqr(x) -> list[float | None]:
    x = _finite(x)
    return [float(np.percentile(x, 25)), float(np.percentile(x, 75))] if x.size else [None, None]


#: Per-patient kinetic metrics summarised as distributions (``kinetics`` block), with units.
KINETIC_DISTRIBUTIONS = {
    "cmax_cells_per_ul": "cells/uL",      # CAR-T cells per uL blood
    "cmax_copies_per_ug": "copies/ug",    # transgene copies per ug genomic DNA
    "tmax_days": "day",
    "auc_0_28": "copies*day/ug",
}


def _distribution(x: np.ndarray, unit: str) -> dict:
    """A kinetic metric's spread between patients, as population PK tables report it:
    median with IQR, 5th-95th percentiles, and geometric mean with geometric CV%
    (100 * sqrt(exp(s^2) - 1), s the SD of ln x; positive values only)."""
    x = _finite(x)
    pos = x[x > 0]
    s = float(np.std(np.log(pos), ddof=1)) if pos.size > 1 else None
    pct = (lambda q: float(np.percentile(x, q))) if x.size else (lambda q: None)
    return {"unit": unit, "n": int(x.size), "median": pct(50), "median_ci95": _median_ci(x),
            "iqr": [pct(25), pct(75)],
            "p5_p95": [pct(5), pct(95)],
            "geo_mean": float(np.exp(np.mean(np.log(pos)))) if pos.size else None,
            "geo_cv_pct": None if s is None else float(100 * math.sqrt(math.expm1(s * s)))}


def endpoint_flags(table: pa.Table) -> dict[str, np.ndarray]:
    """Each patient's binary endpoints (one boolean per row of ``table``): the
    :data:`SUBGROUP_ENDPOINTS` and any tocilizumab or steroid use."""
    best = np.asarray(table.column("best_response").to_numpy(zero_copy_only=False), dtype=object)
    crs, icans = _floats(table.column("crs_max_grade")), _floats(table.column("icans_max_grade"))
    return {"orr": np.isin(best, RESPONDED), "cr": best == "CR", "crs_any": crs >= 1, "crs_grade3plus": crs >= 3,
            "icans_any": icans >= 1, "icans_grade3plus": icans >= 3,
            "tocilizumab": _floats(table.column("tocilizumab_doses")) > 0,
            "steroids": _floats(table.column("dexamethasone_doses")) > 0}


def summarise_trial(spec, table: pa.Table) -> dict:
    ok_all = np.asarray(table.column("ok").to_numpy(zero_copy_only=False), dtype=bool)
    good = table.filter(pa.array(ok_all))

    def num(name: str) -> np.ndarray:  # nulls -> NaN
        return _floats(good.column(name))

    def obj(name: str) -> np.ndarray:
        return np.asarray(good.column(name).to_numpy(zero_copy_only=False), dtype=object)

    n = good.num_rows
    crs = num("crs_max_grade")
    out: dict = {"trial": spec.name, "indication": spec.indication,
                 "product": spec.product if isinstance(spec.product, str) else "custom",
                 "n": int(len(ok_all)), "n_evaluated": n, "n_failed": int((~ok_all).sum()),
                 "seed": spec.seed, "follow_up_days": spec.follow_up_days}
    flags = endpoint_flags(good)
    responders = flags["orr"]
    for e in (*SUBGROUP_ENDPOINTS, "tocilizumab", "steroids"):
        _pct(flags[e], e, out)
    on = crs >= 1
    for key, col in (("crs_onset", "crs_onset_day"), ("crs_duration", "crs_duration_days")):
        out[f"{key}_median_days"] = _median(num(col)[on])
        out[f"{key}_median_ci95"] = _median_ci(num(col)[on])
    cmax = num("cmax_cells_per_ul")
    out["cmax_median"] = _median(cmax)
    out["cmax_iqr"] = _iqr(cmax)
    out["cmax_copies_median"] = _median(num("cmax_copies_per_ug"))
    out["tmax_median_days"] = _median(num("tmax_days"))
    out["auc_0_28_median"] = _median(num("auc_0_28"))
    out["cmax_copies_log_sd"] = _log_sd(num("cmax_copies_per_ug"))
    out["cmax_copies_ratio_responders"] = _geo_ratio(num("cmax_copies_per_ug"), responders)
    out["kinetics"] = {k: _distribution(num(k), unit) for k, unit in KINETIC_DISTRIBUTIONS.items()}
    out.update(_pfs(num("progression_day"), spec.follow_up_days))
    _pct(responders & np.isnan(num("progression_day")), "ongoing_response", out)
    out.update(_efs(num("progression_day"), early_response(good), spec.follow_up_days))
    start, back = num("b_cell_aplasia_day"), num("b_cell_recovery_day")
    # among patients with aplasia, which lasts until recovery, censored at the end of follow-up
    aplastic = np.isfinite(start)
    end, recovered = np.where(np.isnan(back), spec.follow_up_days, back)[aplastic], np.isfinite(back[aplastic])
    out["b_cell_aplasia_median_days"], out["b_cell_aplasia_median_ci95"] = _km_median(end - start[aplastic], recovered)
    out["baseline"] = _baseline(spec, good)
    if getattr(spec, "subgroups", None):
        out["subgroups"] = {name: _subgroup(good.column(name), flags) for name in spec.subgroups}
    if spec.indication == "sle":
        _pct(obj("response_day90") == "CR", "remission_day90", out)
        out["b_cell_return_median_days"], out["b_cell_return_median_ci95"] = _km_median(end, recovered)
    return out


def _baseline(spec, good: pa.Table) -> dict:
    """Baseline characteristics of the evaluated patients, as a trial's Table 1 reports them:
    median and range of continuous covariates and counts, share (%) of binary ones and of
    each level of categorical ones and of each age group."""
    from cartsim.population.sampling import age_groups

    out: dict = {}
    for name, d in spec.covariates().items():
        if name not in good.column_names:
            continue
        x = _floats(good.column(name))
        if d.among is not None:  # a share of the patients with the other covariate at 1
            x = x[_floats(good.column(d.among)) > 0]
        x = _finite(x)
        if not x.size:
            continue
        if d.distribution == "bernoulli":
            out[f"{name}_pct"] = float(100 * x.mean())
        elif d.distribution == "categorical":
            out[f"{name}_pct"] = {str(k): float(100 * np.mean(x == k)) for k in range(1, len(d.probs) + 1)}
        else:
            out[name] = {"median": float(np.median(x)), "range": [float(x.min()), float(x.max())]}
    if "age_group" in good.column_names:
        g = np.asarray(good.column("age_group").to_numpy(zero_copy_only=False), dtype=object)
        out["age_group_pct"] = {lab: float(100 * np.mean(g == lab)) for lab in age_groups()[1]} if g.size else {}
    return out


def _subgroup(column: pa.ChunkedArray, flags: dict[str, np.ndarray]) -> dict:
    """Endpoints by level of one covariate, as a trial's forest plot reports them.

    Categories (text, binary, counts with at most 6 values) are their own levels;
    continuous covariates are cut at the tertiles of the simulated population (the level
    names give the cut points).
    """
    values = np.asarray(column.to_numpy(zero_copy_only=False))
    if values.dtype.kind in "fi" and not (values.dtype.kind == "i" and np.unique(values).size <= 6):
        x = values.astype(float)
        lo, hi = np.nanquantile(x, [1 / 3, 2 / 3]) if np.isfinite(x).any() else (np.nan, np.nan)
        levels = {f"< {lo:.3g}": x < lo, f"{lo:.3g} to < {hi:.3g}": (x >= lo) & (x < hi), f">= {hi:.3g}": x >= hi}
    else:
        levels = {str(v): values == v for v in sorted(set(values.tolist()), key=str)}
    out = {}
    for level, mask in levels.items():
        row: dict = {"n": int(mask.sum())}
        for e in SUBGROUP_ENDPOINTS:
            _pct(flags[e][mask], e, row)
        out[level] = row
    return out


def _log_sd(x: np.ndarray) -> float | None:
    """Sample SD of ln(x) over positive finite values: comparable with sqrt(omega^2) of a
    lognormal between-patient effect (e.g. Stein 2019, Cmax omega^2 0.65)."""
    x = x[np.isfinite(x) & (x > 0)]
    return float(np.std(np.log(x), ddof=1)) if x.size > 1 else None


def _geo_ratio(x: np.ndarray, group: np.ndarray) -> float | None:
    """Geometric mean of ``x`` in ``group`` over that outside it (None if either is empty).

    For Cmax: responders over non-responders, as exposure-response is reported in
    prescribing information (e.g. Kymriah, B-ALL: 34,700 vs 20,000 copies/ug).
    """
    pos = np.isfinite(x) & (x > 0)
    a, b = x[pos & group], x[pos & ~group]
    if a.size == 0 or b.size == 0:
        return None
    return float(np.exp(np.mean(np.log(a)) - np.mean(np.log(b))))


def _fin(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _km_fit(durations: np.ndarray, observed: np.ndarray):
    """lifelines Kaplan-Meier fit; its median and the median's 95% CI (None: not reached,
    or an end the data cannot bound)."""
    from lifelines import KaplanMeierFitter
    from lifelines.utils import median_survival_times

    km = KaplanMeierFitter().fit(durations, event_observed=observed)
    lo, hi = median_survival_times(km.confidence_interval_).iloc[0]
    return km, _fin(km.median_survival_time_), [_fin(lo), _fin(hi)]


def _km_median(durations: np.ndarray, observed: np.ndarray) -> tuple[float | None, list]:
    """Kaplan-Meier median of censored durations with its 95% CI (None if no patient)."""
    if not durations.size:
        return None, [None, None]
    _, med, ci = _km_fit(durations, observed)
    return med, ci


#: Landmarks of the Kaplan-Meier rates (days): 6 and 12 months, as trials report them.
KM_LANDMARKS_DAYS = (182, 365)


def _km(event_day: np.ndarray, follow_up: int, name: str) -> dict:
    """Kaplan-Meier estimate (lifelines) of time to ``event_day`` (NaN: no event, censored
    at the end of follow-up): median with its 95% CI, and the rate at 6 and 12 months
    (:data:`KM_LANDMARKS_DAYS`; a landmark beyond follow-up becomes the end of follow-up)
    with its 95% CI, as ``<name>_<day>d_pct`` and ``<name>_<day>d_ci95``."""
    events = np.isfinite(event_day)
    days = np.where(events, event_day, follow_up)
    landmarks = sorted({min(at, follow_up) for at in KM_LANDMARKS_DAYS})
    out: dict = {f"median_{name}_days": None, f"median_{name}_ci95": [None, None]}
    for at in landmarks:
        out[f"{name}_{at}d_pct"], out[f"{name}_{at}d_ci95"] = None, [None, None]
    if not days.size:
        return out
    km, out[f"median_{name}_days"], out[f"median_{name}_ci95"] = _km_fit(days, events)
    band = km.confidence_interval_survival_function_
    for at in landmarks:
        lo, hi = band[band.index <= at].iloc[-1]  # the step function at day ``at``
        out[f"{name}_{at}d_pct"] = float(100 * km.predict(at))
        out[f"{name}_{at}d_ci95"] = [100 * float(lo), 100 * float(hi)]
    return out


#: Day by which a patient must have responded (PR or better) not to count as a treatment
#: failure in EFS: ELIANA's primary end point was remission within 3 months (Maude SL et
#: al. N Engl J Med 2018), and its EFS counts treatment failure as an event.
EFS_RESPONSE_WINDOW_DAYS = 90


def _pfs(progression_day: np.ndarray, follow_up: int) -> dict:
    """PFS (event: progression or loss of CR; censored at end of follow-up)."""
    return _km(progression_day, follow_up, "pfs")


def early_response(table: pa.Table) -> np.ndarray:
    """PR or better on day 28 or day 90, per row of a trial's patient table."""
    return np.isin(table.column("response_day28").to_numpy(zero_copy_only=False), RESPONDED) | \
        np.isin(table.column("response_day90").to_numpy(zero_copy_only=False), RESPONDED)


def efs_event_day(progression_day: np.ndarray, responded: np.ndarray, follow_up: int) -> np.ndarray:
    """Day of the EFS event: progression or loss of CR, or treatment failure (no PR or
    better on day 28 or day 90) dated at the end of the response window; NaN if none.
    Death is not modelled."""
    failure = np.where(responded, np.nan, float(min(EFS_RESPONSE_WINDOW_DAYS, follow_up)))
    return np.fmin(progression_day, failure)


def _efs(progression_day: np.ndarray, responded: np.ndarray, follow_up: int) -> dict:
    """EFS: the Kaplan-Meier estimate of :func:`efs_event_day`."""
    return _km(efs_event_day(progression_day, responded, follow_up), follow_up, "efs")
