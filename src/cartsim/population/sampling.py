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

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtr, ndtri

from cartsim.params import InputError, data_path, load_yaml
from cartsim.patient.build import PatientSpec
from cartsim.patient.simulate import variability


@functools.cache
def covariate_model(indication: str) -> dict:
    return load_yaml(data_path("population", f"{indication}.yaml"))


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


def _truncated_lognormal(u: np.ndarray, d: dict, lo=None, hi=None) -> np.ndarray:
    lo = max(d["min"], lo if lo is not None else -math.inf)
    hi = min(d["max"], hi if hi is not None else math.inf)
    if lo > hi:
        raise ValueError(f"empty range [{lo}, {hi}]")
    sigma = math.sqrt(math.log(1 + d["cv"] ** 2))
    a = (math.log(lo) - math.log(d["median"])) / sigma if lo > 0 else -math.inf
    b = (math.log(hi) - math.log(d["median"])) / sigma if math.isfinite(hi) else math.inf
    pa, pb = ndtr(a), ndtr(b)
    z = ndtri(np.clip(pa + u * (pb - pa), 1e-300, 1 - 1e-16))
    return np.clip(d["median"] * np.exp(sigma * z), lo, hi)


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
                      omega2: dict[str, float] | None = None, correlations=None) -> dict:
    """Covariates and random effects of patients ``indices`` (arrays of shape [n]).

    Returns ``{"weight_kg", "tumour_burden", "random_effects": {name: multipliers}}``.
    ``omega2`` overrides between-patient variances by name (population calibration); the
    standard-normal draws do not depend on the variances, so fits use common random numbers.
    ``correlations`` (see :func:`correlation_factor`) correlates the draws of the random
    effects; without it they are independent.
    """
    idx = np.asarray(indices, dtype=np.int64)
    cov = covariate_model(indication)
    w2 = {**variability(), **(omega2 or {})}
    names = tuple(w2)
    u = _blocked(seed, idx, (_stream("weight_kg"), _stream("tumour_burden")), "uniform")
    z = _blocked(seed, idx, tuple(_stream(n) for n in names), "normal")
    if correlations:
        z = z @ correlation_factor(names, correlations).T
    return {
        "weight_kg": _truncated_lognormal(u[:, 0], cov["weight_kg"]),
        "tumour_burden": _truncated_lognormal(u[:, 1], cov["tumour_burden"], min_burden, max_burden),
        "random_effects": {n: np.exp(math.sqrt(w2[n]) * z[:, k]) for k, n in enumerate(names)},
    }


def sample_patient(indication: str, seed: int, index: int, *, min_burden=None, max_burden=None,
                   omega2: dict[str, float] | None = None) -> PatientSpec:
    """One virtual patient: the ``index``-th of :func:`sample_population`."""
    s = sample_population(indication, seed, [index], min_burden=min_burden, max_burden=max_burden, omega2=omega2)
    return PatientSpec(weight_kg=float(s["weight_kg"][0]), tumour_burden=float(s["tumour_burden"][0]),
                       random_effects={k: float(v[0]) for k, v in s["random_effects"].items()})
