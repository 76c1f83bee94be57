"""The manufacturing twin: a closed machine in the hospital versus a central plant abroad.

Starting material from the patient's blood counts and prior therapy, a closed-system
CD4/CD8-selected, TransAct-activated, lentivirally transduced culture harvested on a
user-set day, release testing with out-of-specification (OOS) exception rules and
re-manufacturing, and the calendar around it. Batched (numpy arrays, no loop over
batches) and seeded. Each released batch becomes a :class:`cartsim.patient.Product`
that the in-vivo model takes as it is.

>>> from cartsim.manufacturing import manufacture
>>> r = manufacture("poc", n_batches=2000, seed=1)
>>> s = r.summary(); s["duration_days_median"]            # doctest: +SKIP
12.75
>>> product = r.product(0)                                 # doctest: +SKIP

The equations and every parameter are in ``docs/manufacturing.md``.
"""

import importlib

# Public names and the submodule that defines each. Loaded on first use (PEP 562) so that
# ``cartsim --help`` and the other commands do not pay for importing the model (and JAX)
# just because ``cartsim manufacture`` is registered.
_EXPORTS = {
    "vcn_distribution": "model",
    **dict.fromkeys(["HARVEST_DAY_RANGE", "REQUIRED_TESTS", "Duration", "ProcessSpec", "ReleaseTest",
                     "list_processes", "load_process", "manufacturing_parameters",
                     "manufacturing_targets"], "process"),
    **dict.fromkeys(["FAILURE_REASONS", "OOS_REASONS", "POPULATIONS", "BatchResults", "Patients",
                     "daily_culture", "dose_cells", "draw_patients", "manufacture", "summarise",
                     "typical_batch"], "run"),
}


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"cartsim.manufacturing.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cartsim.manufacturing' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = [
    "FAILURE_REASONS", "HARVEST_DAY_RANGE", "OOS_REASONS", "POPULATIONS", "REQUIRED_TESTS",
    "BatchResults", "Duration", "Patients", "ProcessSpec", "ReleaseTest",
    "daily_culture", "dose_cells", "draw_patients", "list_processes", "load_process", "manufacture",
    "manufacturing_parameters", "manufacturing_targets", "summarise", "typical_batch", "vcn_distribution",
]
