"""Figures of one simulated patient (matplotlib, PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cartsim.patient.simulate import SimulationResult  # noqa: E402


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
    for axis in ax.flat:
        axis.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
