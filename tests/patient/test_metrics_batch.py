"""The batched metrics used by virtual trials equal the per-patient metrics."""

import math

import numpy as np
import pytest

from cartsim.params import load_parameters
from cartsim.patient import load_indication, load_policy, load_product
from cartsim.patient.build import build, resolve
from cartsim.patient.interventions import policy_arrays
from cartsim.patient.simulate import stack, summarise, summarise_batch
from cartsim.patient.solver import solve_batch
from cartsim.population import sample_patient
from cartsim.population.trial import METRIC_COLUMNS


@pytest.mark.parametrize("indication,product", [("b-all", "tisa-cel"), ("lbcl", "axi-cel"),
                                                ("mm", "ide-cel"), ("sle", "cd19-sle")])
def test_batch_metrics_match_single_patient_metrics(indication, product):
    params = load_parameters()
    ind, prod = load_indication(indication), load_product(product)
    specs = [resolve(sample_patient(indication, 7, i), prod, ind) for i in range(12)]
    built = [build(prod, ind, s, params) for s in specs]
    theta, obs, y0 = stack(built)
    out = solve_batch(theta, obs, y0, policy_arrays(load_policy("default")), n_days=200)
    batch = summarise_batch(ind, theta, obs, out, params)
    for k, spec in enumerate(specs):
        one = summarise(ind, prod, spec, built[k][0], built[k][1], out, params, k).metrics
        for c in METRIC_COLUMNS:
            if c == "dose_car_cells":
                continue
            a, b = one[c], batch[c][k]
            if a is None:
                assert b is None or (isinstance(b, float) and math.isnan(b)), (c, k, a, b)
            elif isinstance(a, str):
                assert a == b, (c, k, a, b)
            else:
                assert b == pytest.approx(a, rel=1e-9, abs=1e-12), (c, k, a, b)


def test_kinetic_metrics_of_a_known_curve():
    from cartsim.patient.metrics import kinetic_metrics

    days = np.arange(0.0, 201.0)
    # lag to day 2, doubling every day to day 10, then contraction (half-life 5 d) to day
    # 40 and persistence (half-life 100 d) afterwards
    logc = np.where(days <= 2, 0.0, np.log(2) * (days - 2))
    peak = np.log(2) * 8
    logc = np.where(days > 10, peak - np.log(2) / 5 * (days - 10), logc)
    low = peak - np.log(2) / 5 * 30
    logc = np.where(days > 40, low - np.log(2) / 100 * (days - 40), logc)
    m = kinetic_metrics(days, np.exp(logc), np.exp(logc))
    assert m["tmax_days"] == pytest.approx(10, abs=0.5)
    assert m["doubling_time_days"] == pytest.approx(1.0, rel=1e-6)
    assert m["contraction_half_life_days"] == pytest.approx(5.0, rel=1e-6)
    assert m["persistence_half_life_days"] == pytest.approx(100.0, rel=1e-6)
    assert m["cmax_cells_per_ul"] == pytest.approx(2.0**8)
