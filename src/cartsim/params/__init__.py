"""Parameter tables and loading.

Every number the model uses lives in a data file under ``params/data`` with its value,
unit, source and evidence level. This module reads them; it holds no physiological
constants itself.

>>> from cartsim.params import load_parameters
>>> p = load_parameters()
>>> p["kill.gamma"].value, p["kill.gamma"].unit
(1.15, '1/day')
"""

from cartsim.params.errors import InputError
from cartsim.params.loader import (
    EVIDENCE_LEVELS,
    Parameter,
    ParameterTable,
    Sourced,
    data_path,
    load_parameters,
    load_yaml,
    read_user_yaml,
)

__all__ = [
    "EVIDENCE_LEVELS",
    "InputError",
    "Parameter",
    "ParameterTable",
    "Sourced",
    "data_path",
    "load_parameters",
    "load_yaml",
    "read_user_yaml",
]
