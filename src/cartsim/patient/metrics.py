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


def _slope(days: np.ndarray, values: np.ndarray) -> float | None:
    ok = values > 0
    if ok.sum() < 2:
        return None
    return float(np.polyfit(days[ok], np.log(values[ok]), 1)[0])


def _half_life(days, values) -> float | None:
    s = _slope(days, values)
    return None if s is None or s >= 0 else _LN2 / -s


def kinetic_metrics(days: np.ndarray, cells_ul: np.ndarray, copies: np.ndarray) -> dict:
    """Cmax, Tmax, AUC0-28, doubling time, contraction and persistence half-lives."""
    i_max = int(np.argmax(cells_ul))
    tmax = float(days[i_max])
    if 0 < i_max < len(days) - 1 and np.all(cells_ul[i_max - 1 : i_max + 2] > 0):
        # parabolic interpolation of the log level around the daily maximum
        a, b, c = np.log(cells_ul[i_max - 1 : i_max + 2])
        denom = a - 2 * b + c
        if denom < 0:
            tmax += 0.5 * (a - c) / denom
    in28 = days <= 28
    out = {
        "cmax_cells_per_ul": float(cells_ul[i_max]),
        "cmax_copies_per_ug": float(copies[i_max]),
        "tmax_days": tmax,
        "auc_0_28": float(np.trapezoid(copies[in28], days[in28])),
        "auc_0_28_cells": float(np.trapezoid(cells_ul[in28], days[in28])),
        "doubling_time_days": None,
        "contraction_half_life_days": None,
        "persistence_half_life_days": None,
    }
    if i_max >= 2:
        lag_end = int(np.argmin(copies[: i_max]))
        if i_max - lag_end >= 2:
            s = _slope(days[lag_end : i_max + 1], copies[lag_end : i_max + 1])
            out["doubling_time_days"] = None if s is None or s <= 0 else _LN2 / s
    win = (days >= tmax) & (days <= tmax + 14)
    if win.sum() >= 5 and days[-1] >= tmax + 14:
        out["contraction_half_life_days"] = _half_life(days[win], copies[win])
    late = days >= max(90.0, tmax + 60)
    if late.sum() >= 20:
        out["persistence_half_life_days"] = _half_life(days[late], copies[late])
    return out


def response_series(ind: Indication, burden: np.ndarray, marker: np.ndarray,
                    b_cells_ul: np.ndarray, aplasia_threshold: float) -> np.ndarray:
    """Daily response category (index into RESPONSES) by the indication's criteria."""
    r = ind.response
    if ind.marker is None:
        value = burden
        base = max(float(burden[0]), 1e-300)
        if r.cr_blast_pct is not None:
            cr = burden < r.cr_blast_pct.value
        else:
            cr = burden < r.cr_volume_ml.value  # type: ignore[union-attr]
        vgpr = np.zeros_like(cr)
        pr = burden <= r.pr_fraction_of_baseline.value * base  # type: ignore[union-attr]
        pd = burden >= r.pd_fraction_of_baseline.value * base  # type: ignore[union-attr]
    else:
        value = marker
        base = float(marker[0])
        rel = marker / base
        if r.cr_marker_fraction is not None:  # myeloma, IMWG
            cr = rel < r.cr_marker_fraction.value
            vgpr = rel <= r.vgpr_marker_fraction.value  # type: ignore[union-attr]
        else:  # SLE remission surrogate: seronegative with B-cell depletion so far
            depleted = np.maximum.accumulate(b_cells_ul < aplasia_threshold)
            cr = (marker < ind.marker.normal_upper.value) & depleted  # type: ignore[union-attr]
            vgpr = np.zeros_like(cr)
        pr = rel <= r.pr_marker_fraction.value  # type: ignore[union-attr]
        nadir = np.minimum.accumulate(value)
        pd = (value >= r.pd_fraction_of_nadir.value * nadir) & ~pr  # type: ignore[union-attr]
    cat = np.full(value.shape, RESPONSES.index("SD"))
    cat = np.where(pd, RESPONSES.index("PD"), cat)
    cat = np.where(pr, RESPONSES.index("PR"), cat)
    cat = np.where(vgpr, RESPONSES.index("VGPR"), cat)
    cat = np.where(cr, RESPONSES.index("CR"), cat)
    return cat


def progression_day(days, category: np.ndarray) -> float | None:
    """First day after infusion with progressive disease (PD), or None."""
    pd = np.nonzero(category[1:] == RESPONSES.index("PD"))[0]
    return None if pd.size == 0 else float(days[1 + int(pd[0])])


def relapse(days, category: np.ndarray, target_pos: np.ndarray, target_neg: np.ndarray) -> dict:
    """First loss of a CR (back to PD/SD/PR after CR): day and antigen status.

    ``progression_day`` (the PFS event) is the earlier of that relapse and the first PD.
    """
    out = _relapse(days, category, target_pos, target_neg)
    pd = progression_day(days, category)
    events = [d for d in (out["relapse_day"], pd) if d is not None]
    out["progression_day"] = min(events) if events else None
    return out


def _relapse(days, category, target_pos, target_neg) -> dict:
    cr = category == RESPONSES.index("CR")
    if not cr.any():
        return {"relapse_day": None, "relapse_antigen": None, "best_response": RESPONSES[int(category.min())]}
    first_cr = int(np.argmax(cr))
    lost = np.nonzero(~cr[first_cr:])[0]
    if lost.size == 0:
        return {"relapse_day": None, "relapse_antigen": None, "best_response": "CR"}
    i = first_cr + int(lost[0])
    antigen = "negative" if target_neg[i] > target_pos[i] else "positive"
    return {"relapse_day": float(days[i]), "relapse_antigen": antigen, "best_response": "CR"}


def b_cell_recovery(days, b_ul, aplasia_threshold: float, recovery_threshold: float) -> dict:
    aplastic = b_ul < aplasia_threshold
    if not aplastic.any():
        return {"b_cell_aplasia_day": None, "b_cell_recovery_day": None}
    start = int(np.argmax(aplastic))
    back = np.nonzero(b_ul[start:] >= recovery_threshold)[0]
    rec = None
    if back.size:
        j = start + int(back[0])
        rec = float(days[j])
        if j > 0 and b_ul[j - 1] > 0:  # log-linear interpolation of the crossing
            lo, hi = math.log(b_ul[j - 1]), math.log(b_ul[j])
            if hi > lo:
                rec = float(days[j - 1] + (days[j] - days[j - 1]) * (math.log(recovery_threshold) - lo) / (hi - lo))
    return {"b_cell_aplasia_day": float(days[start]), "b_cell_recovery_day": rec}


def toxicity_metrics(days, grade: np.ndarray, prefix: str) -> dict:
    on = grade >= 1
    return {
        f"{prefix}_max_grade": int(grade.max()),
        f"{prefix}_onset_day": float(days[int(np.argmax(on))]) if on.any() else None,
        f"{prefix}_duration_days": int(on.sum()),
    }


def response_at(days, category, day: float) -> str | None:
    idx = np.nonzero(days == day)[0]
    return None if idx.size == 0 else RESPONSES[int(category[idx[0]])]
