"""Figures of one simulated patient and of a virtual trial (matplotlib, PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cartsim.patient.simulate import SimulationResult  # noqa: E402


def _save(fig, ax, path: str | Path) -> Path:
    """Grid every panel, lay out, write the PNG and free the figure."""
    for axis in ax.flat:
        axis.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def patient_figure(result: SimulationResult, path: str | Path) -> Path:
    """Four panels: CAR-T in blood, target burden (or marker), B cells, IL-6 and grades."""
    d = result.daily
    days = d["day"]
    fig, ax = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    title = (f"{result.product.name} in {result.indication.name}: "
             f"dose {result.metrics['dose_car_cells']:.3g} CAR+ cells, "
             f"{result.indication.burden.unit} {result.spec.tumour_burden:g}")
    fig.suptitle(title)

    a = ax[0, 0]
    a.semilogy(days, np.maximum(d["car_t_cells_per_ul"], 1e-4), label="total")
    for key, lab in (("effector_cells", "effector"), ("memory_cells", "memory"), ("exhausted_cells", "exhausted")):
        frac = d[key] / np.maximum(d["car_t_total_cells"], 1e-300)
        a.semilogy(days, np.maximum(d["car_t_cells_per_ul"] * frac, 1e-4), lw=0.8, ls="--", label=lab)
    a.set_ylabel("CAR-T in blood (cells/uL)")
    a.set_ylim(1e-3, None)
    a.legend(fontsize=8)

    a = ax[0, 1]
    if result.indication.marker is not None:
        a.semilogy(days, d["marker"], color="C3")
        a.set_ylabel(f"{result.indication.marker.name} ({result.indication.marker.unit})")
    else:
        a.semilogy(days, np.maximum(d["tumour_burden"], 1e-8), color="C3")
        a.set_ylabel(result.indication.burden.unit)

    a = ax[1, 0]
    a.semilogy(days, np.maximum(d["b_cells_per_ul"], 1e-3), color="C2")
    a.set_ylabel("normal B cells (cells/uL)")
    a.set_xlabel("days after infusion")

    a = ax[1, 1]
    a.semilogy(days, d["il6_pg_per_ml"], color="C4", label="IL-6")
    a.set_ylabel("serum IL-6 (pg/mL)")
    a.set_xlabel("days after infusion")
    b = a.twinx()
    b.step(days, d["crs_grade"], where="post", color="C1", label="CRS grade")
    b.step(days, d["icans_grade"], where="post", color="C5", label="ICANS grade")
    b.set_ylim(-0.2, 4.5)
    b.set_ylabel("ASTCT grade")
    b.legend(fontsize=8, loc="upper right")
    a.set_xlim(0, min(days[-1], 60))
    return _save(fig, ax, path)


def trial_figure(result, path: str | Path) -> Path:
    """Four panels of a virtual trial (a :class:`~cartsim.population.TrialResult`): best
    response, maximum CRS and ICANS grades, Cmax of responders and non-responders, and
    Kaplan-Meier PFS and EFS with their 95% bands (lifelines). Failed patients are left out."""
    from lifelines import KaplanMeierFitter

    from cartsim.patient.metrics import RESPONSES
    from cartsim.population.endpoints import RESPONDED, _floats, early_response, efs_event_day

    t = result.patients
    ok = np.asarray(t.column("ok").to_numpy(zero_copy_only=False), dtype=bool)

    def col(name):
        return np.asarray(t.column(name).to_numpy(zero_copy_only=False))[ok]

    def num(name):
        return _floats(t.column(name))[ok]

    spec, n = result.spec, int(ok.sum())
    fig, ax = plt.subplots(2, 2, figsize=(11, 7))
    fig.suptitle(f"virtual trial {spec.name}: {spec.indication}, {n} patients evaluated, {spec.follow_up_days} days")

    a = ax[0, 0]
    best = col("best_response")
    share = [100 * np.mean(best == r) if n else 0.0 for r in RESPONSES]
    a.bar(RESPONSES, share, color=["C2" if r in RESPONDED else "C7" for r in RESPONSES])
    a.set_ylabel("% of patients")
    a.set_title("best response", fontsize=10)

    a = ax[0, 1]
    grades = np.arange(5)
    for k, (name, lab) in enumerate((("crs_max_grade", "CRS"), ("icans_max_grade", "ICANS"))):
        g = num(name)
        a.bar(grades + (k - 0.5) * 0.4, [100 * np.mean(g == v) if n else 0.0 for v in grades], width=0.4, label=lab)
    a.set_xticks(grades)
    a.set_xlabel("maximum ASTCT grade")
    a.set_ylabel("% of patients")
    a.legend(fontsize=8)

    a = ax[1, 0]
    cmax = num("cmax_cells_per_ul")
    resp = np.isin(best, RESPONDED)
    pos = np.isfinite(cmax) & (cmax > 0)
    if pos.any():
        bins = np.logspace(np.log10(cmax[pos].min()), np.log10(cmax[pos].max()) + 1e-9, 30)
        a.hist([cmax[pos & resp], cmax[pos & ~resp]], bins=bins, stacked=True, color=["C2", "C7"],
               label=["responders (PR or better)", "non-responders"])
        a.set_xscale("log")
        a.legend(fontsize=8)
    a.set_xlabel("Cmax, CAR-T cells/uL blood")
    a.set_ylabel("patients")

    a = ax[1, 1]
    prog, follow = num("progression_day"), spec.follow_up_days
    efs = efs_event_day(prog, early_response(t)[ok], follow)
    for label, event in (("PFS", prog), ("EFS", efs)):
        if n:
            seen = np.isfinite(event)
            KaplanMeierFitter(label=label).fit(np.where(seen, event, follow), seen).plot_survival_function(ax=a)
    a.set_ylim(0, 1.02)
    a.set_xlabel("days after infusion")
    a.set_ylabel("probability")
    return _save(fig, ax, path)
