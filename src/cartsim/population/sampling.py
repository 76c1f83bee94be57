"""Virtual patients: covariates from indication-specific distributions and random effects.

Draws are counter-based (JAX's threefry): patient ``i`` of a trial with seed ``s`` uses
the key ``fold_in(fold_in(key(s), i), crc32(quantity))`` for each quantity it draws, so
a patient's covariates and random effects depend only on ``(seed, index)``, never on how
the trial is cut into chunks, and adding a new random effect leaves every other draw
unchanged. Everything is vectorised over patients.

Truncated covariates are drawn by inversion (exact; no rejection loop): for a lognormal
with median ``m`` and CV ``c`` truncated to ``[lo, hi]``, ``z = Phi^-1(Phi(a) + u (Phi(b) -
Phi(a)))`` with ``a, b`` the standardised log bounds, and ``x = m exp(sigma z)``.
"""

from __future__ import annotations

import functools
import math
import zlib
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtr, ndtri
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cartsim.params import InputError, data_path, load_yaml
from cartsim.patient._schema import input_error_from
from cartsim.patient.build import PatientSpec
from cartsim.patient.simulate import variability


class Covariate(BaseModel):
    """One covariate's between-patient distribution (``params/data/population/*.yaml``).

    ``lognormal``: ``median``, ``cv``; ``normal``: ``mean``, ``sd``; ``lognormal_integer``:
    a lognormal rounded to whole numbers (counts such as prior lines of therapy);
    ``bernoulli``: probability ``p`` of 1, or, with ``among``, of 1 among the patients whose
    covariate ``among`` is 1 (0 for the others; e.g. a response to bridging among the
    bridged), reported as a share of those; ``categorical``: levels 1, 2, ... with
    probabilities ``probs`` (e.g. a trial's dose levels). Continuous and count covariates
    are truncated to ``[min, max]`` (drawn by inversion, exact).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    distribution: Literal["lognormal", "normal", "lognormal_integer", "bernoulli", "categorical"]
    median: float | None = Field(None, gt=0)
    cv: float | None = Field(None, gt=0)
    mean: float | None = None
    sd: float | None = Field(None, gt=0)
    p: float | None = Field(None, ge=0, le=1)
    probs: list[float] | None = Field(None, min_length=1)
    among: str | None = None
    min: float | None = None
    max: float | None = None
    unit: str = ""
    description: str = ""
    source: str = "model assumption"
    evidence: str = "assumption"

    @model_validator(mode="after")
    def _complete(self) -> "Covariate":
        need = {"lognormal": ("median", "cv", "min", "max"), "lognormal_integer": ("median", "cv", "min", "max"),
                "normal": ("mean", "sd", "min", "max"), "bernoulli": ("p",),
                "categorical": ("probs",)}[self.distribution]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"a {self.distribution} covariate needs {', '.join(missing)}")
        if self.among is not None and self.distribution != "bernoulli":
            raise ValueError("only a bernoulli covariate is drawn among the patients of another")
        if self.probs is not None and self.distribution != "categorical":
            raise ValueError("only a categorical covariate has probs")
        if self.probs is not None and (min(self.probs) < 0 or abs(sum(self.probs) - 1) > 1e-9):
            raise ValueError(f"probs {self.probs} are not probabilities summing to 1")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if self.distribution.startswith("lognormal") and self.min is not None and self.min < 0:
            raise ValueError("a lognormal covariate has min >= 0")
        return self


def check_among(cov: dict[str, Covariate]) -> None:
    """Every ``among`` names another Bernoulli covariate of ``cov`` (an input error if not)."""
    for name, d in cov.items():
        a = d.among
        if a is not None and (a == name or a not in cov or cov[a].distribution != "bernoulli"):
            others = [k for k, v in cov.items() if v.distribution == "bernoulli" and k != name]
            raise InputError(f"population.{name}.among", a, f"another bernoulli covariate: {', '.join(others) or 'none'}")


#: Covariates every virtual patient has; the population files may add others.
REQUIRED_COVARIATES = ("weight_kg", "tumour_burden", "age_years")


@functools.cache
def _file_covariates(indication: str) -> dict[str, Covariate]:
    raw = load_yaml(data_path("population", f"{indication}.yaml"))
    out = {k: Covariate.model_validate(v) for k, v in raw.items() if k not in ("indication", "age_groups")}
    for k in REQUIRED_COVARIATES:
        if k not in out:
            raise InputError(f"population/{indication}.yaml", k, "a distribution for every required covariate")
    return out


def covariate_model(indication: str, overrides: dict | None = None) -> dict[str, Covariate]:
    """The indication's covariate distributions, with ``overrides`` (a trial's ``population``)
    merged field by field: e.g. ``{"age_years": {"mean": 61, "sd": 10}}``."""
    base = _file_covariates(indication)
    if not overrides:
        return base
    out = dict(base)
    for name, fields in overrides.items():
        if name not in base:
            raise InputError(f"population.{name}", name, f"a covariate of {indication}: {', '.join(base)}")
        merged = {**base[name].model_dump(exclude_unset=True), **dict(fields)}
        if "distribution" in fields and fields["distribution"] != base[name].distribution:
            merged = dict(fields)  # a different distribution replaces the whole entry
        try:
            out[name] = Covariate.model_validate(merged)
        except ValidationError as err:
            raise input_error_from(err, f"population.{name}") from None
    return out


@functools.cache
def age_groups() -> tuple[tuple[float, ...], tuple[str, ...], str]:
    """Cut points (years), labels and source of the age groups reported per patient."""
    raw = load_yaml(data_path("population", "age_groups.yaml"))
    return tuple(float(c) for c in raw["cuts"]), tuple(raw["labels"]), raw["source"]


def age_group(age_years: np.ndarray) -> np.ndarray:
    cuts, labels, _ = age_groups()
    return np.asarray(labels, dtype=object)[np.searchsorted(np.asarray(cuts), np.asarray(age_years), side="right")]


def _stream(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


@functools.partial(jax.jit, static_argnames=("streams", "kind"))
def _draws(seed, indices, streams: tuple[int, ...], kind: str):
    """[n, len(streams)] standard normal (or uniform) draws, one key per (patient, stream)."""
    def one(i):
        k = jax.random.fold_in(jax.random.PRNGKey(seed), i)
        keys = jax.vmap(lambda s: jax.random.fold_in(k, s))(jnp.asarray(streams, dtype=jnp.uint32))
        f = jax.random.normal if kind == "normal" else jax.random.uniform
        return jax.vmap(lambda kk: f(kk, (), dtype=jnp.float64))(keys)
    return jax.vmap(one)(indices)


#: Patients per compiled draw: one program shape for every chunk size (compiled once, and
#: the same arithmetic for a patient whichever chunk it falls in).
DRAW_BLOCK = 4096


def _blocked(seed: int, idx: np.ndarray, streams: tuple[int, ...], kind: str) -> np.ndarray:
    out = np.empty((len(idx), len(streams)))
    for b0 in range(0, len(idx), DRAW_BLOCK):
        part = idx[b0 : b0 + DRAW_BLOCK]
        padded = np.zeros(DRAW_BLOCK, dtype=np.uint32)
        padded[: len(part)] = part
        out[b0 : b0 + len(part)] = np.asarray(_draws(int(seed), jnp.asarray(padded), streams, kind))[: len(part)]
    return out


def _truncated(u: np.ndarray, d: Covariate, lo=None, hi=None) -> np.ndarray:
    """Inverse-CDF draw of covariate ``d`` from uniforms ``u``, truncated to its own range
    and to ``[lo, hi]`` (eligibility)."""
    if d.distribution == "bernoulli":
        return (u < d.p).astype(np.int64)
    if d.distribution == "categorical":  # level k (from 1) where the cumulative probability passes u
        cum = np.cumsum(d.probs)
        return np.minimum(np.searchsorted(cum, u, side="right"), len(cum) - 1).astype(np.int64) + 1
    lo = max(d.min, lo if lo is not None else -math.inf)
    hi = min(d.max, hi if hi is not None else math.inf)
    if lo > hi:
        raise ValueError(f"empty range [{lo}, {hi}]")
    integer = d.distribution == "lognormal_integer"
    if integer:  # whole numbers in [lo, hi]: round half-up of a draw on [lo - 0.5, hi + 0.5)
        lo, hi = math.ceil(lo) - 0.5, math.floor(hi) + 0.5 - 1e-9
    if d.distribution == "normal":
        loc, scale = d.mean, d.sd
        a, b = (lo - loc) / scale, (hi - loc) / scale
    else:
        loc, scale = math.log(d.median), math.sqrt(math.log(1 + d.cv**2))
        a = (math.log(lo) - loc) / scale if lo > 0 else -math.inf
        b = (math.log(hi) - loc) / scale if math.isfinite(hi) else math.inf
    pa, pb = ndtr(a), ndtr(b)
    z = ndtri(np.clip(pa + u * (pb - pa), 1e-300, 1 - 1e-16))
    x = np.clip(loc + scale * z if d.distribution == "normal" else d.median * np.exp(scale * z), lo, hi)
    return np.floor(x + 0.5).astype(np.int64) if integer else x


def correlation_factor(names: tuple[str, ...], correlations) -> np.ndarray:
    """Cholesky factor of the correlation matrix of the random effects ``names``.

    ``correlations``: items with ``between`` (two names) and ``rho``. Unknown names and
    a matrix that is not positive definite are input errors naming the field.
    """
    C = np.eye(len(names))
    for k, c in enumerate(correlations or ()):
        a, b = c.between
        for name in (a, b):
            if name not in names:
                raise InputError(f"correlations[{k}].between", name, f"one of {', '.join(names)}")
        if a == b:
            raise InputError(f"correlations[{k}].between", list(c.between), "two different random effects")
        i, j = names.index(a), names.index(b)
        C[i, j] = C[j, i] = c.rho
    try:
        return np.linalg.cholesky(C)
    except np.linalg.LinAlgError:
        raise InputError("correlations", [(c.between, c.rho) for c in correlations],
                         "a positive definite correlation matrix") from None


def sample_population(indication: str, seed: int, indices, *, min_burden=None, max_burden=None,
                      omega2: dict[str, float] | None = None, correlations=None,
                      bounds: dict | None = None, covariates: dict | None = None) -> dict:
    """Covariates and random effects of patients ``indices`` (arrays of shape [n]).

    Returns ``{"weight_kg", "tumour_burden", "covariates": {name: values}, "random_effects":
    {name: multipliers}}``; ``covariates`` holds every covariate of the indication's
    population file (weight and burden included) and ``age_group``. ``covariates`` replaces
    those distributions (a trial's :meth:`~cartsim.population.spec.TrialSpec.covariates`, or
    :func:`covariate_model` with overrides); ``bounds`` maps covariate
    names to ``(lo, hi)`` eligibility limits (either may be None); ``min_burden`` and
    ``max_burden`` are the burden's. ``omega2`` overrides between-patient variances by name
    (population calibration); the standard-normal draws do not depend on the variances, so
    fits use common random numbers. ``correlations`` (see :func:`correlation_factor`)
    correlates the draws of the random effects; without it they are independent.
    """
    idx = np.asarray(indices, dtype=np.int64)
    cov = covariate_model(indication) if covariates is None else covariates
    check_among(cov)
    limits = {"tumour_burden": (min_burden, max_burden), **(bounds or {})}
    w2 = {**variability(), **(omega2 or {})}
    names = tuple(w2)
    cnames = tuple(cov)
    u = _blocked(seed, idx, tuple(_stream(c) for c in cnames), "uniform")
    z = _blocked(seed, idx, tuple(_stream(n) for n in names), "normal")
    if correlations:
        z = z @ correlation_factor(names, correlations).T
    covs = {c: _truncated(u[:, k], cov[c], *limits.get(c, (None, None))) for k, c in enumerate(cnames)}
    for c in cnames:
        if cov[c].among is not None:
            covs[c] = covs[c] * (covs[cov[c].among] > 0)
    covs["age_group"] = age_group(covs["age_years"])
    return {
        "weight_kg": covs["weight_kg"],
        "tumour_burden": covs["tumour_burden"],
        "covariates": covs,
        "random_effects": {n: np.exp(math.sqrt(w2[n]) * z[:, k]) for k, n in enumerate(names)},
    }


def sample_patient(indication: str, seed: int, index: int, *, min_burden=None, max_burden=None,
                   omega2: dict[str, float] | None = None) -> PatientSpec:
    """One virtual patient: the ``index``-th of :func:`sample_population`."""
    s = sample_population(indication, seed, [index], min_burden=min_burden, max_burden=max_burden, omega2=omega2)
    return PatientSpec(weight_kg=float(s["weight_kg"][0]), tumour_burden=float(s["tumour_burden"][0]),
                       random_effects={k: float(v[0]) for k, v in s["random_effects"].items()})
