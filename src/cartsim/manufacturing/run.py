"""Batched, seeded manufacturing runs: starting material -> culture -> release -> Product.

All batches are computed at once with numpy arrays; the only Python loops are over
re-manufacturing attempts (at most ``remanufacture.max_attempts``) and release tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from cartsim.manufacturing import model as M
from cartsim.manufacturing.process import (
    HARVEST_DAY_RANGE,
    Duration,
    ProcessSpec,
    load_process,
    manufacturing_parameters,
)
from cartsim.params import InputError, ParameterTable
from cartsim.patient.product import Product, dose_cells, load_product

#: Indications with a patient population in manufacturing_parameters.csv.
POPULATIONS = ("b-all", "lbcl", "mm", "sle")
#: Largest batch count accepted (memory guard: about 1 kB per batch).
MAX_BATCHES = 5_000_000

OOS_REASONS = ("low_dose", "car_pos", "cd3", "viability", "potency")
FAILURE_REASONS = ("insufficient_dose", "car_pos", "cd3", "viability", "potency", "vcn", "sterility",
                   "mycoplasma", "endotoxin", "rcl", "run_failure", "oos_not_allowed")
#: Which release test detects which failure (its result day is when the failure is known).
_DETECTED_BY = {"insufficient_dose": "cell_count", "low_dose": "cell_count", "car_pos": "identity_purity",
                "cd3": "identity_purity", "viability": "viability", "potency": "potency", "vcn": "vcn",
                "sterility": "sterility", "mycoplasma": "mycoplasma", "endotoxin": "endotoxin", "rcl": "rcl"}
_EVENTS = ("sterility", "mycoplasma", "endotoxin", "rcl", "run_failure", "activation_failure")
_EVENT_PARAM = {"sterility": "release.sterility_positive_probability",
                "mycoplasma": "release.mycoplasma_positive_probability",
                "endotoxin": "release.endotoxin_oos_probability",
                "rcl": "release.rcl_positive_probability",
                "run_failure": "process.run_failure_probability",
                "activation_failure": "fitness.activation_failure_probability"}
_DURATIONS = ("apheresis_to_start", "ship_to_plant", "slot_wait", "fill_finish", "qp_release",
              "release_to_delivery", "review", "restart_from_backup", "restart_with_reapheresis")
_NOISE = ("fit_run", "recovery", "non_t", "eta", "viability", "potency")


# --- patients ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Patients:
    """Starting-material covariates, one entry per batch."""

    indication: str
    alc_per_ul: np.ndarray          # absolute lymphocyte count, cells/uL
    cd3_pct: np.ndarray             # CD3+ % of lymphocytes
    cd4_cd8_ratio: np.ndarray       # blood CD4:CD8
    prior_lines: np.ndarray         # prior lines of therapy
    bendamustine: np.ndarray        # recent repeated bendamustine (bool)
    weight_kg: np.ndarray

    def __len__(self) -> int:
        return len(self.alc_per_ul)


_COVARIATES = ("alc_per_ul", "cd3_pct", "cd4_cd8_ratio", "prior_lines", "bendamustine", "weight_kg")


def _check_indication(indication: str) -> str:
    if indication not in POPULATIONS:
        raise InputError("indication", indication, f"one of {', '.join(POPULATIONS)}")
    return indication


def _default_weight(indication: str) -> float:
    from cartsim.patient import load_indication

    return load_indication(indication).default_weight_kg.value


def draw_patients(indication: str, n: int, rng: np.random.Generator | int = 0,
                  params: ParameterTable | None = None, typical: bool = False) -> Patients:
    """Patients drawn from an indication's population (``population.*`` rows), or typical ones."""
    _check_indication(indication)
    p = manufacturing_parameters() if params is None else params
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    pre = f"population.{indication}."
    z = np.zeros((3, n)) if typical else rng.standard_normal((3, n))
    lines = np.full(n, p.value(pre + "prior_lines_mean")) if typical else \
        rng.poisson(p.value(pre + "prior_lines_mean"), n).astype(float)
    benda = np.zeros(n, bool) if typical else rng.random(n) < p.value(pre + "bendamustine_fraction")
    return Patients(
        indication=indication,
        alc_per_ul=p.value(pre + "alc_median") * np.exp(p.value("population.alc_log_sd") * z[0]),
        cd3_pct=np.clip(p.value(pre + "cd3_pct_mean") + p.value("population.cd3_pct_sd") * z[1], 5.0, 98.0),
        cd4_cd8_ratio=p.value(pre + "cd4_cd8_median") * np.exp(p.value("population.cd4_cd8_log_sd") * z[2]),
        prior_lines=lines,
        bendamustine=benda,
        weight_kg=np.full(n, _default_weight(indication)),
    )


