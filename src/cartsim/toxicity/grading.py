"""ASTCT consensus grading of CRS and ICANS, and the ICE score.

Source for every rule in this module:

    Lee DW, Santomasso BD, Locke FL, et al. ASTCT Consensus Grading for
    Cytokine Release Syndrome and Neurologic Toxicity Associated with Immune
    Effector Cells. Biol Blood Marrow Transplant 2019;25(4):625-638.
    doi:10.1016/j.bbmt.2018.12.758

as reproduced in ``/work/shared/reference/toxicity_grading.md`` (sections 1-3,
evidence: verified; the ICE score table also in PMC8153820, the adult ICANS
table also in PMC8403007 and PMC7990806).

The module has two layers that share one rule implementation:

* **Array functions** (:func:`crs_grade_array`, :func:`icans_grade_array`) take
  integer/boolean/float codes, use only elementwise operations and work on
  NumPy arrays or JAX arrays, including inside :func:`jax.jit` and
  :func:`jax.vmap`.  They do no validation, so that they stay traceable.
* **Scalar functions** (:func:`crs_grade`, :func:`ice_score`,
  :func:`icans_grade`, :func:`oxygen_support_from_device`) are meant for real
  clinical observations: they validate and normalise their inputs (raising
  :class:`ValueError` / :class:`TypeError` with the offending field, value and
  accepted range), then call the array functions.

Interpretation choices (documented where they are applied):

* CRS: fever is temperature >= 38.0 degC.  Vasopressin is not counted toward
  "several vasopressors"; vasopressin given as the only pressor counts as one
  vasopressor (grade 3).  Need for any vasopressor implies hypotension.
* CRS fever waiver: once antipyretics or anti-cytokine drugs were given, fever
  is no longer required; the grade is then set by hypotension/hypoxia alone
  (0 if neither is present and the patient is afebrile; at least 1 whenever
  fever is present).
* ICANS consciousness: the table's grade-1 level is "wakes spontaneously"
  (i.e. drowsy, but wakes without stimulus).  A fully alert patient
  (:attr:`Consciousness.AWAKE`) contributes grade 0.
* ICANS ICE score: ``None`` (scalar) or any negative value (array,
  :data:`ICE_UNROUSABLE`) means the patient cannot be roused to perform the
  ICE test, which is grade 4.  An awake patient scoring ICE 0 because of global
  aphasia is grade 3, not 4: with ``global_aphasia_awake`` the ICE domain is
  capped at grade 3 (other domains still apply).
"""

from __future__ import annotations

import enum
import math
import numbers
import sys
from typing import Any

import numpy as np

__all__ = [
    "OxygenSupport",
    "Consciousness",
    "Seizure",
    "CerebralOedema",
    "oxygen_support_from_device",
    "crs_grade",
    "crs_grade_array",
    "ice_score",
    "icans_grade",
    "icans_grade_array",
    "ICE_UNROUSABLE",
    "ICE_MAX",
]

# ---------------------------------------------------------------------------
# Thresholds and grade values (all: Lee et al., BBMT 2019;25(4):625,
# doi:10.1016/j.bbmt.2018.12.758; reference file toxicity_grading.md)
# ---------------------------------------------------------------------------

# CRS table, "Fever" row: temperature >= 38 degC is required for any grade.
FEVER_THRESHOLD_C = 38.0  # ASTCT 2019 CRS consensus grading, fever row
# CRS table, hypoxia row: low-flow nasal cannula is <= 6 L/min, high-flow > 6 L/min.
LOW_FLOW_MAX_L_MIN = 6.0  # ASTCT 2019 CRS consensus grading, hypoxia row footnote
# CRS table, hypotension row: "several vasopressors (vasopressin not counted)".
SEVERAL_VASOPRESSORS_MIN = 2  # ASTCT 2019 CRS consensus grading, grade 4 hypotension
# CRS table, hypotension row: "one vasopressor with or without vasopressin".
ONE_VASOPRESSOR_MIN = 1  # ASTCT 2019 CRS consensus grading, grade 3 hypotension

