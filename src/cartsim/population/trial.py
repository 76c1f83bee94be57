"""Run a virtual trial in chunks: one compiled batched solve per chunk, resumable.

Results: one row per patient (``patients.parquet``) and a JSON summary of endpoints with
95% confidence intervals (``summary.json``). Chunks are written as they finish
(``chunks/chunk_NNNNN.parquet``); ``resume=True`` skips the chunks already on disk, and a
resumed run ends identical to an uninterrupted one. A patient whose build or solve fails
is flagged (``ok = False`` with ``fail_reason``) and never aborts the trial.
"""

from __future__ import annotations

import hashlib
import os
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cartsim.params import InputError, ParameterTable, load_parameters
from cartsim.patient import NO_LYMPHODEPLETION, load_indication, load_policy, load_product
from cartsim.patient.build import build_batch
from cartsim.patient.fast_solver import solve_batch_fast
from cartsim.patient.interventions import policy_arrays
from cartsim.patient.product import Product, dose_cells
from cartsim.patient.simulate import summarise_batch, trajectories_batch, variability
from cartsim.patient.solver import solve_batch
from cartsim.population.endpoints import summarise_trial
from cartsim.population.sampling import correlation_factor, sample_population
from cartsim.population.spec import TrialSpec

#: Patients per solver block, by engine. Fixed, whatever the chunk size (the last block of
#: a chunk is padded): XLA compiles a different program for each batch shape (vectorised
#: vs scalar tails of exp/log), and the adaptive solver amplifies last-bit differences, so
#: a fixed shape is what makes a patient's result independent of how the trial is chunked.
#: The numba engine integrates each patient on its own (padding rows are skipped), but
#: grades the batch with XLA between days; larger blocks spread that per-day call over
#: more patients. The JAX engine
#: runs a block in lockstep, where small blocks waste less on the slowest patient.
SOLVER_BLOCKS = {"numba": 512, "jax": 32}
SOLVER_BLOCK = SOLVER_BLOCKS["numba"]

#: Per-patient columns kept from the single-patient metrics.
METRIC_COLUMNS = (
    "cmax_cells_per_ul", "cmax_copies_per_ug", "tmax_days", "auc_0_28", "doubling_time_days",
    "contraction_half_life_days", "persistence_half_life_days", "response_day28", "response_day90",
    "best_response", "relapse_day", "relapse_antigen", "progression_day", "crs_max_grade", "crs_onset_day",
    "crs_duration_days", "icans_max_grade", "icans_onset_day", "icans_duration_days", "tocilizumab_doses",
    "dexamethasone_doses", "il6_max_pg_per_ml", "b_cell_aplasia_day", "b_cell_recovery_day",
    "dose_car_cells",
)


@dataclass
class TrialResult:
    spec: TrialSpec
    patients: pa.Table
    summary: dict
    trajectories: pa.Table | None = None  # daily, long format, for spec.keep_trajectories


def _product(spec: TrialSpec) -> Product:
    if isinstance(spec.product, str):
        return load_product(spec.product)
    try:
        return Product.model_validate({"name": "trial-product", **spec.product})
    except Exception as err:  # pydantic ValidationError
        from pydantic import ValidationError

        from cartsim.patient._schema import input_error_from

        if isinstance(err, ValidationError):
            raise input_error_from(err, f"{spec.name}.product") from None
        raise


def _spec_hash(spec: TrialSpec) -> str:
    payload = spec.model_dump(mode="json", exclude={"chunk_size"})
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8))


def _column(a) -> pa.Array:
    """Array to an Arrow column, NaN to null."""
    a = np.asarray(a)
    if a.dtype.kind == "f":
        return pa.array(a, mask=np.isnan(a))
    if a.dtype.kind == "O":
        return pa.array(a.tolist())
    return pa.array(a)


def _solve_blocks(engine, ind, theta, obs, y0, pol_arrays, days, params, keep=None):
    """Solve and summarise the chunk in fixed-size blocks on all cores; per-block errors.

    ``keep`` (bool [n]) marks the patients whose daily trajectories are returned too.
    """
    import jax

    n = y0.shape[0]
    solve = solve_batch_fast if engine == "numba" else solve_batch
    size = SOLVER_BLOCKS[engine]

    def one(b0):
        sl = slice(b0, min(b0 + size, n))
        m = sl.stop - sl.start
        pad = np.r_[np.arange(sl.start, sl.stop), np.full(size - m, sl.start)]  # padding, discarded
        th = jax.tree_util.tree_map(lambda a: a[pad], theta)
        ob = jax.tree_util.tree_map(lambda a: a[pad], obs)
        try:
            extra = {"n_active": m} if engine == "numba" else {}  # padding is not integrated
            out = solve(th, ob, y0[pad], pol_arrays, n_days=days, **extra)
            traj = None
            if keep is not None and keep[sl].any():
                traj = trajectories_batch(ind, th, ob, out, np.flatnonzero(keep[sl]), params)
                traj["row"] = traj["row"] + sl.start
            return sl, summarise_batch(ind, th, ob, out, params, m), None, traj
        except Exception as err:  # flagged, never fatal
            return sl, None, err, None

    # Each block is the same program on its own patients, whichever thread runs it.
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        return list(pool.map(one, range(0, n, size)))