def _override(base: Patients, values: Mapping[str, object]) -> Patients:
    """Replace covariates by user values (scalars or arrays of length n), checking ranges."""
    n = len(base)
    out = {f.name: getattr(base, f.name) for f in fields(base)}
    checks = {"alc_per_ul": (0, math.inf, "cells/uL > 0"), "cd3_pct": (0, 100, "a percentage in (0, 100]"),
              "cd4_cd8_ratio": (0, math.inf, "a ratio > 0"), "prior_lines": (-1e-12, 50, "a count 0-50"),
              "weight_kg": (0, 500, "kg in (0, 500]")}
    for key, val in values.items():
        if key == "indication":
            continue
        if key not in _COVARIATES:
            raise InputError(f"patients.{key}", val, f"one of {', '.join(_COVARIATES)}")
        try:
            arr = np.broadcast_to(np.asarray(val, dtype=bool if key == "bendamustine" else float), (n,)).copy()
        except (ValueError, TypeError):
            raise InputError(f"patients.{key}", val, f"a number or an array of {n} numbers") from None
        if key in checks:
            lo, hi, what = checks[key]
            if not (np.all(np.isfinite(arr)) and np.all(arr > lo) and np.all(arr <= hi)):
                raise InputError(f"patients.{key}", val, what)
        out[key] = arr
    return Patients(**out)


# --- random draws -----------------------------------------------------------------------

@dataclass(frozen=True)
class _Draws:
    z_patient: np.ndarray                 # (N,) patient fitness
    z_memory: np.ndarray                  # (N,) memory share at apheresis
    noise: dict[str, np.ndarray]          # name -> (A, N) standard normals
    events: dict[str, np.ndarray]         # name -> (A, N) uniforms (event if u < p)
    z_dur: dict[str, np.ndarray]          # name -> (A, N) standard normals (lognormal durations)
    u_dur: dict[str, np.ndarray]          # name -> (A, N) uniforms (exponential durations)


def _draws(rng: np.random.Generator | None, n: int, attempts: int) -> _Draws:
    """All random numbers of a run, drawn in a fixed order (``rng=None``: the typical batch)."""
    shape = (attempts, n)
    if rng is None:
        zeros, half, ones = np.zeros(shape), np.full(shape, 0.5), np.ones(shape)
        return _Draws(np.zeros(n), np.zeros(n), {k: zeros for k in _NOISE}, {k: ones for k in _EVENTS},
                      {k: zeros for k in _DURATIONS}, {k: half for k in _DURATIONS})
    z_pat = rng.standard_normal(n)
    z_mem = rng.standard_normal(n)
    noise = {k: rng.standard_normal(shape) for k in _NOISE}
    events = {k: rng.random(shape) for k in _EVENTS}
    z_dur = {k: rng.standard_normal(shape) for k in _DURATIONS}
    u_dur = {k: rng.random(shape) for k in _DURATIONS}
    return _Draws(z_pat, z_mem, noise, events, z_dur, u_dur)


