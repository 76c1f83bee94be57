"""Toxicity grading for CAR-T therapy: ASTCT consensus CRS and ICANS grades.

Implements the ASTCT consensus grading of cytokine release syndrome (CRS) and
immune effector cell-associated neurotoxicity syndrome (ICANS), and the ICE
score (Lee et al., Biol Blood Marrow Transplant 2019;25(4):625,
doi:10.1016/j.bbmt.2018.12.758).  Scalar functions validate clinical
observations; the ``*_array`` versions share the same rules and run on NumPy
or JAX arrays (``jax.jit`` / ``jax.vmap`` compatible).  See
:mod:`cartsim.toxicity.grading`.
"""

from cartsim.toxicity.grading import (
    ICE_MAX,
    ICE_UNROUSABLE,
    CerebralOedema,
    Consciousness,
    OxygenSupport,
    Seizure,
    crs_grade,
    crs_grade_array,
    icans_grade,
    icans_grade_array,
    ice_score,
    oxygen_support_from_device,
)

__all__ = [
    "crs_grade",
    "crs_grade_array",
    "ice_score",
    "icans_grade",
    "icans_grade_array",
    "oxygen_support_from_device",
    "OxygenSupport",
    "Consciousness",
    "Seizure",
    "CerebralOedema",
    "ICE_MAX",
    "ICE_UNROUSABLE",
]
