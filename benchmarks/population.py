"""Speed of the batched engine vs a per-patient scipy LSODA loop on the identical model.

    python benchmarks/population.py [--sizes 1000,10000,100000] [--baseline 20] [--block 1024]

For each N: wall time, microseconds per patient and peak RSS of the batched engine
(one compiled call per block of patients, `cartsim.patient.solve_batch`, 365 days, the
default management policy), then the same for a per-patient loop that integrates the
same vector field with scipy `solve_ivp` (LSODA) through the same daily grade-and-treat
loop, measured in the same run on the first ``--baseline`` patients, and the ratio.
The first call (compilation) is timed separately. Also times `run_trial` end to end
(per-patient summaries included) on the smallest N. Targets (issue: virtual
populations): 1e5 patients in <= 15 s and >= 100x the scipy loop on this 2-core machine.
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
from cartsim.patient.simulate import stack
from cartsim.patient.solver import ATOL, MANAGEMENT_WINDOW_DAYS, RTOL, _grade, solve_batch
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


def batched(built, policy, block: int) -> float:
    t = time.perf_counter()
    for b0 in range(0, len(built), block):
        chunk = built[b0 : b0 + block]
        chunk = chunk + [chunk[0]] * (block - len(chunk))
        out = solve_batch(*stack(chunk), policy, n_days=DAYS)
        out.ok.block_until_ready()
    return time.perf_counter() - t


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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--baseline", type=int, default=20, help="patients in the scipy loop")
    ap.add_argument("--block", type=int, default=1024, help="patients per compiled call")
    args = ap.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    policy = policy_arrays(load_policy())
    print(f"jax {jax.__version__}, devices {jax.devices()}, block {args.block}, {DAYS} days, lbcl/axi-cel")

    warm = patients(args.block)
    t0 = time.perf_counter()
    batched(warm[:1] * args.block, policy, args.block)
    print(f"compile + first block: {time.perf_counter() - t0:.1f} s")

    base = patients(args.baseline)
    t_scipy = scipy_loop(base, policy)
    us_scipy = t_scipy / len(base) * 1e6
    print(f"scipy LSODA loop: {len(base)} patients in {t_scipy:.2f} s = {us_scipy:.0f} us/patient")

    print(f"{'N':>8} {'wall s':>8} {'us/patient':>11} {'peak RSS MB':>12} {'x scipy':>8}")
    for n in sizes:
        built = patients(n)
        wall = batched(built, policy, args.block)
        us = wall / n * 1e6
        print(f"{n:>8} {wall:>8.2f} {us:>11.1f} {peak_rss_mb():>12.0f} {us_scipy / us:>8.1f}")

    n = sizes[0]
    t = time.perf_counter()
    run_trial(load_trial("zuma-1", n=n, chunk_size=4096))
    wall = time.perf_counter() - t
    print(f"run_trial end to end (summaries included), N={n}: {wall:.1f} s = {wall / n * 1e6:.0f} us/patient")


if __name__ == "__main__":
    main()
