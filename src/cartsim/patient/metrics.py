"""Per-patient summary metrics from daily trajectories (clinical units).

Kinetic metrics follow the conventions of population cellular-kinetic analyses
(Stein 2019): Cmax/Tmax from the blood level, AUC by the trapezoidal rule, the
expansion doubling time from the log-linear slope between the end of the lag phase and
Tmax, the contraction half-life from days Tmax..Tmax+14 and the persistence half-life
from day 90 to the end of follow-up.
"""

from __future__ import annotations

import math

import numpy as np

from cartsim.patient.indication import Indication

RESPONSES = ("CR", "VGPR", "PR", "SD", "PD")
_LN2 = math.log(2)


def kinetic_metrics(days: np.ndarray, cells_ul: np.ndarray, copies: np.ndarray) -> dict:
    """Cmax, Tmax, AUC0-28, doubling time, contraction and persistence half-lives.

    One patient through :func:`kinetic_metrics_batch` (one implementation of the rules);
    metrics that cannot be computed are None.
    """
    out = kinetic_metrics_batch(np.asarray(days, dtype=float), np.asarray(cells_ul, dtype=float)[None],
                                np.asarray(copies, dtype=float)[None])
    return {k: (None if not np.isfinite(v[0]) else float(v[0])) for k, v in out.items()}


# The rules below work on a whole block of patients at once (arrays of shape [batch,
# days + 1]), so a trial never loops over patients in Python; a single patient is a block
# of one (cartsim.patient.simulate.summarise), so each rule has one implementation.