# CRS grades contributed by each finding (ASTCT 2019 CRS consensus grading table).
CRS_GRADE_NONE = 0
CRS_GRADE_FEVER_ONLY = 1  # fever, no hypotension, no hypoxia
CRS_GRADE_HYPOTENSION_NO_PRESSOR = 2  # hypotension not requiring vasopressors
CRS_GRADE_ONE_VASOPRESSOR = 3  # one vasopressor with or without vasopressin
CRS_GRADE_SEVERAL_VASOPRESSORS = 4  # several vasopressors (vasopressin not counted)
CRS_GRADE_LOW_FLOW_O2 = 2  # low-flow nasal cannula (<= 6 L/min) or blow-by
CRS_GRADE_HIGH_FLOW_O2 = 3  # HFNC (> 6 L/min), face mask, non-rebreather, Venturi
CRS_GRADE_POSITIVE_PRESSURE = 4  # CPAP, BiPAP, intubation and mechanical ventilation

# ICE score (ASTCT 2019 consensus ICE score; PMC8153820): points per domain.
ICE_ORIENTATION_MAX = 4  # year, month, city, hospital: 1 point each
ICE_NAMING_MAX = 3  # names 3 objects: 1 point each
ICE_COMMANDS_MAX = 1  # follows simple commands
ICE_WRITING_MAX = 1  # writes a standard sentence
ICE_ATTENTION_MAX = 1  # counts backwards from 100 by 10
ICE_MAX = (
    ICE_ORIENTATION_MAX + ICE_NAMING_MAX + ICE_COMMANDS_MAX + ICE_WRITING_MAX + ICE_ATTENTION_MAX
)  # = 10, normal

# ICANS (adults) table, ICE-score row: lower bound of the ICE band for each grade.
ICE_GRADE1_MIN = 7  # ASTCT 2019 ICANS adult grading: ICE 7-9 -> grade 1
ICE_GRADE2_MIN = 3  # ASTCT 2019 ICANS adult grading: ICE 3-6 -> grade 2
ICE_GRADE3_MIN = 0  # ASTCT 2019 ICANS adult grading: ICE 0-2 -> grade 3
# Array encoding (not a literature value): any ICE score below ICE_GRADE3_MIN
# means "patient cannot be roused to perform ICE" -> grade 4.
ICE_UNROUSABLE = -1

ICANS_GRADE_NONE = 0
ICANS_GRADE_ICE_MILD = 1  # ICE 7-9
ICANS_GRADE_ICE_MODERATE = 2  # ICE 3-6
ICANS_GRADE_ICE_SEVERE = 3  # ICE 0-2 (also: awake, ICE 0 from global aphasia)
ICANS_GRADE_UNROUSABLE = 4  # ICE not performable, patient unrousable
ICANS_GRADE_MOTOR_WEAKNESS = 4  # deep focal motor weakness (hemi-/paraparesis)

# Sanity bounds for clinical temperature input, NOT part of ASTCT grading:
# they only catch unit errors (e.g. a value entered in degF).
PLAUSIBLE_TEMPERATURE_MIN_C = 25.0
PLAUSIBLE_TEMPERATURE_MAX_C = 45.0


# ---------------------------------------------------------------------------
# Enumerations
# ---------------------------------------------------------------------------


class OxygenSupport(enum.IntEnum):
    """Highest oxygen-delivery level needed (ASTCT 2019 CRS table, hypoxia row).

    Lee et al., Biol Blood Marrow Transplant 2019;25(4):625,
    doi:10.1016/j.bbmt.2018.12.758.  The value is an ordinal device code, not a
    CRS grade; the grade contributed is 0 / 2 / 3 / 4 respectively.
    """

    NONE = 0  #: room air, no supplemental oxygen
    LOW_FLOW = 1  #: low-flow nasal cannula (<= 6 L/min) or blow-by
    HIGH_FLOW = 2  #: HFNC (> 6 L/min), face mask, non-rebreather, Venturi mask
    POSITIVE_PRESSURE = 3  #: CPAP, BiPAP, intubation and mechanical ventilation