def _duration(d: Duration, z: np.ndarray, u: np.ndarray) -> np.ndarray:
    if d.dist == "fixed":
        return np.full(z.shape, d.value)
    if d.dist == "lognormal":
        return d.value * np.exp(d.log_sd * z)
    return -d.value * np.log1p(-u)          # exponential with mean d.value


# --- one attempt ------------------------------------------------------------------------

def _spec_duration(proc: ProcessSpec, name: str) -> Duration:
    if name == "review":
        return proc.exceptions.review
    if name.startswith("restart_"):
        return getattr(proc.remanufacture, name)
    return getattr(proc.logistics, name)


def _culture(proc: ProcessSpec, pat: Patients, dr: _Draws, a: int, cytokines: str,
             p: ParameterTable) -> dict[str, np.ndarray]:
    """Starting material and culture state at harvest for attempt ``a`` (all batches)."""
    cd3 = M.apheresis_cd3_cells(pat.alc_per_ul, pat.cd3_pct, p)
    rec = np.clip(p.value("enrichment.recovery_mean") + p.value("enrichment.recovery_sd") * dr.noise["recovery"][a],
                  0.05, 1.0)
    # non-T share: lognormal with the published mean and SD (moment matching)
    m, s = p.value("enrichment.non_t_fraction_mean"), p.value("enrichment.non_t_fraction_sd")
    sig2 = math.log1p((s / m) ** 2)
    non_t = np.clip(np.exp(math.log(m) - sig2 / 2 + math.sqrt(sig2) * dr.noise["non_t"][a]), 0.0, 0.9)
    enriched = cd3 * rec / (1.0 - non_t)
    seeded = np.minimum(proc.culture.seed_cells.value, enriched)
    t0 = seeded * (1.0 - non_t)
    activation_failed = dr.events["activation_failure"][a] < p.value(_EVENT_PARAM["activation_failure"])
    log_fit = M.log_fitness(pat.prior_lines, pat.cd4_cd8_ratio, pat.bendamustine, dr.z_patient,
                            dr.noise["fit_run"][a], activation_failed, p)
    fit = np.exp(log_fit)
    lag = M.lag_days(fit, p)
    rate = M.growth_rate(fit, cytokines, p)
    return {"cd3_collected": cd3, "enriched_cells": enriched, "seeded_cells": seeded, "t0": t0,
            "non_t_cells": seeded * non_t, "log_fitness": log_fit, "lag": lag, "rate": rate,
            "f0": M.memory_fraction_at_apheresis(pat.prior_lines, dr.z_memory, p)}


