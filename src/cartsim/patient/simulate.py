"""One-patient (and small-batch) simulation: the public entry point of the in-vivo model."""

from __future__ import annotations

import csv
import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from cartsim.params import InputError, ParameterTable, load_parameters
from cartsim.params.loader import data_path
from cartsim.patient import metrics as M
from cartsim.patient.build import PatientSpec, build, resolve
from cartsim.patient.indication import Indication, load_indication
from cartsim.patient.interventions import ManagementPolicy, load_policy, policy_arrays
from cartsim.patient.model import ITN, ITP, observe
from cartsim.patient.product import Product, load_product
from cartsim.patient.solver import solve_batch


@dataclass(frozen=True)
class Dose:
    """A dose: ``per_kg`` (cells/kg) or flat ``cells``."""

    value: float
    per_kg: bool

    def cells(self, weight_kg: float) -> float:
        return self.value * weight_kg if self.per_kg else self.value


_DOSE_RE = re.compile(r"^\s*([0-9.eE+\-]+)\s*(?:cells)?\s*(/\s*kg)?\s*$")


def parse_dose(text: str) -> Dose:
    """Parse ``2e6/kg`` (cells per kg) or ``1e8`` (flat cells)."""
    m = _DOSE_RE.match(str(text))
    try:
        value = float(m.group(1)) if m else math.nan
    except ValueError:
        value = math.nan
    if not m or not math.isfinite(value) or value <= 0:
        raise InputError("dose", text, "a positive cell number, flat (e.g. 1e8) or per kg (e.g. 2e6/kg)")
    return Dose(value, per_kg=m.group(2) is not None)


@functools.cache
def _variability() -> tuple[tuple[str, float], ...]:
    with open(data_path("variability.csv"), newline="") as fh:
        return tuple((r["name"], float(r["omega2"])) for r in csv.DictReader(fh))


def variability() -> dict[str, float]:
    """Between-patient variances (omega^2 of log multipliers) from ``variability.csv``."""
    return dict(_variability())


def random_effects(rng: np.random.Generator, omega2: dict[str, float] | None = None) -> dict[str, float]:
    """Lognormal multipliers (one per row of ``variability.csv``) drawn from ``rng``.

    ``omega2`` overrides variances by name (population calibration); the standard-normal
    draws are the same whatever the variances, so fits use common random numbers.
    """
    w = dict(_variability()) if omega2 is None else {**dict(_variability()), **omega2}
    return {name: math.exp(math.sqrt(w[name]) * rng.standard_normal()) for name, _ in _variability()}


def sample_random_effects(seed: int, params: ParameterTable | None = None) -> dict[str, float]:
    """Lognormal multipliers for one virtual patient, from ``variability.csv``."""
    return random_effects(np.random.default_rng(seed))


@dataclass
class SimulationResult:
    """Daily trajectories (clinical units) and summary metrics of one patient."""

    indication: Indication
    product: Product
    spec: PatientSpec
    daily: dict[str, np.ndarray]
    metrics: dict
    ok: bool

    def to_table(self):
        import pyarrow as pa

        return pa.table({k: np.asarray(v) for k, v in self.daily.items()})


def simulate(indication: str | Indication = "b-all", product: str | Path | Product | None = None, *,
             dose: Dose | str | None = None, tumour_burden: float | None = None,
             weight_kg: float | None = None, days: int = 365, seed: int | None = None,
             lymphodepletion=None, policy: str | ManagementPolicy = "default",
             params: ParameterTable | None = None) -> SimulationResult:
    """Simulate one patient from infusion to ``days``.

    With ``seed=None`` the typical patient; with a seed, one virtual patient drawn from
    the between-patient variability in ``params/data/variability.csv``.
    """
    ind = indication if isinstance(indication, Indication) else load_indication(indication)
    prod = product if isinstance(product, Product) else load_product(product or ind.default_product)
    pol = policy if isinstance(policy, ManagementPolicy) else load_policy(policy)
    if isinstance(days, bool) or not isinstance(days, (int, np.integer)) or days <= 0:
        raise InputError("days", days, "a positive whole number of days")
    if isinstance(dose, str):
        dose = parse_dose(dose)
    p = load_parameters() if params is None else params
    re_ = {} if seed is None else sample_random_effects(int(seed), p)
    spec = PatientSpec(weight_kg=weight_kg, tumour_burden=tumour_burden, lymphodepletion=lymphodepletion,
                       random_effects=re_)
    w = ind.default_weight_kg.value if weight_kg is None else weight_kg
    if dose is not None:
        spec = PatientSpec(**{**spec.__dict__, "dose_cells": dose.cells(w)})
    spec = resolve(spec, prod, ind)
    theta, obs, y0 = build(prod, ind, spec, p)

    out = solve_batch(*stack([(theta, obs, y0)]), policy_arrays(pol), n_days=int(days))
    return summarise(ind, prod, spec, theta, obs, out, p)