class Consciousness(enum.IntEnum):
    """Level of consciousness (ASTCT 2019 adult ICANS table).

    Lee et al., Biol Blood Marrow Transplant 2019;25(4):625,
    doi:10.1016/j.bbmt.2018.12.758.  Member values equal the ICANS grade that
    the finding contributes.  The depressed level must be attributable to no
    other cause (e.g. no sedating medication).  ``AWAKE`` (fully alert) is not
    in the table and contributes grade 0; ``WAKES_SPONTANEOUSLY`` is the
    table's grade-1 level (drowsy, but wakes without stimulus).
    """

    AWAKE = 0  #: fully alert, normal
    WAKES_SPONTANEOUSLY = 1  #: grade 1
    WAKES_TO_VOICE = 2  #: grade 2
    WAKES_TO_TOUCH = 3  #: grade 3, wakes only to tactile stimulus
    STUPOR_OR_COMA = 4  #: grade 4, unrousable or needs vigorous/repeated stimuli


class Seizure(enum.IntEnum):
    """Seizure finding (ASTCT 2019 adult ICANS table); value = ICANS grade.

    Lee et al., Biol Blood Marrow Transplant 2019;25(4):625,
    doi:10.1016/j.bbmt.2018.12.758.
    """

    NONE = 0
    #: any clinical seizure (focal or generalised) resolving rapidly, or
    #: non-convulsive seizures on EEG resolving with intervention (grade 3)
    RESOLVING = 3
    #: life-threatening prolonged seizure (> 5 min), or repetitive clinical or
    #: electrical seizures without return to baseline in between (grade 4)
    PROLONGED_OR_REPEATED = 4


class CerebralOedema(enum.IntEnum):
    """Raised ICP / cerebral oedema (ASTCT 2019 adult ICANS table); value = grade.

    Lee et al., Biol Blood Marrow Transplant 2019;25(4):625,
    doi:10.1016/j.bbmt.2018.12.758.  Intracranial haemorrhage, with or without
    oedema, is excluded from ICANS grading.
    """

    NONE = 0
    #: focal/local oedema on neuroimaging (grade 3)
    FOCAL = 3
    #: diffuse cerebral oedema on neuroimaging, decerebrate or decorticate
    #: posturing, cranial nerve VI palsy, papilloedema, or Cushing's triad (grade 4)
    DIFFUSE = 4


# ---------------------------------------------------------------------------
# Array namespace helpers
# ---------------------------------------------------------------------------


def _namespace(*arrays: Any):
    """Return ``jax.numpy`` if any input is a JAX array or tracer, else ``numpy``.

    JAX is only consulted when it has already been imported, so NumPy-only
    users never pay for (or need) a JAX import.
    """
    jax = sys.modules.get("jax")
    if jax is not None:
        for a in arrays:
            if isinstance(a, jax.Array):
                return jax.numpy
    return np


def _as_int(xp, x):
    """Cast ``x`` to the namespace's default integer dtype (strong type)."""
    if xp is np:
        return np.asarray(x, dtype=np.int64)
    import jax

    return xp.asarray(x, dtype=jax.dtypes.canonicalize_dtype(xp.int_))


# ---------------------------------------------------------------------------
# CRS
# ---------------------------------------------------------------------------


