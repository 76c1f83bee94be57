"""The in-vivo model: positivity and accuracy, monotone effects, reproducibility, done-when checks.

The ``wide`` population fixture is in conftest.py (shared with the population engine tests).
"""

import jax.numpy as jnp
import numpy as np
import pytest

from cartsim.params import InputError, load_parameters
from cartsim.patient import NO_LYMPHODEPLETION, PatientSpec, load_indication, load_product, simulate, simulate_many
from cartsim.patient.build import build, resolve
from cartsim.patient.model import IA, ITP, clinical_signs

def test_all_patients_solve_and_stay_positive(wide):
    coarse, *_ = wide
    assert bool(jnp.all(coarse.ok))
    y = np.asarray(coarse.y)
    assert np.all(np.isfinite(y))
    cells = np.exp(y[..., :IA])
    assert np.all(cells >= 0.0)  # positive by construction: states are logarithms


def test_tumour_count_accurate_to_a_hundredth_of_a_decade(wide):
    coarse, fine, _ = wide
    err = np.abs(np.asarray(coarse.y)[..., ITP] - np.asarray(fine.y)[..., ITP]) / np.log(10)
    # compare where the tumour is at least one cell (below that it is extinct either way)
    alive = np.asarray(fine.y)[..., ITP] > 0
    assert err[alive].max() < 0.01


def test_default_patient_done_when():
    m = simulate("b-all", "tisa-cel").metrics
    assert 0.6 <= m["doubling_time_days"] <= 1.0
    assert 7 <= m["tmax_days"] <= 14
    assert 3 <= m["contraction_half_life_days"] <= 8
    assert m["persistence_half_life_days"] >= 100


def test_axicel_peaks_higher_and_earlier_than_tisacel_in_lbcl():
    axi = simulate("lbcl", "axi-cel").metrics
    tisa = simulate("lbcl", "tisa-cel").metrics
    assert axi["cmax_cells_per_ul"] > tisa["cmax_cells_per_ul"]
    assert axi["tmax_days"] < tisa["tmax_days"]


def test_sle_b_cell_depletion_return_and_autoantibody_fall():
    r = simulate("sle", "cd19-sle")
    m, d = r.metrics, r.daily
    assert m["b_cell_aplasia_day"] is not None and m["b_cell_aplasia_day"] < 30
    assert 60 <= m["b_cell_recovery_day"] <= 200
    assert d["marker"][90] < 0.25 * d["marker"][0]
    assert m["response_day90"] in ("CR", "PR")


def test_bcma_product_spares_b_cells():
    m = simulate("mm", "ide-cel", days=120).metrics
    assert m["b_cell_aplasia_day"] is None


def _cmax(results):
    return [r.metrics["cmax_cells_per_ul"] for r in results]


def test_monotone_in_dose():
    doses = [1e7, 3e7, 1e8, 3e8, 1e9]
    res = simulate_many([("b-all", "tisa-cel", PatientSpec(dose_cells=d)) for d in doses], days=60)
    c = _cmax(res)
    # Cmax rises with dose up to the label range (tisa-cel: up to 2.5e8 cells) and then
    # plateaus: CAR-T cells compete for antigen, so the peak is bounded by the antigen load
    # (the De Boer-Perelson term), and 1e9 cells may peak a percent or so lower than 3e8.
    assert all(b >= a for a, b in zip(c[:4], c[1:4]))
    assert c[4] == pytest.approx(c[3], rel=0.05)
    auc = [r.metrics["auc_0_28"] for r in res]
    assert all(b >= a for a, b in zip(auc, auc[1:]))


def test_monotone_in_burden():
    burdens = [5, 15, 30, 60, 90]
    res = simulate_many([("b-all", "tisa-cel", PatientSpec(tumour_burden=b)) for b in burdens], days=60)
    c = _cmax(res)
    il6 = [r.metrics["il6_max_pg_per_ml"] for r in res]
    assert all(b >= a for a, b in zip(c, c[1:]))
    assert all(b >= a for a, b in zip(il6, il6[1:]))


def test_lymphodepletion_increases_expansion():
    with_ld = simulate("lbcl", "axi-cel", days=60).metrics
    without = simulate("lbcl", "axi-cel", days=60, lymphodepletion=NO_LYMPHODEPLETION).metrics
    # Qualitative: shared/reference holds no verified fold change, so this asks for a
    # material increase. (It asked for 2x before antigen competition bounded the peak;
    # the model now gives 1.95x, recorded in the closing note of the population issue.)
    assert with_ld["cmax_cells_per_ul"] > 1.5 * without["cmax_cells_per_ul"]


def test_memory_fraction_increases_persistence():
    base = load_product("tisa-cel")
    lo = simulate("b-all", base.with_(memory_fraction=0.05))
    hi = simulate("b-all", base.with_(memory_fraction=0.6))
    assert hi.daily["memory_cells"][180] > lo.daily["memory_cells"][180]
    assert hi.daily["car_t_cells_per_ul"][180] > lo.daily["car_t_cells_per_ul"][180]