def _attempt(proc: ProcessSpec, pat: Patients, dr: _Draws, a: int, start: np.ndarray, harvest_day: float,
             cytokines: str, form: str, p: ParameterTable) -> dict:
    c = _culture(proc, pat, dr, a, cytokines, p)
    h = harvest_day
    t_cells = M.viable_t_cells(h, c["t0"], c["lag"], c["rate"], proc.culture.capacity_cells.value, p)
    cd3_frac = t_cells / (t_cells + c["non_t_cells"])
    car, copies, vcn_car = M.transduction(proc.culture.moi.value, dr.noise["eta"][a], p, c["log_fitness"])
    if h < proc.culture.transduction_day.value:           # harvested before transduction: no CAR+ cells
        car = np.zeros_like(car)
    v_fresh = M.viability_fresh(c["log_fitness"], dr.noise["viability"][a], p)
    v_rel = v_fresh if form == "fresh" else M.viability_thawed(v_fresh, p)
    available = t_cells * car * p.value("formulation.cell_recovery") * (v_rel / v_fresh)
    surviving = M.potency_surviving(car * cd3_frac, v_rel, dr.noise["potency"][a], p)
    target = dose_cells(proc.dose_target, pat.weight_kg)
    w = pat.weight_kg
    st, ex = proc.specifications, proc.exceptions
    attrs = {
        "seeded_cells": c["seeded_cells"], "harvest_viable_cells": t_cells + c["non_t_cells"],
        "fold_expansion": (t_cells + c["non_t_cells"]) / c["seeded_cells"], "fitness": np.exp(c["log_fitness"]),
        "car_pos_pct": 100 * car, "vcn_per_cell": copies * cd3_frac, "vcn_per_car_cell": vcn_car,
        "memory_fraction": M.memory_fraction(h, c["f0"], cytokines, p),
        "cd4_cd8_ratio": M.cd4_cd8_ratio(h, pat.cd4_cd8_ratio, c["lag"], p),
        "viability_pct": 100 * v_rel, "cd3_pct": 100 * cd3_frac, "potency_surviving_pct": 100 * surviving,
        "dose_available": available, "dose_target": target,
        "backup": c["enriched_cells"] - c["seeded_cells"] * (a + 1) >= proc.culture.seed_cells.value,
    }
    oos = {
        "low_dose": available < st.dose_per_kg_min.value * w,
        "car_pos": attrs["car_pos_pct"] < st.car_pos_pct_min.value,
        "cd3": attrs["cd3_pct"] < st.cd3_pct_min.value,
        "viability": attrs["viability_pct"] < st.viability_pct_min.value,
        "potency": attrs["potency_surviving_pct"] >= st.potency_surviving_pct_max.value,
    }
    tests = {t.name: t for t in proc.release_tests}
    fail = {
        "insufficient_dose": available < ex.dose_per_kg_min.value * w,
        "car_pos": attrs["car_pos_pct"] < ex.car_pos_pct_min.value,
        "cd3": attrs["cd3_pct"] < ex.cd3_pct_min.value,
        "viability": attrs["viability_pct"] < ex.viability_pct_min.value,
        "potency": oos["potency"] & (not ex.potency_waivable),
        "vcn": attrs["vcn_per_cell"] > st.vcn_copies_per_cell_max.value,
    }
    for ev in _EVENTS[:-1]:               # activation failure acts through the culture, not as a test
        happened = dr.events[ev][a] < p.value(_EVENT_PARAM[ev])
        fail[ev] = happened if (ev == "run_failure" or ev in tests) else np.zeros_like(happened)
    any_oos = np.logical_or.reduce(list(oos.values()))
    hard = np.logical_or.reduce(list(fail.values()))
    fail["oos_not_allowed"] = any_oos & ~hard & (not ex.allow_oos_infusion)
    failed = hard | fail["oos_not_allowed"]

    # calendar (days from apheresis)
    dur = {k: _duration(_spec_duration(proc, k), dr.z_dur[k][a], dr.u_dur[k][a]) for k in _DURATIONS}
    harvest = start + h
    fill_end = harvest + dur["fill_finish"]
    result_day = {}
    for t in proc.release_tests:
        sampled = harvest - t.sample_days_before_harvest.value if t.sample == "in_process" else fill_end
        result_day[t.name] = sampled + t.time_to_result_days.value
    ready = np.maximum(fill_end, np.max(np.stack(list(result_day.values())), axis=0))
    is_oos = any_oos & ~failed
    release = ready + np.where(is_oos, dur["review"], 0.0) + dur["qp_release"]
    detect = np.full(start.shape, np.inf)
    for reason, mask in fail.items():
        when = harvest if reason == "run_failure" else \
            ready if reason == "oos_not_allowed" else result_day.get(_DETECTED_BY[reason], ready)
        detect = np.where(mask, np.minimum(detect, when), detect)
    return {"attrs": attrs, "oos": oos, "fail": fail, "failed": failed, "is_oos": is_oos,
            "release": release, "detect": detect, "dur": dur}


# --- results ----------------------------------------------------------------------------

ATTRIBUTES = ("seeded_cells", "harvest_viable_cells", "fold_expansion", "fitness", "car_pos_pct", "vcn_per_cell",
              "vcn_per_car_cell", "memory_fraction", "cd4_cd8_ratio", "viability_pct", "cd3_pct",
              "potency_surviving_pct", "dose_available", "dose_target")