def crs_grade_array(
    temperature_c,
    n_vasopressors,
    oxygen_level,
    fever_waived,
    hypotension=False,
    vasopressin=False,
):
    """Elementwise ASTCT CRS grade (0-4) for NumPy or JAX arrays.

    Implements the ASTCT consensus CRS grading table of Lee et al., Biol Blood
    Marrow Transplant 2019;25(4):625, doi:10.1016/j.bbmt.2018.12.758:
    fever (>= :data:`FEVER_THRESHOLD_C`) is required for any grade; the grade
    is the more severe of the hypotension and hypoxia columns, and at least 1
    when fever is present.  Once antipyretics or anti-cytokine therapy were
    given (``fever_waived``), fever is no longer required and the grade rests
    on hypotension and hypoxia alone.

    Uses only elementwise operations (no validation, no Python branching on
    values), so it works under :func:`jax.jit` and :func:`jax.vmap`.  Inputs
    broadcast against each other.

    Args:
        temperature_c: body temperature in degC (NaN counts as afebrile).
        n_vasopressors: number of vasopressors needed, **not** counting
            vasopressin; >= :data:`SEVERAL_VASOPRESSORS_MIN` is grade 4.
        oxygen_level: :class:`OxygenSupport` code (0-3).
        fever_waived: bool, antipyretics or anti-cytokine drugs were given.
        hypotension: bool, hypotension present (needing a vasopressor implies
            hypotension, so this only matters without vasopressors).
        vasopressin: bool, vasopressin given; it counts as "one vasopressor"
            (grade 3) but never toward "several".

    Returns:
        Integer array of CRS grades (``numpy.int64`` for NumPy inputs, the
        default JAX integer dtype for JAX inputs).
    """
    xp = _namespace(temperature_c, n_vasopressors, oxygen_level, fever_waived, hypotension, vasopressin)
    temperature_c = xp.asarray(temperature_c)
    n_vasopressors = xp.asarray(n_vasopressors)
    oxygen_level = xp.asarray(oxygen_level)
    fever_waived = xp.asarray(fever_waived, dtype=bool)
    hypotension = xp.asarray(hypotension, dtype=bool)
    vasopressin = xp.asarray(vasopressin, dtype=bool)

    # Hypotension column.
    several = n_vasopressors >= SEVERAL_VASOPRESSORS_MIN
    any_pressor = xp.logical_or(n_vasopressors >= ONE_VASOPRESSOR_MIN, vasopressin)
    hypotension_grade = xp.where(
        several,
        CRS_GRADE_SEVERAL_VASOPRESSORS,
        xp.where(
            any_pressor,
            CRS_GRADE_ONE_VASOPRESSOR,
            xp.where(hypotension, CRS_GRADE_HYPOTENSION_NO_PRESSOR, CRS_GRADE_NONE),
        ),
    )

    # Hypoxia column.
    hypoxia_grade = xp.where(
        oxygen_level >= int(OxygenSupport.POSITIVE_PRESSURE),
        CRS_GRADE_POSITIVE_PRESSURE,
        xp.where(
            oxygen_level >= int(OxygenSupport.HIGH_FLOW),
            CRS_GRADE_HIGH_FLOW_O2,
            xp.where(oxygen_level >= int(OxygenSupport.LOW_FLOW), CRS_GRADE_LOW_FLOW_O2, CRS_GRADE_NONE),
        ),
    )

    sign_grade = xp.maximum(hypotension_grade, hypoxia_grade)
    fever = temperature_c >= FEVER_THRESHOLD_C
    grade = xp.where(
        fever,
        xp.maximum(sign_grade, CRS_GRADE_FEVER_ONLY),
        xp.where(fever_waived, sign_grade, CRS_GRADE_NONE),
    )
    return _as_int(xp, grade)