def _run_chunk(spec, ind, prod, pol_arrays, ld, params, cov, indices, omega2=None,
               engine="numba") -> tuple[pa.Table, pa.Table | None]:
    n = len(indices)
    idx = np.asarray(indices)
    ok = np.ones(n, dtype=bool)
    reason = np.full(n, "", dtype=object)
    cols: dict[str, np.ndarray] = {}
    try:
        pop = sample_population(spec.indication, spec.seed, idx, omega2=omega2, correlations=spec.correlations,
                                covariates=cov, bounds=spec.eligibility.bounds())
        weight, burden = pop["weight_kg"], pop["tumour_burden"]
        infused = burden if spec.bridging is None else \
            spec.bridging.at_infusion(burden, pop["covariates"]["bridging_response"], params)
        pop["covariates"]["tumour_burden_infusion"] = infused
        dose = spec.dose.cells(weight, pop["covariates"].get("dose_level")) if spec.dose is not None \
            else dose_cells(prod.dose, weight)
        theta, obs, y0, bad = build_batch(prod, ind, weight, infused, dose, ld, pop["random_effects"], params)
    except Exception as err:  # the whole chunk could not be set up: flagged, never fatal
        nan = np.full(n, np.nan)
        return _table(idx, np.zeros(n, bool), np.full(n, f"build: {err}", dtype=object), nan, nan, {}, nan), None
    for i, why in bad:
        ok[i], reason[i] = False, f"build: {why}"
    keep = np.isin(idx, spec.kept())
    trajs = []
    for sl, res, err, traj in _solve_blocks(engine, ind, theta, obs, y0, pol_arrays, spec.follow_up_days,
                                            params, keep if keep.any() else None):
        if traj is not None:
            trajs.append(traj)
        if err is not None:
            ok[sl], reason[sl] = False, f"summary: {err}"
            continue
        for c in METRIC_COLUMNS:
            if c in res:
                v = np.asarray(res[c])
                if c not in cols:
                    cols[c] = np.full(n, np.nan if v.dtype.kind == "f" else None,
                                      dtype=np.float64 if v.dtype.kind == "f" else object)
                cols[c][sl] = v
        solved = np.asarray(res["ok"], dtype=bool)
        failed = ~solved & ok[sl]
        reason[sl] = np.where(failed, "solver: step limit reached or non-finite state", reason[sl])
        ok[sl] &= solved
    table = _table(idx, ok, reason, weight, burden, cols, np.asarray(prod.car_cells(dose), dtype=np.float64),
                   pop["covariates"])
    traj_table = None
    if trajs:
        t = {k: np.concatenate([d[k] for d in trajs]) for k in trajs[0]}
        rows = t.pop("row")
        traj_table = pa.table({"patient": pa.array(idx[rows].astype(np.int64)), "ok": pa.array(ok[rows]),
                               **{k: _column(v) for k, v in t.items()}})
    return table, traj_table


def _table(idx, ok, reason, weight, burden, cols, dose_car, covariates=None) -> pa.Table:
    """One row per patient; metrics of patients not ok are null; covariates are kept for all."""
    data = {"patient": pa.array(idx.astype(np.int64)), "ok": pa.array(ok), "fail_reason": pa.array(reason.tolist()),
            "weight_kg": _column(weight), "tumour_burden": _column(burden)}
    for name, v in (covariates or {}).items():
        if name not in data:
            data[name] = _column(v)
    for c in METRIC_COLUMNS:
        if c == "dose_car_cells":
            v = np.asarray(dose_car, dtype=np.float64)
        else:
            v = cols.get(c, np.full(len(idx), None, dtype=object))
        if np.asarray(v).dtype.kind == "f":
            v = np.where(ok, v, np.nan)
        else:
            v = np.where(ok, v, None)
        data[c] = _column(v)
    return pa.table(data)


def _check_eligibility(spec: TrialSpec, cov: dict) -> None:
    """Eligibility limits must concern a drawn covariate and overlap its range (input errors)."""
    e = spec.eligibility
    for name, (lo, hi) in e.bounds().items():
        f_lo, f_hi = e.FIELDS[name]
        if name not in cov:
            raise InputError(f"{spec.name}.eligibility.{f_lo if lo is not None else f_hi}", lo if lo is not None else hi,
                             f"no limit: {spec.indication} patients have no {name} covariate")
        d = cov[name]
        if lo is not None and hi is not None and lo > hi:
            raise InputError(f"{spec.name}.eligibility.{f_lo}", lo, f"at most {f_hi} ({hi})")
        if lo is not None and lo > d.max:
            raise InputError(f"{spec.name}.eligibility.{f_lo}", lo, f"at most {d.max:g}, the largest {name} drawn")
        if hi is not None and hi < d.min:
            raise InputError(f"{spec.name}.eligibility.{f_hi}", hi, f"at least {d.min:g}, the smallest {name} drawn")