@dataclass
class BatchResults:
    """Outcome of ``n`` manufacturing batches (arrays, one entry per batch).

    Product attributes are those of the released attempt (of the last attempt where
    every attempt failed). ``failure_reasons`` are those of the first attempt;
    ``oos_reasons`` those of the released product.
    """

    process: ProcessSpec
    harvest_day: float
    cytokines: str
    product_form: str
    seed: int | None
    patients: Patients
    attributes: dict[str, np.ndarray]
    dose_achieved: np.ndarray          # CAR+ viable cells infused (min(available, target)); nan if none
    released: np.ndarray               # a product was released (possibly OOS, possibly after re-manufacture)
    oos: np.ndarray                    # the released product is out of specification (infused by exception)
    first_attempt_failed: np.ndarray
    n_attempts: np.ndarray
    release_day: np.ndarray            # apheresis -> release (days); nan if never released
    delivery_day: np.ndarray           # apheresis -> product at the treating site (days)
    failure_reasons: dict[str, np.ndarray]
    oos_reasons: dict[str, np.ndarray]
    first_release_day: np.ndarray = field(repr=False, default=None)  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.released)

    def __getattr__(self, name: str):
        attrs = self.__dict__.get("attributes")
        if attrs is not None and name in attrs:
            return attrs[name]
        raise AttributeError(name)

    @property
    def duration_days(self) -> np.ndarray:
        """Apheresis to release (days); nan for batches never released."""
        return self.release_day

    def summary(self) -> dict:
        return summarise(self)

    def product(self, i: int = 0) -> Product:
        """Batch ``i`` as a :class:`cartsim.patient.Product` the in-vivo model takes as it is."""
        if not (isinstance(i, (int, np.integer)) and -len(self) <= i < len(self)):
            raise InputError("batch", i, f"an index below {len(self)}")
        if not self.released[i]:
            reasons = [k for k, v in self.failure_reasons.items() if v[i]]
            why = ", ".join(reasons) or "all attempts"
            raise InputError("batch", int(i), f"a released batch (this one failed: {why})")
        base = load_product(self.process.base_product)
        src = (f"cartsim manufacturing run: process {self.process.name}, harvest day {self.harvest_day:g}, "
               f"seed {self.seed}, batch {int(i)}")

        def sv(value: float, unit: str) -> dict:
            return {"value": float(value), "unit": unit, "source": src, "evidence": "derived"}

        a = self.attributes
        return base.with_(
            name=f"{self.process.name}-d{self.harvest_day:g}-b{int(i)}",
            display_name=f"{base.display_name or base.name} made by {self.process.display_name or self.process.name}",
            dose={"flat": sv(self.dose_achieved[i], "CAR+ viable cells")},
            dose_basis="car_positive_viable",
            memory_fraction=sv(a["memory_fraction"][i], "fraction"),
            cd4_cd8_ratio=sv(a["cd4_cd8_ratio"][i], "ratio"),
            viability_pct=sv(a["viability_pct"][i], "pct"),
            car_pos_pct=sv(a["car_pos_pct"][i], "pct"),
            vcn_per_car_cell=sv(a["vcn_per_car_cell"][i], "copies per CAR+ cell"),
        )

    def to_table(self):
        """All per-batch arrays as a pyarrow Table (Parquet-ready)."""
        import pyarrow as pa

        cols = {"batch": np.arange(len(self)), "released": self.released, "oos": self.oos,
                "first_attempt_failed": self.first_attempt_failed, "n_attempts": self.n_attempts,
                "release_day": self.release_day, "delivery_day": self.delivery_day,
                "dose_achieved": self.dose_achieved, **self.attributes,
                **{f"patient_{k}": getattr(self.patients, k) for k in _COVARIATES},
                **{f"failure_{k}": v for k, v in self.failure_reasons.items()},
                **{f"oos_{k}": v for k, v in self.oos_reasons.items()}}
        return pa.table({k: np.asarray(v) for k, v in cols.items()})


