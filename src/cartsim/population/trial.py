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
from cartsim.patient.build import PatientSpec, build, resolve
from cartsim.patient.interventions import policy_arrays
from cartsim.patient.product import Product
from cartsim.patient.simulate import stack, summarise_batch
from cartsim.patient.solver import solve_batch
from cartsim.population.endpoints import summarise_trial
from cartsim.population.sampling import sample_patient
from cartsim.population.spec import TrialSpec

#: Patients per compiled solve. Fixed, whatever the chunk size: XLA compiles a different
#: program for each batch shape (vectorised vs scalar tails of exp/log), and the adaptive
#: solver amplifies last-bit differences, so a fixed, padded shape is what makes a
#: patient's result independent of how the trial is chunked.
SOLVER_BLOCK = 32

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


def _row(i, patient: PatientSpec | None, metrics: dict | None, ok: bool, reason: str) -> dict:
    row = {"patient": i, "ok": ok, "fail_reason": reason,
           "weight_kg": None if patient is None else patient.weight_kg,
           "tumour_burden": None if patient is None else patient.tumour_burden}
    for c in METRIC_COLUMNS:
        row[c] = None if metrics is None else metrics.get(c)
    return row


def _workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8))


def _plain(a) -> list:
    """Array to Python values, NaN to None (Parquet nulls)."""
    a = np.asarray(a)
    if a.dtype.kind == "f":
        return [None if v != v else v for v in a.tolist()]
    return a.tolist()


def _run_chunk(spec, ind, prod, pol_arrays, ld, params, indices, omega2=None) -> list[dict]:
    prepared, rows = [], {}
    for i in indices:
        try:
            patient = sample_patient(spec.indication, spec.seed, i, min_burden=spec.eligibility.min_burden,
                                     max_burden=spec.eligibility.max_burden, omega2=omega2)
            weight = patient.weight_kg
            dose = spec.dose.cells(weight) if spec.dose is not None else None
            patient = resolve(PatientSpec(weight_kg=weight, tumour_burden=patient.tumour_burden,
                                          dose_cells=dose, lymphodepletion=ld,
                                          random_effects=patient.random_effects), prod, ind)
            prepared.append((i, patient, build(prod, ind, patient, params)))
        except Exception as err:  # flagged, never fatal
            rows[i] = _row(i, None, None, False, f"build: {err}")

    def solve(b0):
        block = prepared[b0 : b0 + SOLVER_BLOCK]
        built = [b for *_, b in block]
        built += [built[0]] * (SOLVER_BLOCK - len(built))  # padding, discarded
        theta, obs, y0 = stack(built)
        out = solve_batch(theta, obs, y0, pol_arrays, n_days=spec.follow_up_days)
        try:  # summaries straight away: the daily trajectories are not kept
            return block, summarise_batch(ind, theta, obs, out, params, len(block)), None
        except Exception as err:
            return block, None, err

    # XLA runs one block's solve on one core; blocks run side by side on all of them. The
    # numerics do not depend on the thread: each block is the same compiled program.
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        solved = list(pool.map(solve, range(0, len(prepared), SOLVER_BLOCK)))
    for block, res, err in solved:
        if err is not None:  # flagged, never fatal
            for i, patient, _ in block:
                rows[i] = _row(i, patient, None, False, f"summary: {err}")
            continue
        cols = {c: _plain(res[c]) for c in METRIC_COLUMNS if c in res}
        for k, (i, patient, _) in enumerate(block):
            metrics = {c: v[k] for c, v in cols.items()}
            metrics["dose_car_cells"] = float(prod.car_cells(patient.dose_cells))
            ok = bool(res["ok"][k])
            reason = "" if ok else "solver: step limit reached or non-finite state"
            rows[i] = _row(i, patient, metrics, ok, reason)
    return [rows[i] for i in indices]


def run_trial(spec: TrialSpec, out: Path | None = None, *, resume: bool = False,
              progress: Callable[[int, int], None] | None = None,
              params: ParameterTable | None = None, omega2: dict[str, float] | None = None) -> TrialResult:
    """Simulate ``spec.n`` virtual patients; write chunks and results under ``out``.

    ``params`` and ``omega2`` (between-patient variances by name) override the packaged
    parameter and variability tables, e.g. during population calibration.
    """
    ind = load_indication(spec.indication)
    prod = _product(spec)
    if prod.target_antigen not in ind.target_antigens:
        raise InputError(f"{spec.name}.product", prod.name, f"a product against {'/'.join(ind.target_antigens)}")
    ld = {"default": None, "none": NO_LYMPHODEPLETION}.get(spec.lymphodepletion, spec.lymphodepletion) \
        if isinstance(spec.lymphodepletion, str) else spec.lymphodepletion
    pol_arrays = policy_arrays(load_policy(spec.policy))
    params = load_parameters() if params is None else params

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
            for f in chunk_dir.glob("chunk_*.parquet"):
                f.unlink()
        chunk_dir.mkdir(exist_ok=True)
        stamp.write_text(json.dumps({"hash": h, "chunk_size": spec.chunk_size,
                                     "spec": spec.model_dump(mode="json")}, indent=2))

    tables = []
    starts = range(0, spec.n, spec.chunk_size)
    for k, start in enumerate(starts):
        indices = list(range(start, min(start + spec.chunk_size, spec.n)))
        path = None if chunk_dir is None else chunk_dir / f"chunk_{k:05d}.parquet"
        if resume and path is not None and path.exists():
            table = pq.read_table(path)
        else:
            table = pa.Table.from_pylist(_run_chunk(spec, ind, prod, pol_arrays, ld, params, indices, omega2))
            if path is not None:
                tmp = path.with_suffix(".tmp")
                pq.write_table(table, tmp)
                tmp.replace(path)  # atomic: a killed run never leaves a half-written chunk
        tables.append(table)
        if progress is not None:
            progress(indices[-1] + 1, spec.n)
    patients = pa.concat_tables(tables, promote_options="default")
    summary = summarise_trial(spec, patients)
    if out is not None:
        pq.write_table(patients, out / "patients.parquet")
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return TrialResult(spec, patients, summary)