def stack(built):
    """Stack per-patient ``(theta, obs, y0)`` triples into batch arrays."""
    thetas, obss, y0s = zip(*built)
    def st(*xs):
        return jnp.asarray(np.array(xs, dtype=np.float64))
    return (jax.tree_util.tree_map(st, *thetas), jax.tree_util.tree_map(st, *obss),
            jnp.asarray(np.array(y0s, dtype=np.float64)))


def simulate_many(cases, *, days: int = 365, policy: str | ManagementPolicy = "default",
                  params: ParameterTable | None = None) -> list[SimulationResult]:
    """Simulate several ``(indication, product, PatientSpec)`` cases in one compiled call."""
    p = load_parameters() if params is None else params
    pol = policy if isinstance(policy, ManagementPolicy) else load_policy(policy)
    prepared = []
    for ind, prod, spec in cases:
        ind = ind if isinstance(ind, Indication) else load_indication(ind)
        prod = prod if isinstance(prod, Product) else load_product(prod)
        spec = resolve(spec, prod, ind)
        prepared.append((ind, prod, spec, build(prod, ind, spec, p)))
    out = solve_batch(*stack([b for *_, b in prepared]), policy_arrays(pol), n_days=int(days))
    return [summarise(ind, prod, spec, b[0], b[1], out, p, i)
            for i, (ind, prod, spec, b) in enumerate(prepared)]


def summarise(ind, prod, spec, theta, obs, out, params: ParameterTable, i: int = 0) -> SimulationResult:
    one = jax.tree_util.tree_map(lambda a: np.asarray(a)[None], (theta, obs))
    out1 = type(out)(*(np.asarray(f)[i : i + 1] for f in out))
    daily = trajectories_batch(ind, *one, out1, [0], params)
    del daily["row"]
    # the trial's batched metrics on this one patient: one implementation of every rule
    o = {k: v[None] for k, v in daily.items() if k in _SUMMARY_OBS}
    met = {k: _scalar(v[0]) for k, v in _metrics(ind, o, out1, params, 1).items() if k != "ok"}
    met.update({
        "dose_car_cells": float(prod.car_cells(spec.dose_cells)),
        "weight_kg": float(spec.weight_kg),
        "tumour_burden_baseline": float(spec.tumour_burden),
        "ok": bool(out.ok[i]),
    })
    return SimulationResult(ind, prod, spec, daily, met, bool(out.ok[i]))


def _scalar(x):
    """A batched metric's value as a plain Python value (NaN and missing as None)."""
    if isinstance(x, np.generic):
        x = x.item()
    return None if isinstance(x, float) and math.isnan(x) else x


_SUMMARY_OBS = ("car_t_cells_per_ul", "car_t_copies_per_ug", "tumour_burden", "marker", "b_cells_per_ul",
                "il6_pg_per_ml")


@jax.jit
def _observe_jit(y, theta, obs, block):
    """The observations the summaries use (XLA drops the rest), one compiled call per shape."""
    o = observe(y, theta, obs, block)
    return {k: o[k] for k in _SUMMARY_OBS}