def crs_grade(
    temperature_c,
    vasopressors,
    oxygen,
    antipyretics_or_anticytokine_given=False,
    *,
    hypotension=False,
    vasopressin=False,
) -> int:
    """ASTCT consensus CRS grade (0-4) for one clinical observation.

    Source: Lee et al., Biol Blood Marrow Transplant 2019;25(4):625,
    doi:10.1016/j.bbmt.2018.12.758 (ASTCT CRS consensus grading).

    ========  =====================  ==================================  =============================
    Grade     Fever (>= 38 degC)     Hypotension                         Hypoxia
    ========  =====================  ==================================  =============================
    1         present                absent                              absent
    2         present                no vasopressor needed               low-flow NC (<= 6 L/min), blow-by
    3         present                one vasopressor +/- vasopressin     HFNC (> 6 L/min), face mask,
                                                                         non-rebreather, Venturi
    4         present                several (vasopressin not counted)   CPAP, BiPAP, intubation
    ========  =====================  ==================================  =============================

    The worse of hypotension and hypoxia sets the grade.  After antipyretics or
    anti-cytokine drugs (e.g. tocilizumab, steroids) fever is not required.
    Organ toxicities are graded separately (CTCAE) and do not change the grade.

    Args:
        temperature_c: highest temperature in degC.  ``None`` means not
            recorded and counts as afebrile (only useful together with the
            fever waiver).
        vasopressors: number of vasopressors needed, **excluding**
            vasopressin (non-negative integer).
        oxygen: :class:`OxygenSupport` member, its integer code 0-3, or a
            device name accepted by :func:`oxygen_support_from_device`.
        antipyretics_or_anticytokine_given: fever waiver (see above).
        hypotension: hypotension present.  Needing any vasopressor implies
            hypotension, so this matters only when no vasopressor is needed.
        vasopressin: vasopressin is given.  Alone it counts as one
            vasopressor (grade 3); it never counts toward "several".

    Returns:
        The CRS grade as a Python ``int``.

    Raises:
        ValueError / TypeError: for out-of-range or wrongly typed inputs.
    """
    if temperature_c is None:
        temp = math.nan
    else:
        temp = _real("temperature_c", temperature_c)
        if not PLAUSIBLE_TEMPERATURE_MIN_C <= temp <= PLAUSIBLE_TEMPERATURE_MAX_C:
            raise ValueError(
                f"temperature_c={temperature_c!r} is outside the plausible range "
                f"[{PLAUSIBLE_TEMPERATURE_MIN_C}, {PLAUSIBLE_TEMPERATURE_MAX_C}] degC "
                "(was it given in degF?)"
            )
    n = _int_in_range("vasopressors", vasopressors, 0, None)
    oxy = _coerce_oxygen(oxygen)
    waived = _flag("antipyretics_or_anticytokine_given", antipyretics_or_anticytokine_given)
    hypo = _flag("hypotension", hypotension)
    vaso = _flag("vasopressin", vasopressin)
    return int(crs_grade_array(temp, n, int(oxy), waived, hypo, vaso))


# ---------------------------------------------------------------------------
# Oxygen device mapping
# ---------------------------------------------------------------------------

_NASAL_CANNULA = "nasal cannula"

# Normalised device name -> oxygen level (ASTCT 2019 CRS table, hypoxia row).
_DEVICE_LEVELS: dict[str, OxygenSupport] = {
    "none": OxygenSupport.NONE,
    "room air": OxygenSupport.NONE,
    _NASAL_CANNULA: OxygenSupport.LOW_FLOW,
    "low flow nasal cannula": OxygenSupport.LOW_FLOW,
    "low flow": OxygenSupport.LOW_FLOW,
    "blow by": OxygenSupport.LOW_FLOW,
    "high flow nasal cannula": OxygenSupport.HIGH_FLOW,
    "hfnc": OxygenSupport.HIGH_FLOW,
    "high flow": OxygenSupport.HIGH_FLOW,
    "face mask": OxygenSupport.HIGH_FLOW,
    "facemask": OxygenSupport.HIGH_FLOW,
    "non rebreather": OxygenSupport.HIGH_FLOW,
    "non rebreather mask": OxygenSupport.HIGH_FLOW,
    "nonrebreather": OxygenSupport.HIGH_FLOW,
    "venturi": OxygenSupport.HIGH_FLOW,
    "venturi mask": OxygenSupport.HIGH_FLOW,
    "positive pressure": OxygenSupport.POSITIVE_PRESSURE,
    "cpap": OxygenSupport.POSITIVE_PRESSURE,
    "bipap": OxygenSupport.POSITIVE_PRESSURE,
    "mechanical ventilation": OxygenSupport.POSITIVE_PRESSURE,
    "intubation": OxygenSupport.POSITIVE_PRESSURE,
}
# Nasal-cannula devices: classified by flow when a flow is given.
_CANNULA_DEVICES = frozenset({_NASAL_CANNULA, "low flow nasal cannula", "high flow nasal cannula", "hfnc"})