def _check_n(n_batches) -> int:
    if isinstance(n_batches, bool) or not isinstance(n_batches, (int, np.integer)) or not 0 < n_batches <= MAX_BATCHES:
        raise InputError("n_batches", n_batches, f"a whole number from 1 to {MAX_BATCHES}")
    return int(n_batches)


def _check_harvest(harvest_day) -> float:
    lo, hi = HARVEST_DAY_RANGE
    ok = isinstance(harvest_day, (int, float, np.integer, np.floating)) and not isinstance(harvest_day, bool)
    if not ok or not (math.isfinite(harvest_day) and lo <= harvest_day <= hi):
        raise InputError("harvest_day", harvest_day, f"a number of days from {lo} to {hi}")
    return float(harvest_day)


def _check_seed(seed) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError("seed", seed, "a whole number >= 0")
    return int(seed)


def _setup(process, n_batches, seed, harvest_day, patients, indication, cytokines, product_form, typical):
    proc = load_process(process)
    n = _check_n(n_batches)
    seed = _check_seed(seed)
    h = _check_harvest(proc.culture.harvest_day.value if harvest_day is None else harvest_day)
    cyt = proc.culture.cytokines if cytokines is None else cytokines
    if cyt not in ("il2", "il7_il15"):
        raise InputError("cytokines", cyt, "il2 or il7_il15")
    form = proc.product_form if product_form is None else product_form
    if form not in ("fresh", "cryopreserved"):
        raise InputError("product_form", form, "fresh or cryopreserved")
    attempts = proc.remanufacture.max_attempts if proc.remanufacture.enabled else 1
    pat_rng, noise_rng = (None, None) if typical else \
        [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2)]
    if isinstance(patients, Patients):
        if len(patients) != n:
            raise InputError("patients", f"{len(patients)} patients", f"one per batch ({n})")
        pat = patients
    else:
        values = dict(patients or {})
        ind = _check_indication(str(values.get("indication", indication or proc.indication)))
        pat = _override(draw_patients(ind, n, pat_rng, typical=typical), values)
    return proc, n, seed, h, cyt, form, attempts, pat, _draws(noise_rng, n, attempts)


