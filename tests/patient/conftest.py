"""Shared fixtures: a population spread wide over parameters and burdens, solved coarse and fine."""

import numpy as np
import pytest

from cartsim.params import load_parameters
from cartsim.patient import PatientSpec, build, load_indication, load_policy, load_product, solve_batch
from cartsim.patient.interventions import policy_arrays
from cartsim.patient.simulate import stack

SCALED = ["cart.rho_max", "cart.K_stim", "cart.engraft_effector", "cart.delta_e", "cart.delta_m",
          "kill.gamma", "kill.k_half", "lymph.r_N", "cart.D50_exh", "act.K_kill"]


def _wide_population(n=48, seed=0):
    """Patients with parameters spread over 1/5x to 5x, burdens over 4 decades."""
    rng = np.random.default_rng(seed)
    base = load_parameters()
    cases = []
    for i in range(n):
        ind = ["b-all", "lbcl", "mm", "sle"][i % 4]
        prod = {"b-all": "tisa-cel", "lbcl": "axi-cel", "mm": "ide-cel", "sle": "cd19-sle"}[ind]
        params = base.replace({k: base.value(k) * 5.0 ** rng.uniform(-1, 1) for k in SCALED})
        indication = load_indication(ind)
        hi = min(indication.burden.max, 100.0 if ind != "lbcl" else 2000.0)
        burden = float(hi * 10 ** rng.uniform(-4, 0))
        cases.append(build(load_product(prod), indication,
                           PatientSpec(tumour_burden=burden, dose_cells=10 ** rng.uniform(6.5, 9)), params))
    return cases


@pytest.fixture(scope="session")
def wide():
    cases = _wide_population()
    pa = policy_arrays(load_policy())
    coarse = solve_batch(*stack(cases), pa, n_days=200)
    fine = solve_batch(*stack(cases), pa, n_days=200, rtol=1e-10, atol=1e-12)
    return coarse, fine, cases


