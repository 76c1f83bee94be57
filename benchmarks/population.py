"""Speed of the batched engine vs a per-patient scipy LSODA loop on the identical model.

    python benchmarks/population.py [--sizes 1000,10000,100000] [--baseline 5]

For each N: wall time, microseconds per patient and peak RSS (so far in the process) of a
whole virtual trial (``run_trial`` on the zuma-1 preset, 365 days, default management
policy: sampling, build, batched solve, in-block summaries) on the population engine
(numba, :mod:`cartsim.patient.fast_solver`), and its ratios to two baselines measured in
the same run: a per-patient loop that integrates the same vector field with scipy
``solve_ivp`` (LSODA) through the same daily grade-and-treat loop on ``--baseline``
patients (solve only, no summaries), and the same trial on the JAX/diffrax engine
(``engine="jax"``, vmapped Tsit5) on ``--jax-n`` patients. First calls (compilation) are
timed separately. Targets (issue: virtual populations): 1e5 patients in <= 15 s and
>= 100x the scipy loop on this 2-core machine.
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp

from cartsim.patient import load_indication, load_policy, load_product
from cartsim.patient.build import build, resolve
from cartsim.patient.interventions import apply_policy, policy_arrays
from cartsim.patient.model import Drugs, vector_field
from cartsim.patient.solver import ATOL, MANAGEMENT_WINDOW_DAYS, RTOL, _grade
from cartsim.population import load_trial, run_trial, sample_patient

DAYS = 365


def patients(n: int, seed: int = 0):
    ind, prod = load_indication("lbcl"), load_product("axi-cel")
    out = []
    for i in range(n):
        spec = resolve(sample_patient("lbcl", seed, i), prod, ind)
        out.append(build(prod, ind, spec))
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scipy_loop(built, policy) -> float:
    f = jax.jit(vector_field)
    grade = jax.jit(_grade)
    t = time.perf_counter()
    for theta, obs, y0 in built:
        theta = jax.tree_util.tree_map(jnp.asarray, theta)
        obs = jax.tree_util.tree_map(jnp.asarray, obs)
        y = np.asarray(y0, dtype=float)
        exposure = jnp.zeros(2)
        counts = jnp.zeros_like(policy.max_doses)
        waived = False
        for day in range(MANAGEMENT_WINDOW_DAYS):
            drugs = Drugs(exposure[0], exposure[1], float(day))
            sol = solve_ivp(lambda t, yy: np.asarray(f(t, yy, (theta, drugs))), (day, day + 1), y,
                            method="LSODA", rtol=RTOL, atol=ATOL)
            y = sol.y[:, -1]
            exposure = exposure * jnp.exp(-jnp.stack([theta.toci_k, theta.dex_k]))
            block = exposure[0] / (exposure[0] + theta.toci_ec50)
            crs, icans = grade(jnp.asarray(y), theta, obs, block, waived)
            counts, exposure, given = apply_policy(policy, crs, icans, counts, exposure)
            waived = waived or bool(jnp.any(given > 0))
        drugs = Drugs(exposure[0], exposure[1], float(MANAGEMENT_WINDOW_DAYS))
        sol = solve_ivp(lambda t, yy: np.asarray(f(t, yy, (theta, drugs))), (MANAGEMENT_WINDOW_DAYS, DAYS), y,
                        method="LSODA", rtol=RTOL, atol=ATOL,
                        t_eval=np.arange(MANAGEMENT_WINDOW_DAYS + 1, DAYS + 1, dtype=float))
    return time.perf_counter() - t


def trial_run(n: int, engine: str = "numba") -> float:
    """Wall time of a whole virtual trial as users run it: sampling, build, solve, summaries."""
    t = time.perf_counter()
    res = run_trial(load_trial("zuma-1", n=n, chunk_size=min(n, 8192), follow_up_days=DAYS), engine=engine)
    wall = time.perf_counter() - t
    assert res.summary["n"] == n
    return wall


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--baseline", type=int, default=5, help="patients in the scipy loop")
    ap.add_argument("--jax-n", type=int, default=1000, help="patients on the JAX engine")
    args = ap.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    policy = policy_arrays(load_policy())
    from cartsim.population.trial import SOLVER_BLOCK, _workers

    import numba

    print(f"numba {numba.__version__}, jax {jax.__version__}, devices {jax.devices()}, solver block {SOLVER_BLOCK}, "
          f"{_workers()} worker threads, {DAYS} days, zuma-1 (lbcl/axi-cel)")

    for engine in ("numba", "jax"):
        t0 = time.perf_counter()
        trial_run(SOLVER_BLOCK, engine)
        print(f"{engine} engine, compile + first block: {time.perf_counter() - t0:.1f} s (once per process)")

    base = patients(args.baseline)
    t_scipy = scipy_loop(base, policy)
    us_scipy = t_scipy / len(base) * 1e6
    print(f"scipy LSODA loop: {len(base)} patients in {t_scipy:.2f} s = {us_scipy:.0f} us/patient")
    t_jax = trial_run(args.jax_n, "jax")
    us_jax = t_jax / args.jax_n * 1e6
    print(f"jax engine (vmapped diffrax Tsit5): {args.jax_n} patients in {t_jax:.2f} s = {us_jax:.0f} us/patient")

    print(f"{'N':>8} {'wall s':>8} {'us/patient':>11} {'peak RSS MB':>12} {'x scipy':>8} {'x jax':>6}")
    for n in sizes:
        wall = trial_run(n)
        us = wall / n * 1e6
        print(f"{n:>8} {wall:>8.2f} {us:>11.1f} {peak_rss_mb():>12.0f} {us_scipy / us:>8.1f} {us_jax / us:>6.1f}",
              flush=True)


if __name__ == "__main__":
    main()