def manufacture(process: str | Path | ProcessSpec = "poc", n_batches: int = 1000, seed: int | None = 0, *,
                harvest_day: float | None = None, patients: Patients | Mapping | None = None,
                indication: str | None = None, cytokines: str | None = None, product_form: str | None = None,
                typical: bool = False, params: ParameterTable | None = None) -> BatchResults:
    """Run ``n_batches`` manufacturing batches at once.

    ``process``: ``"poc"``, ``"central"``, a process YAML path or a :class:`ProcessSpec`.
    ``patients``: a :class:`Patients` or a mapping of covariates (scalars or arrays;
    missing ones are drawn from the indication's population). ``typical=True`` gives the
    typical patient and the median of every random quantity (no random failures).
    The same ``seed`` gives identical results, whatever the harvest day.
    """
    proc, n, seed, h, cyt, form, attempts, pat, dr = _setup(
        process, n_batches, seed, harvest_day, patients, indication, cytokines, product_form, typical)
    p = manufacturing_parameters() if params is None else params

    attrs: dict[str, np.ndarray] = {}
    oos_r = {k: np.zeros(n, bool) for k in OOS_REASONS}
    fail_first: dict[str, np.ndarray] = {}
    released = np.zeros(n, bool)
    is_oos = np.zeros(n, bool)
    release_day = np.full(n, np.nan)
    delivery_day = np.full(n, np.nan)
    n_att = np.zeros(n, int)
    pending = np.ones(n, bool)
    first_release = None
    start = None
    prev = None
    for a in range(attempts):
        if a == 0:
            d0 = {k: _duration(getattr(proc.logistics, k), dr.z_dur[k][0], dr.u_dur[k][0])
                  for k in ("apheresis_to_start", "ship_to_plant", "slot_wait")}
            start = d0["apheresis_to_start"] + d0["ship_to_plant"] + d0["slot_wait"]
        else:
            pd = prev["dur"]
            restart = np.where(prev["attrs"]["backup"], pd["restart_from_backup"],
                               pd["restart_with_reapheresis"] + pd["ship_to_plant"])
            nxt = _duration(proc.logistics.slot_wait, dr.z_dur["slot_wait"][a], dr.u_dur["slot_wait"][a])
            start = np.where(np.isfinite(prev["detect"]), prev["detect"], prev["release"]) + restart + nxt
        r = _attempt(proc, pat, dr, a, start, h, cyt, form, p)
        if a == 0:
            fail_first = {k: v.copy() for k, v in r["fail"].items()}
            first_release = np.where(r["failed"], np.nan, r["release"])
        take = pending                                        # batches still without a product
        for k, v in r["attrs"].items():
            attrs[k] = v.copy() if a == 0 else np.where(take, v, attrs[k])
        ok = take & ~r["failed"]
        released |= ok
        is_oos = np.where(ok, r["is_oos"], is_oos)
        for k in OOS_REASONS:
            oos_r[k] = np.where(ok, r["oos"][k] & r["is_oos"], oos_r[k])
        release_day = np.where(ok, r["release"], release_day)
        delivery_day = np.where(ok, r["release"] + r["dur"]["release_to_delivery"], delivery_day)
        n_att = np.where(take, a + 1, n_att)
        pending = take & r["failed"]
        prev = r
        if not pending.any():
            break
    dose = np.where(released, np.minimum(attrs["dose_available"], attrs["dose_target"]), np.nan)
    attrs.pop("backup", None)
    return BatchResults(process=proc, harvest_day=h, cytokines=cyt, product_form=form, seed=None if typical else seed,
                        patients=pat, attributes=attrs, dose_achieved=dose, released=released, oos=is_oos,
                        first_attempt_failed=np.logical_or.reduce(list(fail_first.values())),
                        n_attempts=n_att, release_day=release_day, delivery_day=delivery_day,
                        failure_reasons=fail_first, oos_reasons=oos_r, first_release_day=first_release)


def typical_batch(process: str | Path | ProcessSpec = "poc", harvest_day: float | None = None,
                  **kwargs) -> BatchResults:
    """One batch from the typical patient with every random quantity at its median."""
    return manufacture(process, 1, None, harvest_day=harvest_day, typical=True, **kwargs)


def daily_culture(process: str | Path | ProcessSpec = "poc", harvest_day: float | None = None, *,
                  n_batches: int = 1, seed: int | None = 0, patients: Patients | Mapping | None = None,
                  indication: str | None = None, cytokines: str | None = None, typical: bool = False,
                  days: int | None = None, params: ParameterTable | None = None) -> dict[str, np.ndarray]:
    """Day-by-day culture of the first manufacturing attempt of each batch.

    Returns ``day`` (culture days 0..days, default the harvest day) and arrays of shape
    (days + 1, n_batches): ``viable_cells``, ``t_cells``, ``car_pos_pct``,
    ``memory_fraction``, ``effector_fraction``, ``cd4_cd8_ratio`` and ``cd3_pct``. With the
    same arguments and seed, day ``harvest_day`` matches :func:`manufacture` (before
    formulation losses and thawing).
    """
    proc, n, seed, h, cyt, form, attempts, pat, dr = _setup(
        process, n_batches, seed, harvest_day, patients, indication, cytokines, None, typical)
    p = manufacturing_parameters() if params is None else params
    last = int(math.ceil(h)) if days is None else days
    if isinstance(last, bool) or not isinstance(last, (int, np.integer)) or not 0 <= last <= 60:
        raise InputError("days", days, "a whole number of culture days from 0 to 60")
    c = _culture(proc, pat, dr, 0, cyt, p)
    t = np.arange(last + 1, dtype=float)[:, None]
    t_cells = M.viable_t_cells(t, c["t0"], c["lag"], c["rate"], proc.culture.capacity_cells.value, p)
    viable = t_cells + c["non_t_cells"]
    car, _, _ = M.transduction(proc.culture.moi.value, dr.noise["eta"][0], p, c["log_fitness"])
    car_pct = np.where(t >= proc.culture.transduction_day.value, 100 * car, 0.0)
    mem = M.memory_fraction(t, c["f0"], cyt, p)
    return {"day": t[:, 0], "viable_cells": viable, "t_cells": t_cells, "car_pos_pct": car_pct,
            "memory_fraction": mem, "effector_fraction": 1.0 - mem,
            "cd4_cd8_ratio": M.cd4_cd8_ratio(t, pat.cd4_cd8_ratio, c["lag"], p),
            "cd3_pct": 100 * t_cells / viable}