def _first(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first True along the last axis and whether there is one."""
    return np.argmax(mask, axis=-1), mask.any(axis=-1)


def _masked_slope(days: np.ndarray, logv: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Least-squares slope of ``logv`` on ``days`` over the points where ``w`` (NaN if < 2)."""
    w = w.astype(float)
    n = w.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.where(w > 0, days, 0.0)
        y = np.where(w > 0, logv, 0.0)
        sx, sy = (w * x).sum(-1), (w * y).sum(-1)
        sxx, sxy = (w * x * x).sum(-1), (w * x * y).sum(-1)
        den = sxx - sx * sx / n
        s = (sxy - sx * sy / n) / den
    return np.where((n >= 2) & (den > 0), s, np.nan)


def kinetic_metrics_batch(days: np.ndarray, cells_ul: np.ndarray, copies: np.ndarray) -> dict:
    """:func:`kinetic_metrics` for arrays ``[batch, T]``; missing values are NaN."""
    B, T = cells_ul.shape
    rows = np.arange(B)
    i_max = np.argmax(cells_ul, axis=1)
    tmax = days[i_max].astype(float)
    inner = (i_max > 0) & (i_max < T - 1)
    im1, ip1 = np.clip(i_max - 1, 0, T - 1), np.clip(i_max + 1, 0, T - 1)
    a, b, c = cells_ul[rows, im1], cells_ul[rows, i_max], cells_ul[rows, ip1]
    with np.errstate(divide="ignore", invalid="ignore"):
        la, lb, lc = np.log(a), np.log(b), np.log(c)
        denom = la - 2 * lb + lc
        shift = 0.5 * (la - lc) / denom
    use = inner & (a > 0) & (b > 0) & (c > 0) & (denom < 0)
    tmax = np.where(use, tmax + np.where(use, shift, 0.0), tmax)
    in28 = days <= 28
    d28 = days[in28]
    out = {
        "cmax_cells_per_ul": cells_ul[rows, i_max],
        "cmax_copies_per_ug": copies[rows, i_max],
        "tmax_days": tmax,
        "auc_0_28": np.trapezoid(copies[:, in28], d28, axis=1),
        "auc_0_28_cells": np.trapezoid(cells_ul[:, in28], d28, axis=1),
    }
    with np.errstate(divide="ignore"):
        logc = np.log(copies)
    pos = copies > 0
    idx = np.arange(T)[None, :]
    before = np.where(idx < i_max[:, None], copies, np.inf)
    lag_end = T - 1 - np.argmin(before[:, ::-1], axis=1)  # the last minimum: expansion starts there
    seg = (idx >= lag_end[:, None]) & (idx <= i_max[:, None]) & pos
    s = _masked_slope(days, logc, seg)
    ok = (i_max >= 2) & (i_max - lag_end >= 2) & (s > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["doubling_time_days"] = np.where(ok, _LN2 / s, np.nan)
    win = (days[None, :] >= tmax[:, None]) & (days[None, :] <= tmax[:, None] + 14)
    s = _masked_slope(days, logc, win & pos)
    ok = (win.sum(1) >= 5) & (days[-1] >= tmax + 14) & (s < 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["contraction_half_life_days"] = np.where(ok, _LN2 / -s, np.nan)
    late = days[None, :] >= np.maximum(90.0, tmax + 60)[:, None]
    s = _masked_slope(days, logc, late & pos)
    ok = (late.sum(1) >= 20) & (s < 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["persistence_half_life_days"] = np.where(ok, _LN2 / -s, np.nan)
    return out


def response_series_batch(ind: Indication, burden: np.ndarray, marker: np.ndarray,
                          b_cells_ul: np.ndarray, aplasia_threshold: float) -> np.ndarray:
    """Daily response category (index into RESPONSES) by the indication's criteria, for
    arrays ``[batch, T]``."""
    r = ind.response
    if ind.marker is None:
        value = burden
        base = np.maximum(burden[:, :1], 1e-300)
        if r.cr_blast_pct is not None:
            cr = burden < r.cr_blast_pct.value
        else:
            cr = burden < r.cr_volume_ml.value  # type: ignore[union-attr]
        vgpr = np.zeros_like(cr)
        pr = burden <= r.pr_fraction_of_baseline.value * base  # type: ignore[union-attr]
        pd = burden >= r.pd_fraction_of_baseline.value * base  # type: ignore[union-attr]
    else:
        value = marker
        rel = marker / marker[:, :1]
        if r.cr_marker_fraction is not None:
            cr = rel < r.cr_marker_fraction.value
            vgpr = rel <= r.vgpr_marker_fraction.value  # type: ignore[union-attr]
        else:  # autoimmunity: remission surrogate is depletion of the autoreactive clone
            depleted = np.maximum.accumulate(b_cells_ul < aplasia_threshold, axis=1)
            clone = burden / np.maximum(burden[:, :1], 1e-300)
            cr = (clone <= r.cr_target_fraction.value) & depleted  # type: ignore[union-attr]
            vgpr = np.zeros_like(cr)
        pr = rel <= r.pr_marker_fraction.value  # type: ignore[union-attr]
        nadir = np.minimum.accumulate(value, axis=1)
        pd = (value >= r.pd_fraction_of_nadir.value * nadir) & ~pr  # type: ignore[union-attr]
    cat = np.full(value.shape, RESPONSES.index("SD"))
    cat = np.where(pd, RESPONSES.index("PD"), cat)
    cat = np.where(pr, RESPONSES.index("PR"), cat)
    cat = np.where(vgpr, RESPONSES.index("VGPR"), cat)
    cat = np.where(cr, RESPONSES.index("CR"), cat)
    return cat


def outcome_metrics_batch(days, category, target_pos, target_neg) -> dict:
    """Best response, relapse (day, antigen) and progression day for arrays ``[batch, T]``."""
    B, T = category.shape
    rows = np.arange(B)
    idx = np.arange(T)[None, :]
    cr = category == RESPONSES.index("CR")
    first_cr, any_cr = _first(cr)
    lost_mask = (~cr) & (idx >= first_cr[:, None])
    lost, any_lost = _first(lost_mask)
    relapsed = any_cr & any_lost
    neg = target_neg[rows, lost] > target_pos[rows, lost]
    relapse_day = np.where(relapsed, days[lost], np.nan)
    pd_i, any_pd = _first((category == RESPONSES.index("PD")) & (idx >= 1))
    pd_day = np.where(any_pd, days[pd_i], np.nan)
    best = np.where(any_cr, RESPONSES.index("CR"), category.min(axis=1))
    return {
        "relapse_day": relapse_day,
        "relapse_antigen": np.where(relapsed, np.where(neg, "negative", "positive"), None),
        "best_response": np.array(RESPONSES, dtype=object)[best],
        "progression_day": np.fmin(relapse_day, pd_day),
    }


def b_cell_recovery_batch(days, b_ul, aplasia_threshold: float, recovery_threshold: float) -> dict:
    """:func:`b_cell_recovery` for arrays ``[batch, T]``."""
    B, T = b_ul.shape
    rows = np.arange(B)
    idx = np.arange(T)[None, :]
    start, aplastic = _first(b_ul < aplasia_threshold)
    j, back = _first((b_ul >= recovery_threshold) & (idx >= start[:, None]))
    back &= aplastic
    rec = days[j].astype(float)
    lo_v, hi_v = b_ul[rows, np.maximum(j - 1, 0)], b_ul[rows, j]
    with np.errstate(divide="ignore", invalid="ignore"):
        lo, hi = np.log(lo_v), np.log(hi_v)
        interp = days[np.maximum(j - 1, 0)] + (days[j] - days[np.maximum(j - 1, 0)]) * (
            math.log(recovery_threshold) - lo) / (hi - lo)
    use = (j > 0) & (lo_v > 0) & (hi > lo)
    rec = np.where(use, interp, rec)
    return {"b_cell_aplasia_day": np.where(aplastic, days[start], np.nan),
            "b_cell_recovery_day": np.where(back, rec, np.nan)}


def toxicity_metrics_batch(days, grade: np.ndarray, prefix: str) -> dict:
    on = grade >= 1
    first, any_on = _first(on)
    return {
        f"{prefix}_max_grade": grade.max(axis=1),
        f"{prefix}_onset_day": np.where(any_on, days[first], np.nan),
        f"{prefix}_duration_days": on.sum(axis=1),
    }
