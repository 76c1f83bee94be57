"""The population engine (numba) against the JAX engine and an rtol 1e-10 reference."""

import numpy as np
import pytest

from cartsim.patient import load_indication, load_policy, load_product
from cartsim.patient.build import PatientSpec, build, build_batch, resolve
from cartsim.patient.fast_solver import solve_batch_fast
from cartsim.patient.interventions import policy_arrays
from cartsim.patient.model import IA
from cartsim.patient.simulate import stack
from cartsim.population import sample_patient
from cartsim.population.sampling import sample_population


@pytest.fixture(scope="module")
def fast(wide):
    _, _, cases = wide
    return solve_batch_fast(*stack(cases), policy_arrays(load_policy()), 200)


def test_cells_within_a_hundredth_of_a_decade_of_the_reference(wide, fast):
    _, fine, _ = wide
    ref = np.asarray(fine.y)[..., :IA]
    alive = ref > 0  # at least one cell; below that a population is extinct either way
    err = np.abs(fast.y[..., :IA] - ref) / np.log(10)
    assert fast.ok.all()
    assert err[alive].max() < 0.01


def test_grades_and_doses_match_the_reference(wide, fast):
    _, fine, _ = wide
    for name in ("crs", "icans", "toci", "dex"):
        assert np.array_equal(getattr(fast, name), np.asarray(getattr(fine, name))), name


def test_a_patient_does_not_depend_on_its_batch(wide):
    _, _, cases = wide
    pa = policy_arrays(load_policy())
    alone = solve_batch_fast(*stack(cases[5:6]), pa, 60)
    together = solve_batch_fast(*stack(cases[:12]), pa, 60)
    days = np.flatnonzero((alone.y[0] != together.y[5]).any(axis=1))
    assert days.size == 0, (  # where it differs, to tell the kernel from the between-day grading
        f"first differing day {days[0]}, max difference {np.abs(alone.y[0] - together.y[5]).max():.3g}, "
        f"toci days {np.flatnonzero(alone.toci[0])} vs {np.flatnonzero(together.toci[5])}, "
        f"dex days {np.flatnonzero(alone.dex[0])} vs {np.flatnonzero(together.dex[5])}")


def test_the_kernel_has_one_compiled_version():
    """A batch of one passes contiguous arrays where larger batches pass strided views; a
    second compiled version rounded differently when compiled in another process."""
    from cartsim.patient.fast_solver import _solve_days

    assert len(_solve_days.signatures) == 1 and len(_solve_days.overloads) == 1


def test_build_batch_equals_build_patient_by_patient():
    ind, prod = load_indication("mm"), load_product("ide-cel")
    pop = sample_population("mm", 3, np.arange(5))
    doses = np.array([prod.dose.cells(w) for w in pop["weight_kg"]])
    theta, obs, y0, bad = build_batch(prod, ind, pop["weight_kg"], pop["tumour_burden"], doses, None,
                                      pop["random_effects"])
    assert bad == []
    for i in range(5):
        spec = resolve(sample_patient("mm", 3, i), prod, ind)
        t1, o1, y1 = build(prod, ind, spec)
        assert np.allclose([getattr(theta, f)[i] for f in theta._fields], list(t1), rtol=1e-13)
        assert np.allclose([getattr(obs, f)[i] for f in obs._fields], list(o1), rtol=1e-13)
        assert np.allclose(y0[i], y1, rtol=1e-13)


def test_build_batch_flags_out_of_range_patients():
    ind, prod = load_indication("b-all"), load_product("tisa-cel")
    _, _, _, bad = build_batch(prod, ind, np.array([30.0, -1.0, 30.0]), np.array([50.0, 50.0, 250.0]),
                               np.array([1e8, 1e8, 1e8]))
    assert [i for i, _ in bad] == [1, 2]
    assert "weight_kg" in bad[0][1] and "tumour_burden" in bad[1][1]


def test_draws_do_not_depend_on_the_chunk():
    a = sample_population("lbcl", 11, np.arange(10))
    b = sample_population("lbcl", 11, np.arange(5, 10))
    assert np.array_equal(a["weight_kg"][5:], b["weight_kg"])
    for k in a["random_effects"]:
        assert np.array_equal(a["random_effects"][k][5:], b["random_effects"][k])
    lo = sample_population("lbcl", 11, np.arange(200), min_burden=50, max_burden=60)["tumour_burden"]
    assert lo.min() >= 50 and lo.max() <= 60
    spec = PatientSpec(**{**sample_patient("lbcl", 11, 7).__dict__})
    assert spec.weight_kg == a["weight_kg"][7]


def test_step_counts_and_inactive_padding(wide):
    _, _, cases = wide
    counts = np.zeros((4, 2), np.int64)
    out = solve_batch_fast(*stack(cases[:4]), policy_arrays(load_policy()), 30, n_active=3, step_counts=counts)
    assert (counts[:3, 0] > 30).all() and (counts[3] == 0).all()
    assert out.ok[:3].all() and not out.ok[3]
    assert np.array_equal(out.y[3, -1], out.y[3, 0])  # padding is not integrated
