"""Virtual patients: covariates from indication-specific distributions and random effects.

Every patient has its own random stream, ``numpy.random.default_rng([seed, index])``, so
a patient's draw does not depend on how the trial is cut into chunks.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from cartsim.params import data_path, load_yaml
from cartsim.patient.build import PatientSpec
from cartsim.patient.simulate import random_effects


@functools.cache
def covariate_model(indication: str) -> dict:
    return load_yaml(data_path("population", f"{indication}.yaml"))


def _lognormal(rng, d: dict, lo: float | None = None, hi: float | None = None) -> float:
    """Truncated lognormal with the given median and coefficient of variation (rejection)."""
    sigma = math.sqrt(math.log(1 + d["cv"] ** 2))
    lo = max(d["min"], lo if lo is not None else -math.inf)
    hi = min(d["max"], hi if hi is not None else math.inf)
    if lo > hi:
        raise ValueError(f"empty range [{lo}, {hi}]")
    for _ in range(1000):
        x = d["median"] * math.exp(sigma * rng.standard_normal())
        if lo <= x <= hi:
            return x
    return min(max(d["median"], lo), hi)


def sample_patient(indication: str, seed: int, index: int, *, min_burden=None, max_burden=None,
                   omega2: dict[str, float] | None = None) -> PatientSpec:
    rng = np.random.default_rng([seed, index])
    cov = covariate_model(indication)
    weight = _lognormal(rng, cov["weight_kg"])
    burden = _lognormal(rng, cov["tumour_burden"], min_burden, max_burden)
    return PatientSpec(weight_kg=weight, tumour_burden=burden, random_effects=random_effects(rng, omega2))