def _normalise_name(text: str) -> str:
    return " ".join(text.strip().lower().replace("-", " ").replace("_", " ").split())


def oxygen_support_from_device(device: str, flow_l_min: float | None = None) -> OxygenSupport:
    """Map an oxygen-delivery device (and flow) to :class:`OxygenSupport`.

    Source: ASTCT CRS consensus grading, hypoxia row (Lee et al., Biol Blood
    Marrow Transplant 2019;25(4):625, doi:10.1016/j.bbmt.2018.12.758), where
    low-flow nasal cannula is defined as <= 6 L/min and high-flow nasal cannula
    as > 6 L/min (:data:`LOW_FLOW_MAX_L_MIN`).

    Matching is case-insensitive; hyphens, underscores and repeated spaces are
    treated as single spaces.  Accepted forms: ``none``, ``room air``,
    ``nasal cannula``, ``low-flow nasal cannula``, ``blow-by``,
    ``high-flow nasal cannula`` / ``hfnc``, ``face mask``, ``non-rebreather``
    (``mask``), ``venturi`` (``mask``), ``cpap``, ``bipap``,
    ``mechanical ventilation``, ``intubation``, and the enum names
    (``low flow``, ``high flow``, ``positive pressure``).

    For nasal cannulas the flow, when given, decides (the consensus defines
    low/high flow by the rate): > 6 L/min is ``HIGH_FLOW``, <= 6 L/min is
    ``LOW_FLOW``, whatever the label.  Without a flow, a plain
    ``nasal cannula`` is ``LOW_FLOW``.  For all other devices the flow is
    validated but does not change the level.

    Raises:
        ValueError: unknown device (the message names the value and lists the
            accepted forms) or a negative/non-finite flow.
        TypeError: ``device`` is not a string.
    """
    if isinstance(device, OxygenSupport):
        return device
    if not isinstance(device, str):
        raise TypeError(f"device must be a str, got {type(device).__name__} {device!r}")
    key = _normalise_name(device)
    if key not in _DEVICE_LEVELS:
        accepted = ", ".join(repr(k) for k in _DEVICE_LEVELS)
        raise ValueError(f"unknown oxygen device {device!r}; accepted forms (case-insensitive): {accepted}")
    level = _DEVICE_LEVELS[key]
    if flow_l_min is not None:
        flow = _real("flow_l_min", flow_l_min)
        if not (math.isfinite(flow) and flow >= 0.0):
            raise ValueError(f"flow_l_min={flow_l_min!r} must be a finite number >= 0 L/min")
        if key in _CANNULA_DEVICES:
            level = OxygenSupport.HIGH_FLOW if flow > LOW_FLOW_MAX_L_MIN else OxygenSupport.LOW_FLOW
    return level


# ---------------------------------------------------------------------------
# ICE score
# ---------------------------------------------------------------------------


def ice_score(
    orientation_correct: int,
    naming_correct: int,
    follows_commands: bool,
    writes_sentence: bool,
    attention_correct: bool,
) -> int:
    """Immune effector Cell-associated Encephalopathy (ICE) score, 0-10.

    Source: ASTCT consensus ICE score (Lee et al., Biol Blood Marrow
    Transplant 2019;25(4):625, doi:10.1016/j.bbmt.2018.12.758; PMC8153820).
    10 is normal.

    Args:
        orientation_correct: how many of year, month, city, hospital are
            stated correctly (0-4).
        naming_correct: how many of 3 objects are named (0-3).
        follows_commands: follows a simple command (1 point).
        writes_sentence: writes a standard sentence (1 point).
        attention_correct: counts backwards from 100 by 10 (1 point).

    Raises:
        ValueError: a count out of range or a flag that is not boolean/0/1
            (the message names the field, the value and the expected range).
        TypeError: a count that is not an integer.
    """
    total = (
        _int_in_range("orientation_correct", orientation_correct, 0, ICE_ORIENTATION_MAX)
        + _int_in_range("naming_correct", naming_correct, 0, ICE_NAMING_MAX)
        + ICE_COMMANDS_MAX * _flag("follows_commands", follows_commands)
        + ICE_WRITING_MAX * _flag("writes_sentence", writes_sentence)
        + ICE_ATTENTION_MAX * _flag("attention_correct", attention_correct)
    )
    return int(total)