# --- summary ----------------------------------------------------------------------------

def _median(x: np.ndarray, mask: np.ndarray) -> float | None:
    sel = x[mask]
    return float(np.median(sel)) if sel.size else None


def summarise(results: BatchResults) -> dict:
    """Summary of a batch run: medians over released products, rates over all batches (%)."""
    r = results
    n = len(r)
    rel = r.released
    a = r.attributes
    pct = lambda m: float(100.0 * np.count_nonzero(m) / n)  # noqa: E731
    q = (lambda x: [float(v) for v in np.percentile(x[rel], [25, 75])]) if rel.any() else (lambda x: [None, None])
    out = {
        "process": r.process.name, "platform": r.process.platform, "product_form": r.product_form,
        "cytokines": r.cytokines, "harvest_day": r.harvest_day, "n_batches": n, "seed": r.seed,
        "indication": r.patients.indication,
        "duration_days_median": _median(r.release_day, rel),
        "duration_days_iqr": q(r.release_day),
        "delivery_days_median": _median(r.delivery_day, rel),
        "first_attempt_duration_days_median": _median(r.first_release_day, np.isfinite(r.first_release_day)),
        "dose_achieved_median": _median(r.dose_achieved, rel),
        "dose_target_median": _median(a["dose_target"], rel),
        "dose_target_met_pct": pct(rel & (a["dose_available"] >= a["dose_target"])),
        "dose_available_median": _median(a["dose_available"], rel),
        "car_pos_pct_median": _median(a["car_pos_pct"], rel),
        "memory_fraction_median": _median(a["memory_fraction"], rel),
        "cd4_cd8_ratio_median": _median(a["cd4_cd8_ratio"], rel),
        "viability_pct_median": _median(a["viability_pct"], rel),
        "vcn_per_cell_median": _median(a["vcn_per_cell"], rel),
        "vcn_per_car_cell_median": _median(a["vcn_per_car_cell"], rel),
        "fold_expansion_median": _median(a["fold_expansion"], rel),
        "harvest_viable_cells_median": _median(a["harvest_viable_cells"], rel),
        "cd3_pct_median": _median(a["cd3_pct"], rel),
        "potency_surviving_pct_median": _median(a["potency_surviving_pct"], rel),
        "failure_pct": pct(r.first_attempt_failed),
        "final_failure_pct": pct(~rel),
        "oos_pct": pct(rel & r.oos),
        "release_pass_pct": pct(rel & ~r.oos),
        "remanufactured_pct": pct(r.n_attempts > 1),
        "failure_reasons_pct": {k: pct(v) for k, v in r.failure_reasons.items()},
        "oos_reasons_pct": {k: pct(v) for k, v in r.oos_reasons.items()},
    }
    return out
