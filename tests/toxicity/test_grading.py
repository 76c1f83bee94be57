"""Tests for cartsim.toxicity.grading (ASTCT consensus CRS / ICANS grading).

Reference: /work/shared/reference/toxicity_grading.md, sections 1-3
(Lee et al., Biol Blood Marrow Transplant 2019;25(4):625,
doi:10.1016/j.bbmt.2018.12.758).
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartsim.toxicity import (
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
import cartsim.toxicity as toxicity

O = OxygenSupport
FEVER = 38.5
AFEBRILE = 37.0

# ---------------------------------------------------------------------------
# CRS consensus table, row by row
# ---------------------------------------------------------------------------

# (id, kwargs for crs_grade, expected grade)
CRS_TABLE_ROWS = [
    # Grade 1: fever, no hypotension, no hypoxia
    ("g1_fever_only", dict(temperature_c=FEVER, vasopressors=0, oxygen=O.NONE), 1),
    # Grade 2: hypotension without vasopressor / low-flow NC (<=6 L/min) or blow-by
    ("g2_hypotension_no_pressor", dict(temperature_c=FEVER, vasopressors=0, oxygen=O.NONE, hypotension=True), 2),
    ("g2_low_flow_nc", dict(temperature_c=FEVER, vasopressors=0, oxygen=O.LOW_FLOW), 2),
    ("g2_blow_by", dict(temperature_c=FEVER, vasopressors=0, oxygen="blow-by"), 2),
    ("g2_nc_6_l_min", dict(temperature_c=FEVER, vasopressors=0, oxygen=oxygen_support_from_device("nasal cannula", 6.0)), 2),
    # Grade 3: one vasopressor with or without vasopressin / HFNC, face mask, NRB, Venturi
    ("g3_one_pressor", dict(temperature_c=FEVER, vasopressors=1, oxygen=O.NONE, hypotension=True), 3),
    ("g3_one_pressor_plus_vasopressin", dict(temperature_c=FEVER, vasopressors=1, oxygen=O.NONE, vasopressin=True), 3),
    ("g3_hfnc", dict(temperature_c=FEVER, vasopressors=0, oxygen=O.HIGH_FLOW), 3),
    ("g3_nc_over_6", dict(temperature_c=FEVER, vasopressors=0, oxygen=oxygen_support_from_device("nasal cannula", 6.5)), 3),
    ("g3_face_mask", dict(temperature_c=FEVER, vasopressors=0, oxygen="face mask"), 3),
    ("g3_non_rebreather", dict(temperature_c=FEVER, vasopressors=0, oxygen="non-rebreather"), 3),
    ("g3_venturi", dict(temperature_c=FEVER, vasopressors=0, oxygen="Venturi"), 3),
    # Grade 4: several vasopressors (vasopressin not counted) / positive pressure
    ("g4_two_pressors", dict(temperature_c=FEVER, vasopressors=2, oxygen=O.NONE), 4),
    ("g4_three_pressors", dict(temperature_c=FEVER, vasopressors=3, oxygen=O.NONE), 4),
    ("g4_two_pressors_plus_vasopressin", dict(temperature_c=FEVER, vasopressors=2, oxygen=O.NONE, vasopressin=True), 4),
    ("g4_cpap", dict(temperature_c=FEVER, vasopressors=0, oxygen="CPAP"), 4),
    ("g4_bipap", dict(temperature_c=FEVER, vasopressors=0, oxygen="BiPAP"), 4),
    ("g4_intubation", dict(temperature_c=FEVER, vasopressors=0, oxygen="intubation"), 4),
    ("g4_positive_pressure_enum", dict(temperature_c=FEVER, vasopressors=0, oxygen=O.POSITIVE_PRESSURE), 4),
    # No CRS: afebrile without waiver, whatever the signs
    ("g0_afebrile", dict(temperature_c=AFEBRILE, vasopressors=0, oxygen=O.NONE), 0),
    ("g0_afebrile_with_signs_no_waiver", dict(temperature_c=AFEBRILE, vasopressors=2, oxygen=O.POSITIVE_PRESSURE), 0),
]


@pytest.mark.parametrize("kwargs,expected", [r[1:] for r in CRS_TABLE_ROWS], ids=[r[0] for r in CRS_TABLE_ROWS])
def test_crs_table_rows(kwargs, expected):
    assert crs_grade(**kwargs) == expected


# Hypotension column grade -> scalar kwargs producing it.
HYPOTENSION_COLUMN = {
    0: dict(vasopressors=0, hypotension=False),
    2: dict(vasopressors=0, hypotension=True),
    3: dict(vasopressors=1, hypotension=True),
    4: dict(vasopressors=2, hypotension=True),
}
HYPOXIA_COLUMN = {0: O.NONE, 2: O.LOW_FLOW, 3: O.HIGH_FLOW, 4: O.POSITIVE_PRESSURE}


@pytest.mark.parametrize("hypo_grade", sorted(HYPOTENSION_COLUMN))
@pytest.mark.parametrize("oxy_grade", sorted(HYPOXIA_COLUMN))
def test_crs_worse_of_hypotension_and_hypoxia_sets_grade(hypo_grade, oxy_grade):
    grade = crs_grade(FEVER, oxygen=HYPOXIA_COLUMN[oxy_grade], **HYPOTENSION_COLUMN[hypo_grade])
    assert grade == max(hypo_grade, oxy_grade, 1)


def test_crs_fever_threshold_boundary():
    assert crs_grade(37.99, 0, O.NONE) == 0
    assert crs_grade(38.0, 0, O.NONE) == 1


# ---------------------------------------------------------------------------
# Fever waiver
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("hypo_grade", sorted(HYPOTENSION_COLUMN))
@pytest.mark.parametrize("oxy_grade", sorted(HYPOXIA_COLUMN))
def test_fever_waiver_afebrile_grade_rests_on_signs(hypo_grade, oxy_grade):
    kwargs = dict(oxygen=HYPOXIA_COLUMN[oxy_grade], **HYPOTENSION_COLUMN[hypo_grade])
    # Without the waiver, no fever means no CRS.
    assert crs_grade(AFEBRILE, **kwargs) == 0
    # With the waiver, hypotension/hypoxia alone set the grade (0 if neither).
    assert crs_grade(AFEBRILE, antipyretics_or_anticytokine_given=True, **kwargs) == max(hypo_grade, oxy_grade)
    assert crs_grade(None, antipyretics_or_anticytokine_given=True, **kwargs) == max(hypo_grade, oxy_grade)


def test_fever_waiver_keeps_fever_grade_when_febrile():
    assert crs_grade(FEVER, 0, O.NONE, antipyretics_or_anticytokine_given=True) == 1
    assert crs_grade(FEVER, 0, O.LOW_FLOW, antipyretics_or_anticytokine_given=True) == 2


def test_missing_temperature_without_waiver_is_no_crs():
    assert crs_grade(None, 2, O.POSITIVE_PRESSURE) == 0


# ---------------------------------------------------------------------------
# Vasopressin handling
# ---------------------------------------------------------------------------


def test_vasopressin_alone_counts_as_one_vasopressor():
    assert crs_grade(FEVER, 0, O.NONE, vasopressin=True) == 3


def test_vasopressin_not_counted_toward_several():
    assert crs_grade(FEVER, 1, O.NONE, vasopressin=True) == 3
    assert crs_grade(FEVER, 2, O.NONE, vasopressin=False) == 4


def test_vasopressor_implies_hypotension():
    assert crs_grade(FEVER, 1, O.NONE, hypotension=False) == 3


# ---------------------------------------------------------------------------
# CRS input validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(temperature_c=101.3, vasopressors=0, oxygen=O.NONE), ValueError, "temperature_c"),
        (dict(temperature_c=float("nan"), vasopressors=0, oxygen=O.NONE), ValueError, "temperature_c"),
        (dict(temperature_c="39", vasopressors=0, oxygen=O.NONE), TypeError, "temperature_c"),
        (dict(temperature_c=FEVER, vasopressors=-1, oxygen=O.NONE), ValueError, "vasopressors=-1"),
        (dict(temperature_c=FEVER, vasopressors=1.5, oxygen=O.NONE), TypeError, "vasopressors"),
        (dict(temperature_c=FEVER, vasopressors=True, oxygen=O.NONE), TypeError, "vasopressors"),
        (dict(temperature_c=FEVER, vasopressors=0, oxygen=4), ValueError, "oxygen=4"),
        (dict(temperature_c=FEVER, vasopressors=0, oxygen="helmet"), ValueError, "helmet"),
        (dict(temperature_c=FEVER, vasopressors=0, oxygen=O.NONE, hypotension=2), ValueError, "hypotension=2"),
        (
            dict(temperature_c=FEVER, vasopressors=0, oxygen=O.NONE, antipyretics_or_anticytokine_given="yes"),
            ValueError,
            "antipyretics_or_anticytokine_given",
        ),
    ],
)
def test_crs_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        crs_grade(**kwargs)


def test_crs_accepts_integer_oxygen_codes_and_numpy_scalars():
    assert crs_grade(np.float64(FEVER), np.int64(1), 2) == 3
    assert crs_grade(FEVER, 0, np.int64(3)) == 4


# ---------------------------------------------------------------------------
# Oxygen device mapping
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "device,flow,expected",
    [
        ("none", None, O.NONE),
        ("room air", None, O.NONE),
        ("Room Air", None, O.NONE),
        ("nasal cannula", None, O.LOW_FLOW),
        ("nasal cannula", 2.0, O.LOW_FLOW),
        ("nasal cannula", 6.0, O.LOW_FLOW),
        ("nasal cannula", 6.1, O.HIGH_FLOW),
        ("Nasal Cannula", 15, O.HIGH_FLOW),
        ("low-flow nasal cannula", None, O.LOW_FLOW),
        ("blow-by", None, O.LOW_FLOW),
        ("BLOW BY", None, O.LOW_FLOW),
        ("high-flow nasal cannula", None, O.HIGH_FLOW),
        ("high-flow nasal cannula", 40.0, O.HIGH_FLOW),
        ("high_flow_nasal_cannula", None, O.HIGH_FLOW),
        ("HFNC", None, O.HIGH_FLOW),
        ("face mask", None, O.HIGH_FLOW),
        ("face mask", 5.0, O.HIGH_FLOW),
        ("non-rebreather", None, O.HIGH_FLOW),
        ("Non-Rebreather Mask", None, O.HIGH_FLOW),
        ("venturi", None, O.HIGH_FLOW),
        ("Venturi mask", None, O.HIGH_FLOW),
        ("cpap", None, O.POSITIVE_PRESSURE),
        ("CPAP", None, O.POSITIVE_PRESSURE),
        ("BiPAP", None, O.POSITIVE_PRESSURE),
        ("mechanical ventilation", None, O.POSITIVE_PRESSURE),
        ("intubation", None, O.POSITIVE_PRESSURE),
        ("  Intubation ", None, O.POSITIVE_PRESSURE),
    ],
)
def test_oxygen_support_from_device(device, flow, expected):
    result = oxygen_support_from_device(device, flow)
    assert result is expected
    assert isinstance(result, OxygenSupport)


def test_oxygen_flow_decides_for_nasal_cannula_labels():
    # The consensus defines low/high flow by the rate (<= 6 vs > 6 L/min).
    assert oxygen_support_from_device("low-flow nasal cannula", 8.0) is O.HIGH_FLOW
    assert oxygen_support_from_device("high-flow nasal cannula", 4.0) is O.LOW_FLOW


def test_oxygen_enum_values():
    assert [int(m) for m in OxygenSupport] == [0, 1, 2, 3]
    assert [m.name for m in OxygenSupport] == ["NONE", "LOW_FLOW", "HIGH_FLOW", "POSITIVE_PRESSURE"]


def test_oxygen_unknown_device_message_names_value_and_accepted_forms():
    with pytest.raises(ValueError) as info:
        oxygen_support_from_device("helmet ventilation")
    msg = str(info.value)
    assert "helmet ventilation" in msg
    for form in ("nasal cannula", "blow by", "face mask", "non rebreather", "venturi", "cpap", "bipap", "intubation"):
        assert form in msg


@pytest.mark.parametrize("flow", [-1.0, float("nan"), float("inf")])
def test_oxygen_invalid_flow(flow):
    with pytest.raises(ValueError, match="flow_l_min"):
        oxygen_support_from_device("nasal cannula", flow)


def test_oxygen_device_must_be_string():
    with pytest.raises(TypeError, match="device"):
        oxygen_support_from_device(3)


# ---------------------------------------------------------------------------
# ICE score
# ---------------------------------------------------------------------------


def test_ice_score_extremes():
    assert ice_score(4, 3, True, True, True) == 10
    assert ice_score(0, 0, False, False, False) == 0


@pytest.mark.parametrize(
    "args,expected",
    [
        ((4, 3, True, True, False), 9),
        ((3, 3, True, True, True), 9),
        ((4, 2, True, True, True), 9),
        ((4, 3, False, True, True), 9),
        ((4, 3, True, False, True), 9),
        ((2, 1, True, False, False), 4),
        ((1, 0, 0, 1, 0), 2),
    ],
)
def test_ice_score_sums(args, expected):
    assert ice_score(*args) == expected


def test_ice_score_exhaustive_sum():
    for o, n, c, w, a in itertools.product(range(5), range(4), (False, True), (False, True), (False, True)):
        assert ice_score(o, n, c, w, a) == o + n + c + w + a


@pytest.mark.parametrize(
    "args,exc,pattern",
    [
        ((5, 3, True, True, True), ValueError, r"orientation_correct=5.*0-4"),
        ((-1, 3, True, True, True), ValueError, r"orientation_correct=-1.*0-4"),
        ((4, 4, True, True, True), ValueError, r"naming_correct=4.*0-3"),
        ((4, -1, True, True, True), ValueError, r"naming_correct=-1.*0-3"),
        ((4, 3, 2, True, True), ValueError, r"follows_commands=2"),
        ((4, 3, True, "yes", True), ValueError, r"writes_sentence='yes'"),
        ((4, 3, True, True, None), ValueError, r"attention_correct=None"),
        ((3.5, 3, True, True, True), TypeError, r"orientation_correct"),
        ((True, 3, True, True, True), TypeError, r"orientation_correct"),
    ],
)
def test_ice_score_validation(args, exc, pattern):
    with pytest.raises(exc, match=pattern):
        ice_score(*args)


# ---------------------------------------------------------------------------
# ICANS consensus table (adults), row by row
# ---------------------------------------------------------------------------

C, S, E = Consciousness, Seizure, CerebralOedema

ICANS_TABLE_ROWS = [
    # ICE score domain
    ("ice10_normal", dict(ice_score=10), 0),
    ("ice9", dict(ice_score=9), 1),
    ("ice7", dict(ice_score=7), 1),
    ("ice6", dict(ice_score=6), 2),
    ("ice3", dict(ice_score=3), 2),
    ("ice2", dict(ice_score=2), 3),
    ("ice0_awake", dict(ice_score=0), 3),
    ("ice_unrousable", dict(ice_score=None), 4),
    # Level of consciousness domain
    ("alert", dict(ice_score=10, consciousness=C.AWAKE), 0),
    ("wakes_spontaneously", dict(ice_score=10, consciousness=C.WAKES_SPONTANEOUSLY), 1),
    ("wakes_to_voice", dict(ice_score=10, consciousness=C.WAKES_TO_VOICE), 2),
    ("wakes_to_touch", dict(ice_score=10, consciousness=C.WAKES_TO_TOUCH), 3),
    ("stupor_or_coma", dict(ice_score=None, consciousness=C.STUPOR_OR_COMA), 4),
    ("stupor_or_coma_ice0", dict(ice_score=0, consciousness=C.STUPOR_OR_COMA), 4),
    # Seizure domain
    ("seizure_resolving", dict(ice_score=10, seizure=S.RESOLVING), 3),
    ("seizure_prolonged", dict(ice_score=10, seizure=S.PROLONGED_OR_REPEATED), 4),
    # Motor domain
    ("deep_focal_motor_weakness", dict(ice_score=10, motor_weakness=True), 4),
    # Raised ICP / cerebral oedema domain
    ("focal_oedema", dict(ice_score=10, cerebral_oedema=E.FOCAL), 3),
    ("diffuse_oedema", dict(ice_score=10, cerebral_oedema=E.DIFFUSE), 4),
    # Most severe domain wins (table footnote example: ICE 3 + generalised seizure -> 3)
    ("ice3_plus_seizure", dict(ice_score=3, seizure=S.RESOLVING), 3),
    ("ice8_wakes_to_voice", dict(ice_score=8, consciousness=C.WAKES_TO_VOICE), 2),
    ("ice5_diffuse_oedema", dict(ice_score=5, cerebral_oedema=E.DIFFUSE), 4),
]


@pytest.mark.parametrize("kwargs,expected", [r[1:] for r in ICANS_TABLE_ROWS], ids=[r[0] for r in ICANS_TABLE_ROWS])
def test_icans_table_rows(kwargs, expected):
    assert icans_grade(**kwargs) == expected


@pytest.mark.parametrize("ice", [None, *range(11)])
@pytest.mark.parametrize("cons", list(Consciousness))
def test_icans_most_severe_of_ice_and_consciousness(ice, cons):
    if ice is None:
        ice_part = 4
    else:
        ice_part = 0 if ice == 10 else 1 if ice >= 7 else 2 if ice >= 3 else 3
    assert icans_grade(ice, cons) == max(ice_part, int(cons))


# ---------------------------------------------------------------------------
# Global aphasia rule
# ---------------------------------------------------------------------------


def test_global_aphasia_awake_ice0_is_grade3_not_4():
    assert icans_grade(0, C.AWAKE, global_aphasia_awake=True) == 3
    assert icans_grade(None, C.AWAKE, global_aphasia_awake=True) == 3
    # The same unperformable test in an unrousable patient is grade 4.
    assert icans_grade(None, C.AWAKE) == 4
    assert icans_grade(0, C.STUPOR_OR_COMA) == 4


def test_global_aphasia_does_not_cap_other_domains():
    assert icans_grade(None, C.AWAKE, seizure=S.PROLONGED_OR_REPEATED, global_aphasia_awake=True) == 4
    assert icans_grade(None, C.AWAKE, motor_weakness=True, global_aphasia_awake=True) == 4
    assert icans_grade(None, C.AWAKE, cerebral_oedema=E.DIFFUSE, global_aphasia_awake=True) == 4


def test_global_aphasia_contradicts_coma():
    with pytest.raises(ValueError, match="global_aphasia_awake"):
        icans_grade(None, C.STUPOR_OR_COMA, global_aphasia_awake=True)


# ---------------------------------------------------------------------------
# ICANS input coercion and validation
# ---------------------------------------------------------------------------


def test_icans_accepts_names_and_values():
    assert icans_grade(10, "wakes to voice") == 2
    assert icans_grade(10, "WAKES_TO_TOUCH") == 3
    assert icans_grade(10, 1) == 1
    assert icans_grade(10, seizure="resolving") == 3
    assert icans_grade(10, seizure=4) == 4
    assert icans_grade(10, cerebral_oedema="focal") == 3
    assert icans_grade(10, cerebral_oedema="Diffuse") == 4
    assert icans_grade(10, cerebral_oedema="none") == 0


@pytest.mark.parametrize(
    "kwargs,exc,pattern",
    [
        (dict(ice_score=11), ValueError, r"ice_score=11.*0-10"),
        (dict(ice_score=-1), ValueError, r"ice_score=-1.*0-10"),
        (dict(ice_score=7.5), TypeError, r"ice_score"),
        (dict(ice_score=10, consciousness="asleep"), ValueError, r"consciousness='asleep'"),
        (dict(ice_score=10, consciousness=5), ValueError, r"consciousness=5"),
        (dict(ice_score=10, seizure=2), ValueError, r"seizure=2"),
        (dict(ice_score=10, cerebral_oedema="global"), ValueError, r"cerebral_oedema='global'"),
        (dict(ice_score=10, motor_weakness="no"), ValueError, r"motor_weakness='no'"),
    ],
)
def test_icans_validation(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        icans_grade(**kwargs)


def test_enum_values_equal_contributed_grade():
    assert [int(m) for m in Consciousness] == [0, 1, 2, 3, 4]
    assert [int(m) for m in Seizure] == [0, 3, 4]
    assert [int(m) for m in CerebralOedema] == [0, 3, 4]


# ---------------------------------------------------------------------------
# Array versions: agreement with scalar versions, jit, vmap
# ---------------------------------------------------------------------------

CRS_TEMPS = [36.5, 37.9, 38.0, 39.5, math.nan]


def _crs_grid():
    rows = list(
        itertools.product(CRS_TEMPS, range(4), (False, True), (False, True), range(4), (False, True))
    )
    temp, n, vaso, hypo, oxy, waived = (np.array(col) for col in zip(*rows))
    expected = np.array(
        [
            crs_grade(
                None if math.isnan(t) else t,
                int(k),
                OxygenSupport(int(o)),
                bool(w),
                hypotension=bool(h),
                vasopressin=bool(v),
            )
            for t, k, v, h, o, w in rows
        ]
    )
    return (temp, n, oxy, waived, hypo, vaso), expected


def _icans_grid():
    rows = [
        r
        for r in itertools.product(
            [None, *range(11)], list(Consciousness), list(Seizure), (False, True), list(CerebralOedema), (False, True)
        )
        if not (r[5] and r[1] is Consciousness.STUPOR_OR_COMA)
    ]
    expected = np.array(
        [icans_grade(i, c, s, m, e, global_aphasia_awake=a) for i, c, s, m, e, a in rows]
    )
    ice = np.array([ICE_UNROUSABLE if r[0] is None else r[0] for r in rows])
    cons, seiz, motor, oed, aph = (np.array([int(x) for x in col]) for col in list(zip(*rows))[1:])
    return (ice, cons, seiz, motor.astype(bool), oed, aph.astype(bool)), expected


def test_crs_array_numpy_matches_scalar_exhaustive():
    (temp, n, oxy, waived, hypo, vaso), expected = _crs_grid()
    got = crs_grade_array(temp, n, oxy, waived, hypotension=hypo, vasopressin=vaso)
    assert isinstance(got, np.ndarray)
    assert np.issubdtype(got.dtype, np.integer)
    np.testing.assert_array_equal(got, expected)


def test_crs_array_jax_jit_matches_scalar_exhaustive():
    (temp, n, oxy, waived, hypo, vaso), expected = _crs_grid()
    fn = jax.jit(crs_grade_array)
    got = fn(jnp.asarray(temp), jnp.asarray(n), jnp.asarray(oxy), jnp.asarray(waived), jnp.asarray(hypo), jnp.asarray(vaso))
    assert isinstance(got, jax.Array)
    assert jnp.issubdtype(got.dtype, jnp.integer)
    np.testing.assert_array_equal(np.asarray(got), expected)


def test_icans_array_numpy_matches_scalar_exhaustive():
    args, expected = _icans_grid()
    got = icans_grade_array(*args)
    assert isinstance(got, np.ndarray)
    assert np.issubdtype(got.dtype, np.integer)
    np.testing.assert_array_equal(got, expected)


def test_icans_array_jax_jit_matches_scalar_exhaustive():
    args, expected = _icans_grid()
    got = jax.jit(icans_grade_array)(*(jnp.asarray(a) for a in args))
    assert isinstance(got, jax.Array)
    assert jnp.issubdtype(got.dtype, jnp.integer)
    np.testing.assert_array_equal(np.asarray(got), expected)


def test_array_versions_under_vmap():
    (temp, n, oxy, waived, hypo, vaso), crs_expected = _crs_grid()
    crs = jax.vmap(crs_grade_array)(
        jnp.asarray(temp), jnp.asarray(n), jnp.asarray(oxy), jnp.asarray(waived), jnp.asarray(hypo), jnp.asarray(vaso)
    )
    np.testing.assert_array_equal(np.asarray(crs), crs_expected)
    args, icans_expected = _icans_grid()
    icans = jax.jit(jax.vmap(icans_grade_array))(*(jnp.asarray(a) for a in args))
    np.testing.assert_array_equal(np.asarray(icans), icans_expected)


def test_array_versions_broadcast_and_default_arguments():
    temps = jnp.linspace(36.0, 40.0, 9)
    got = jax.jit(lambda t: crs_grade_array(t, 0, int(OxygenSupport.LOW_FLOW), False))(temps)
    np.testing.assert_array_equal(np.asarray(got), np.where(np.asarray(temps) >= 38.0, 2, 0))
    # A 2-D numpy grid with scalar broadcasting.
    ice = np.arange(-1, 11).reshape(3, 4)
    got_np = icans_grade_array(ice, 0, 0, False, 0)
    assert got_np.shape == (3, 4)
    np.testing.assert_array_equal(got_np.ravel(), [4, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 0])


def test_scalar_inputs_to_array_versions_return_0d_numpy():
    out = crs_grade_array(39.0, 2, 0, False)
    assert isinstance(out, np.ndarray) and out.shape == () and int(out) == 4


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=35.0, max_value=42.0, allow_nan=False),
            st.integers(0, 4),
            st.sampled_from(list(OxygenSupport)),
            st.booleans(),
            st.booleans(),
            st.booleans(),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_crs_array_matches_scalar_hypothesis(rows):
    expected = [crs_grade(t, n, o, w, hypotension=h, vasopressin=v) for t, n, o, w, h, v in rows]
    temp, n, oxy, waived, hypo, vaso = (np.array([int(x) if isinstance(x, OxygenSupport) else x for x in col]) for col in zip(*rows))
    np.testing.assert_array_equal(crs_grade_array(temp, n, oxy, waived, hypo, vaso), expected)
    got = crs_grade_array(jnp.asarray(temp), n, oxy, waived, hypo, vaso)
    assert isinstance(got, jax.Array)
    np.testing.assert_array_equal(np.asarray(got), expected)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(0, 10)),
            st.sampled_from(list(Consciousness)[:-1]),
            st.sampled_from(list(Seizure)),
            st.booleans(),
            st.sampled_from(list(CerebralOedema)),
            st.booleans(),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_icans_array_matches_scalar_hypothesis(rows):
    expected = [icans_grade(i, c, s, m, e, global_aphasia_awake=a) for i, c, s, m, e, a in rows]
    ice = np.array([ICE_UNROUSABLE if r[0] is None else r[0] for r in rows])
    cons, seiz, motor, oed, aph = (np.array([int(x) for x in col]) for col in list(zip(*rows))[1:])
    got = icans_grade_array(jnp.asarray(ice), cons, seiz, motor.astype(bool), oed, aph.astype(bool))
    np.testing.assert_array_equal(np.asarray(got), expected)


# ---------------------------------------------------------------------------
# Package surface
# ---------------------------------------------------------------------------


def test_public_api_exported():
    for name in (
        "crs_grade",
        "icans_grade",
        "ice_score",
        "crs_grade_array",
        "icans_grade_array",
        "OxygenSupport",
        "Consciousness",
        "Seizure",
        "CerebralOedema",
        "oxygen_support_from_device",
    ):
        assert name in toxicity.__all__
        assert hasattr(toxicity, name)
    assert toxicity.__doc__


def test_importing_grading_does_not_import_jax():
    code = (
        "import sys, numpy as np\n"
        "from cartsim.toxicity import crs_grade, crs_grade_array\n"
        "assert crs_grade(39.0, 1, 0) == 3\n"
        "assert int(crs_grade_array(np.array([39.0]), 1, 0, False)[0]) == 3\n"
        "assert 'jax' not in sys.modules\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