# ---------------------------------------------------------------------------
# ICANS
# ---------------------------------------------------------------------------


def icans_grade_array(
    ice_score,
    consciousness_level,
    seizure_level,
    motor_weakness,
    oedema_level,
    global_aphasia_awake=False,
):
    """Elementwise ASTCT adult ICANS grade (0-4) for NumPy or JAX arrays.

    Implements the ASTCT adult ICANS consensus grading table of Lee et al.,
    Biol Blood Marrow Transplant 2019;25(4):625, doi:10.1016/j.bbmt.2018.12.758:
    the most severe domain sets the grade.

    * ICE score: 10 -> 0, 7-9 -> 1, 3-6 -> 2, 0-2 -> 3, negative
      (:data:`ICE_UNROUSABLE`, cannot be roused to perform ICE) -> 4.  With
      ``global_aphasia_awake`` (awake patient scoring ICE 0 because of global
      aphasia) the ICE domain is capped at grade 3.
    * consciousness, seizure, oedema: the :class:`Consciousness`,
      :class:`Seizure` and :class:`CerebralOedema` codes, whose values are the
      grades they contribute.
    * deep focal motor weakness -> 4.

    Uses only elementwise operations (no validation), so it works under
    :func:`jax.jit` and :func:`jax.vmap`; inputs broadcast.

    Returns:
        Integer array of ICANS grades.
    """
    xp = _namespace(
        ice_score, consciousness_level, seizure_level, motor_weakness, oedema_level, global_aphasia_awake
    )
    ice = xp.asarray(ice_score)
    consciousness_level = xp.asarray(consciousness_level)
    seizure_level = xp.asarray(seizure_level)
    motor_weakness = xp.asarray(motor_weakness, dtype=bool)
    oedema_level = xp.asarray(oedema_level)
    global_aphasia_awake = xp.asarray(global_aphasia_awake, dtype=bool)

    ice_grade = xp.where(
        ice < ICE_GRADE3_MIN,
        ICANS_GRADE_UNROUSABLE,
        xp.where(
            ice < ICE_GRADE2_MIN,
            ICANS_GRADE_ICE_SEVERE,
            xp.where(
                ice < ICE_GRADE1_MIN,
                ICANS_GRADE_ICE_MODERATE,
                xp.where(ice < ICE_MAX, ICANS_GRADE_ICE_MILD, ICANS_GRADE_NONE),
            ),
        ),
    )
    # Awake patient with ICE 0 from global aphasia: grade 3, not 4.
    ice_grade = xp.where(global_aphasia_awake, xp.minimum(ice_grade, ICANS_GRADE_ICE_SEVERE), ice_grade)

    motor_grade = xp.where(motor_weakness, ICANS_GRADE_MOTOR_WEAKNESS, ICANS_GRADE_NONE)
    grade = xp.maximum(
        xp.maximum(ice_grade, consciousness_level),
        xp.maximum(xp.maximum(seizure_level, oedema_level), motor_grade),
    )
    return _as_int(xp, grade)


