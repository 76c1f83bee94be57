"""The in-vivo patient model: products, indications, interventions, the model and its metrics.

>>> from cartsim.patient import simulate
>>> r = simulate("b-all", "tisa-cel", days=60)          # doctest: +SKIP
>>> r.metrics["tmax_days"]                              # doctest: +SKIP
"""

import jax

# The in-vivo model integrates log cell numbers spanning ~25 decades: float64 throughout.
jax.config.update("jax_enable_x64", True)

from cartsim.patient.build import PatientSpec, build, resolve
from cartsim.patient.indication import INDICATIONS, Indication, Lymphodepletion, NO_LYMPHODEPLETION, load_indication
from cartsim.patient.interventions import ManagementPolicy, list_policies, load_policy
from cartsim.patient.model import STATE_NAMES, Obs, Theta, observe, vector_field
from cartsim.patient.product import Product, list_products, load_product
from cartsim.patient.simulate import Dose, SimulationResult, parse_dose, simulate, simulate_many
from cartsim.patient.solver import solve_batch

__all__ = [
    "INDICATIONS", "NO_LYMPHODEPLETION", "STATE_NAMES",
    "Dose", "Indication", "Lymphodepletion", "ManagementPolicy", "Obs", "PatientSpec", "Product",
    "SimulationResult", "Theta",
    "build", "list_policies", "list_products", "load_indication", "load_policy", "load_product",
    "observe", "parse_dose", "resolve", "simulate", "simulate_many", "solve_batch", "vector_field",
]