def test_costim_domain_changes_kinetics():
    """Same product attributes, CD28 vs 4-1BB: CD28 expands faster and persists shorter."""
    b = load_product("tisa-cel")
    bb = simulate("lbcl", b, days=200).metrics
    cd28 = simulate("lbcl", b.with_(costim="CD28"), days=200)
    assert cd28.metrics["tmax_days"] <= bb["tmax_days"]
    assert cd28.metrics["cmax_cells_per_ul"] > bb["cmax_cells_per_ul"]
    assert cd28.daily["memory_cells"][180] < simulate("lbcl", b, days=200).daily["memory_cells"][180]


def test_reproducible_and_seed_dependent():
    a = simulate("lbcl", "axi-cel", days=90, seed=7).metrics
    b = simulate("lbcl", "axi-cel", days=90, seed=7).metrics
    c = simulate("lbcl", "axi-cel", days=90, seed=8).metrics
    assert a == b
    assert a["cmax_cells_per_ul"] != c["cmax_cells_per_ul"]


def test_management_policy_feeds_back():
    treated = simulate("b-all", "tisa-cel", tumour_burden=90, days=40)
    untreated = simulate("b-all", "tisa-cel", tumour_burden=90, days=40, policy="none")
    assert untreated.metrics["tocilizumab_doses"] == 0
    if treated.metrics["tocilizumab_doses"] > 0:
        # tocilizumab blocks IL-6 signalling: the effective IL-6 falls below the serum level
        d = treated.daily
        assert np.any(d["il6_effective_pg_per_ml"] < 0.5 * d["il6_pg_per_ml"])
        assert treated.metrics["crs_max_grade"] <= untreated.metrics["crs_max_grade"]


@pytest.mark.parametrize("kwargs, field", [
    ({"days": 0}, "days"), ({"days": -5}, "days"), ({"dose": "0"}, "dose"), ({"dose": "abc"}, "dose"),
    ({"dose": "2e6/g"}, "dose"), ({"tumour_burden": -1.0}, "tumour_burden"),
    ({"weight_kg": 0.0}, "weight_kg"), ({"policy": "nonsense"}, "policy"),
])
def test_bad_input_names_the_field(kwargs, field):
    with pytest.raises(InputError) as err:
        simulate("b-all", "tisa-cel", **kwargs)
    assert err.value.field == field


@pytest.mark.parametrize("indication", ["sle", "lbcl"])
def test_expansion_is_bounded_when_antigen_is_replenished(indication):
    """Competition for antigen: a highly stimulable clone facing B cells made by the marrow
    settles or contracts; it never grows without bound (it did before the w*C term)."""
    from cartsim.patient import simulate

    base = load_parameters()
    p = base.replace({"cart.K_stim": base.value("cart.K_stim") / 20, "cart.delta_e": base.value("cart.delta_e") / 3})
    r = simulate(indication, days=365, params=p)
    car = np.asarray(r.daily["car_t_total_cells"])
    assert np.all(np.isfinite(car))
    assert car[-1] < car.max()          # past its peak by the end of the year
    assert car.max() < 1e12             # whole-body CAR-T stays within a physiological range


def test_antigen_negative_clone_scales_with_its_random_effect_and_is_capped():
    from cartsim.patient import load_indication
    from cartsim.patient.build import build_batch
    from cartsim.patient.model import ITN

    ind, prod, p = load_indication("b-all"), load_product("tisa-cel"), load_parameters()
    mult = np.array([1.0, 100.0, 1e12])
    ones = np.ones(3)
    _, _, y0, bad = build_batch(prod, ind, 39 * ones, 50 * ones, 1e8 * ones, None,
                                {"antigen_negative_fraction": mult}, p)
    assert not bad
    neg, pos = np.exp(y0[:, ITN]), np.exp(y0[:, ITP])
    assert neg[1] / neg[0] == pytest.approx(100.0)
    # capped at the whole tumour: no antigen-positive cells left, none invented
    assert neg[2] == pytest.approx(neg[0] + pos[0], rel=1e-6) and pos[2] < 1e-6 * pos[0]


def test_ice_score_falls_sigmoidally_with_neuro_drive():
    prod, ind = load_product("tisa-cel"), load_indication("b-all")
    _, obs, _ = build(prod, ind, resolve(PatientSpec(), prod, ind))
    q = jnp.array([0.5, 1.0, 1.5, 2.0, 2.5, 4.0, obs.q_grade4])
    ice = np.asarray(clinical_signs(jnp.zeros_like(q), q, obs)[4])
    assert ice[0] == ice[1] == 10  # at or below rest: full score
    assert ice[3] == 5  # one unit of drive above rest halves it
    assert np.all(np.diff(ice[:-1]) <= 0) and ice[-2] <= 2  # falls steeply: grade 3 within a few units
    assert ice[-1] == -1  # unrousable