def icans_grade(
    ice_score,
    consciousness=Consciousness.AWAKE,
    seizure=Seizure.NONE,
    motor_weakness=False,
    cerebral_oedema=CerebralOedema.NONE,
    global_aphasia_awake=False,
) -> int:
    """ASTCT adult ICANS grade (0-4) for one clinical observation.

    Source: Lee et al., Biol Blood Marrow Transplant 2019;25(4):625,
    doi:10.1016/j.bbmt.2018.12.758 (ASTCT ICANS consensus grading for adults;
    also PMC8403007, PMC7990806).

    =====  =========  ====================  ========================  ================  ==========================
    Grade  ICE        Consciousness         Seizure                   Motor             ICP / cerebral oedema
    =====  =========  ====================  ========================  ================  ==========================
    1      7-9        wakes spontaneously   --                        --                --
    2      3-6        wakes to voice        --                        --                --
    3      0-2        wakes only to touch   resolves rapidly / EEG    --                focal oedema
                                            resolves with treatment
    4      unrousable stupor or coma        prolonged (> 5 min) or    deep focal        diffuse oedema, posturing,
                                            repeated                  weakness          CN VI palsy, papilloedema,
                                                                                        Cushing's triad
    =====  =========  ====================  ========================  ================  ==========================

    The most severe domain sets the grade.  Tremor, myoclonus and intracranial
    haemorrhage are not part of ICANS grading.

    Args:
        ice_score: ICE score 0-10 (see :func:`ice_score`), or ``None`` if the
            patient cannot be roused to perform the ICE test (grade 4).
        consciousness: :class:`Consciousness` member, its value, or its name
            (case-insensitive, e.g. ``"wakes to voice"``).  ``AWAKE`` (fully
            alert) contributes 0; ``WAKES_SPONTANEOUSLY`` is the table's grade 1.
        seizure: :class:`Seizure` member, value (0, 3, 4) or name.
        motor_weakness: deep focal motor weakness (hemiparesis, paraparesis).
        cerebral_oedema: :class:`CerebralOedema` member, value (0, 3, 4) or
            name (``"none"``, ``"focal"``, ``"diffuse"``).
        global_aphasia_awake: the patient is awake but cannot perform the ICE
            test because of global aphasia; the ICE domain is then grade 3,
            not 4 (ASTCT footnote).  Inconsistent with
            ``Consciousness.STUPOR_OR_COMA`` (raises ValueError).

    Returns:
        The ICANS grade as a Python ``int``.
    """
    if ice_score is None:
        ice = ICE_UNROUSABLE
    else:
        ice = _int_in_range("ice_score", ice_score, 0, ICE_MAX)
    cons = _coerce_enum("consciousness", consciousness, Consciousness)
    seiz = _coerce_enum("seizure", seizure, Seizure)
    oed = _coerce_enum("cerebral_oedema", cerebral_oedema, CerebralOedema)
    motor = _flag("motor_weakness", motor_weakness)
    aphasia = _flag("global_aphasia_awake", global_aphasia_awake)
    if aphasia and cons is Consciousness.STUPOR_OR_COMA:
        raise ValueError(
            "global_aphasia_awake=True describes an awake patient, which contradicts "
            "consciousness=Consciousness.STUPOR_OR_COMA"
        )
    return int(icans_grade_array(ice, int(cons), int(seiz), motor, int(oed), aphasia))


# ---------------------------------------------------------------------------
# Input validation helpers (scalar layer only)
# ---------------------------------------------------------------------------


def _real(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def _int_in_range(name: str, value: Any, lo: int, hi: int | None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        expected = f"{lo}-{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name}={value!r} is out of range; expected {expected}")
    return v


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral) and int(value) in (0, 1):
        return bool(value)
    raise ValueError(f"{name}={value!r} is not a boolean; expected True/False (or 0/1)")


def _coerce_enum(name: str, value: Any, enum_cls: type[enum.IntEnum]) -> enum.IntEnum:
    if isinstance(value, enum_cls):
        return value
    accepted = ", ".join(f"{m.name.lower()} ({m.value})" for m in enum_cls)
    if isinstance(value, str):
        key = _normalise_name(value).replace(" ", "_").upper()
        if key in enum_cls.__members__:
            return enum_cls[key]
    elif isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        try:
            return enum_cls(int(value))
        except ValueError:
            pass
    raise ValueError(f"{name}={value!r} is not a valid {enum_cls.__name__}; accepted: {accepted}")


def _coerce_oxygen(value: Any) -> OxygenSupport:
    if isinstance(value, str):
        return oxygen_support_from_device(value)
    return _coerce_enum("oxygen", value, OxygenSupport)