def run_trial(spec: TrialSpec, out: Path | None = None, *, resume: bool = False,
              progress: Callable[[int, int], None] | None = None,
              params: ParameterTable | None = None, omega2: dict[str, float] | None = None,
              engine: str = "numba", client=None) -> TrialResult:
    """Simulate ``spec.n`` virtual patients; write chunks and results under ``out``.

    ``params`` and ``omega2`` (between-patient variances by name) override the packaged
    parameter and variability tables, e.g. during population calibration. ``engine`` is
    ``"numba"`` (:func:`cartsim.patient.fast_solver.solve_batch_fast`, the default) or
    ``"jax"`` (:func:`cartsim.patient.solver.solve_batch`, diffrax; slower, for checks).
    ``client``, a ``dask.distributed.Client``, scales out: the chunks are computed on its
    workers and written here as they finish (so a killed run resumes from them); the
    result is the same as computed here, since a patient depends only on the seed and its
    index.
    """
    if engine not in ("numba", "jax"):
        raise InputError("engine", engine, "numba or jax")
    ind = load_indication(spec.indication)
    prod = _product(spec)
    if prod.target_antigen not in ind.target_antigens:
        raise InputError(f"{spec.name}.product", prod.name, f"a product against {'/'.join(ind.target_antigens)}")
    ld = {"default": None, "none": NO_LYMPHODEPLETION}.get(spec.lymphodepletion, spec.lymphodepletion) \
        if isinstance(spec.lymphodepletion, str) else spec.lymphodepletion
    pol_arrays = policy_arrays(load_policy(spec.policy))
    params = load_parameters() if params is None else params
    correlation_factor(tuple({**variability(), **(omega2 or {})}), spec.correlations)  # input errors now
    cov = spec.covariates()
    _check_eligibility(spec, cov)
    for k, name in enumerate(spec.subgroups):
        if name not in (*cov, "age_group"):
            raise InputError(f"{spec.name}.subgroups[{k}]", name, f"a covariate: {', '.join((*cov, 'age_group'))}")

    chunk_dir = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        chunk_dir = out / "chunks"
        stamp = out / "spec.json"
        h = _spec_hash(spec)
        if resume and stamp.exists():
            old = json.loads(stamp.read_text())
            if old.get("hash") != h or old.get("chunk_size") != spec.chunk_size:
                raise InputError("--resume", str(out), "a folder from a run of the same spec and chunk size")
        elif chunk_dir.exists():
            for f in [*chunk_dir.glob("chunk_*.parquet"), *chunk_dir.glob("trajectories_*.parquet")]:
                f.unlink()
        chunk_dir.mkdir(exist_ok=True)
        stamp.write_text(json.dumps({"hash": h, "chunk_size": spec.chunk_size,
                                     "spec": spec.model_dump(mode="json")}, indent=2))

    starts = range(0, spec.n, spec.chunk_size)

    def indices(k: int) -> list[int]:
        return list(range(starts[k], min(starts[k] + spec.chunk_size, spec.n)))

    def files(k: int):
        return (None, None) if chunk_dir is None else \
            (chunk_dir / f"chunk_{k:05d}.parquet", chunk_dir / f"trajectories_{k:05d}.parquet")

    done: dict[int, tuple] = {}
    patients_done = 0

    def finished(k: int, table, traj) -> None:
        nonlocal patients_done
        done[k] = (table, traj)
        patients_done += table.num_rows
        if progress is not None:
            progress(patients_done, spec.n)

    todo = []
    for k in range(len(starts)):
        path, tpath = files(k)
        if resume and path is not None and path.exists():
            finished(k, pq.read_table(path), pq.read_table(tpath) if tpath.exists() else None)
        else:
            todo.append(k)

    def store(k: int, table, traj) -> None:
        path, tpath = files(k)
        if path is not None:
            if traj is not None:  # written first: a chunk file on disk means its trajectories are too
                tmp = tpath.with_suffix(".tmp")
                pq.write_table(traj, tmp)
                tmp.replace(tpath)
            tmp = path.with_suffix(".tmp")
            pq.write_table(table, tmp)
            tmp.replace(path)  # atomic: a killed run never leaves a half-written chunk
        finished(k, table, traj)

    args = (spec, ind, prod, pol_arrays, ld, params, cov)
    if client is None:
        for k in todo:
            store(k, *_run_chunk(*args, indices(k), omega2, engine))
    else:
        from distributed import as_completed

        futures = {client.submit(_run_chunk, *args, indices(k), omega2, engine, pure=False): k for k in todo}
        for fut in as_completed(futures):
            store(futures[fut], *fut.result())
    tables = [done[k][0] for k in range(len(starts))]
    trajs = [done[k][1] for k in range(len(starts)) if done[k][1] is not None]
    patients = pa.concat_tables(tables, promote_options="default")
    trajectories = pa.concat_tables(trajs, promote_options="default") if trajs else None
    summary = summarise_trial(spec, patients)
    if out is not None:
        pq.write_table(patients, out / "patients.parquet")
        if trajectories is not None:
            pq.write_table(trajectories, out / "trajectories.parquet")
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return TrialResult(spec, patients, summary, trajectories)
