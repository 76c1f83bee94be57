"""Fit the typical-patient kinetic parameters to the verified calibration targets.

Reproducible: ``python scripts/calibrate_kinetics.py`` (add ``--write`` to store the
fitted values in ``src/cartsim/params/data/parameters.csv``). Targets are the rows of
``params/data/kinetic_targets.csv`` with ``role == calibration`` (all ``verified``);
the ``check`` and ``prediction`` rows are left out of the fit and reported by
``cartsim validate kinetics``.

The fit minimises the sum of squared scaled residuals with derivative-free Nelder-Mead
(scipy ``minimize``; several metrics such as Tmax and the B-cell recovery day are only
piecewise smooth) over the log of each parameter, clipped to its bounds; residuals are log-ratios for concentrations and times, scaled by the width
of each target's tolerance band so that every target weighs alike.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from datetime import date
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from cartsim.params import data_path, load_parameters
from cartsim.report.paramdoc import main as paramdoc
from cartsim.report.validation import kinetic_checks

FREE = {  # name: (lower, upper)
    "cart.rho_max": (0.2, 2.0),
    "cart.K_stim": (1e8, 1e11),
    "cart.engraft_effector": (1e-3, 1.0),
    "cart.D50_exh": (5.0, 400.0),
    "indication.lbcl.stimulation_efficiency": (1e-3, 1.0),
    "costim.cd28.rho_multiplier": (1.1, 3.0),  # lower bound: CD28 expands faster (Kawalekar 2016; Cappell & Kochenderfer 2023)
    "costim.cd28.delta_m_multiplier": (1.0, 20.0),
    "costim.cd28.k_exh_multiplier": (1.0, 20.0),
    "cart.k_react": (1e-3, 0.3),
    "cart.memory_engraftment_ratio": (2.0, 20.0),  # memory-like cells engraft better (Fraietta 2018)
}


def residuals(logx: np.ndarray, base) -> np.ndarray:
    params = base.replace(dict(zip(FREE, np.exp(logx))))
    res = []
    for c in kinetic_checks(params):
        if c.role != "calibration":
            continue
        if c.simulated is None or not c.simulated > 0:
            res.append(10.0)
            continue
        width = math.log(c.high / c.low) / 2
        res.append(math.log(c.simulated / c.reference) / width)
    return np.asarray(res)


def write(values: dict[str, float], script: str = "calibrate_kinetics.py", targets: str = "kinetic_targets.csv") -> None:
    """Store fitted values in parameters.csv, stamped with the fitting script and its targets."""
    path = data_path("parameters.csv")
    rows = list(csv.DictReader(open(path, newline="", encoding="utf-8")))
    stamp = f"cartsim calibration (scripts/{script}, {date.today().isoformat()}) to the calibration rows of {targets}"
    for r in rows:
        if r["name"] in values:
            r["value"] = f"{values[r['name']]:.4g}"
            r["evidence"] = "calibrated"
            if not r["source"].startswith("cartsim calibration"):
                r["notes"] = (r["notes"] + " " if r["notes"] else "") + f"Previous source: {r['source']}"
            r["source"] = stamp
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    paramdoc([str(Path(__file__).resolve().parents[1] / "docs" / "parameters.md")])  # the page follows the table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="store the fit in parameters.csv")
    ap.add_argument("--max-nfev", type=int, default=1500)
    args = ap.parse_args(argv)
    base = load_parameters()
    x0 = np.log([base.value(n) for n in FREE])
    lo = np.log([b[0] for b in FREE.values()])
    hi = np.log([b[1] for b in FREE.values()])
    n_eval = [0]

    def cost(x):
        n_eval[0] += 1
        c = float(np.sum(residuals(np.clip(x, lo, hi), base) ** 2))
        if n_eval[0] % 50 == 0:
            print(f"  evaluation {n_eval[0]}: sum of squares {c:.4g}", flush=True)
        return c

    fit = minimize(cost, np.clip(x0, lo, hi), method="Nelder-Mead",
                   options={"maxfev": args.max_nfev, "adaptive": True, "xatol": 1e-3, "fatol": 1e-4})
    x = np.clip(fit.x, lo, hi)
    values = dict(zip(FREE, np.exp(x)))
    print(f"sum of squares {fit.fun:.4g} after {fit.nfev} evaluations ({fit.message})")
    for k, v in values.items():
        print(f"  {k:45s} {base.value(k):.4g} -> {v:.4g}")
    print("scaled residuals:", np.round(residuals(x, base), 3))
    if args.write:
        write(values)
        print(f"wrote {data_path('parameters.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