def summarise_batch(ind: Indication, theta, obs, out, params: ParameterTable, n: int | None = None) -> dict:
    """Per-patient metrics of a solved batch, vectorised over patients (no Python loop).

    Same metrics as :func:`summarise` (missing values are NaN or None) for the first ``n``
    patients of ``out``; the daily trajectories are not kept.
    """
    n = out.y.shape[0] if n is None else n
    y = np.asarray(out.y[:n])
    block = np.asarray(out.toci_block[:n])
    th = jax.tree_util.tree_map(lambda a: np.asarray(a)[:n, None], theta)
    ob = jax.tree_util.tree_map(lambda a: np.asarray(a)[:n, None], obs)
    o = {k: np.asarray(v) for k, v in _observe_jit(jax.device_put(y), th, ob, jax.device_put(block)).items()}
    return _metrics(ind, o, out, params, n)


def _metrics(ind: Indication, o: dict, out, params: ParameterTable, n: int) -> dict:
    """Per-patient metrics of the first ``n`` patients of ``out`` from their daily
    observations ``o`` (the :data:`_SUMMARY_OBS` columns, arrays ``[n, days + 1]``)."""
    y = np.asarray(out.y[:n])
    days = np.arange(y.shape[1], dtype=float)
    aplasia = params.value("bcell.aplasia_threshold")
    cat = M.response_series_batch(ind, o["tumour_burden"], o["marker"], o["b_cells_per_ul"], aplasia)
    crs, icans = np.asarray(out.crs[:n]), np.asarray(out.icans[:n])
    names = np.array(M.RESPONSES, dtype=object)
    res = {
        **M.kinetic_metrics_batch(days, o["car_t_cells_per_ul"], o["car_t_copies_per_ug"]),
        "response_day28": names[cat[:, 28]] if days[-1] >= 28 else np.full(n, None),
        "response_day90": names[cat[:, 90]] if days[-1] >= 90 else np.full(n, None),
        **M.outcome_metrics_batch(days, cat, np.exp(y[..., ITP]), np.exp(y[..., ITN])),
        **M.toxicity_metrics_batch(days, crs, "crs"),
        **M.toxicity_metrics_batch(days, icans, "icans"),
        "tocilizumab_doses": np.asarray(out.toci[:n]).sum(axis=1),
        "dexamethasone_doses": np.asarray(out.dex[:n]).sum(axis=1),
        "il6_max_pg_per_ml": o["il6_pg_per_ml"].max(axis=1),
        **M.b_cell_recovery_batch(days, o["b_cells_per_ul"], aplasia, params.value("bcell.recovery_threshold")),
        "ok": np.asarray(out.ok[:n]),
    }
    return res


_observe_all_jit = jax.jit(observe)


def trajectories_batch(ind: Indication, theta, obs, out, rows, params: ParameterTable) -> dict[str, np.ndarray]:
    """Daily trajectories (clinical units) of the patients ``rows`` of a solved batch.

    Long format, one entry per patient and day: ``row`` (the index within the batch),
    ``day``, every observation of :func:`cartsim.patient.model.observe`, the daily grades
    and doses, and the response category: the columns of ``cartsim simulate``'s table.
    """
    rows = np.asarray(rows, dtype=np.int64)
    y = np.asarray(out.y)[rows]
    th = jax.tree_util.tree_map(lambda a: np.asarray(a)[rows, None], theta)
    ob = jax.tree_util.tree_map(lambda a: np.asarray(a)[rows, None], obs)
    o = {k: np.asarray(v) for k, v in _observe_all_jit(jnp.asarray(y), th, ob,
                                                        jnp.asarray(np.asarray(out.toci_block)[rows])).items()}
    T = y.shape[1]
    cat = M.response_series_batch(ind, o["tumour_burden"], o["marker"], o["b_cells_per_ul"],
                                  params.value("bcell.aplasia_threshold"))
    res = {"row": np.repeat(rows, T), "day": np.tile(np.arange(T, dtype=float), len(rows))}
    res.update({k: v.reshape(-1) for k, v in o.items()})
    for name, field in (("crs_grade", "crs"), ("icans_grade", "icans"), ("tocilizumab_doses", "toci"),
                        ("dexamethasone_doses", "dex")):
        res[name] = np.asarray(getattr(out, field))[rows].reshape(-1)
    res["response"] = np.array(M.RESPONSES, dtype=object)[cat.reshape(-1)]
    return res
