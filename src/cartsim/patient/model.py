"""The in-vivo CAR-T model: states, parameters and pure equations.

All cell populations are integrated as natural logarithms of whole-body cell numbers, so
they stay positive by construction and keep their relative accuracy across the ~25
decades a tumour can span (see docs/model.md, "Numerics"). Every function here is pure
and works on one patient; batching is done by ``jax.vmap`` in :mod:`cartsim.patient.solver`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from cartsim.toxicity.grading import ICE_MAX

#: State vector layout. Entries 0-6 are log cell numbers; 7-10 are linear. The indices
#: 7-9 have a positive source and first-order decay, so they stay positive on a linear
#: scale, where their stiffness is just their rate constant (as logarithms, an explicit
#: stage that undershoots makes (1 + drive)/A explode).
STATE_NAMES = (
    "effector",      # E: effector CAR-T cells (whole body)
    "memory",        # M: memory / stem-like CAR-T cells
    "exhausted",     # X: exhausted CAR-T cells
    "target_pos",    # Tp: antigen-positive malignant or autoreactive target cells
    "target_neg",    # Tn: antigen-negative escape clone
    "b_cells",       # B: normal CD19+ B cells
    "t_cells",       # N: endogenous (non-CAR) T cells
    "activation",    # A: myeloid activation index (1 = resting; linear); serum IL-6 = IL6_0 * A
    "neuro",         # Q: neuro-inflammation index (1 = resting; linear); drives ICANS
    "marker",        # P: serum marker relative to baseline (M-protein, autoantibody; linear)
    "stimulation",   # D: cumulative antigen stimulation of the CAR-T clone (days at full
                     #    stimulation); linear, not log: starts at 0 and only grows
)
N_STATES = len(STATE_NAMES)
IE, IM, IX, ITP, ITN, IB, IN, IA, IQ, IP, ID = range(N_STATES)


class Theta(NamedTuple):
    """Per-patient model parameters (all floats; each a scalar or a batch array)."""

    # CAR-T kinetics
    rho: float          # 1/day, maximal antigen-driven proliferation (costim, CD4 help applied)
    K_stim: float       # cells, antigen giving half-maximal stimulation
    compete: float      # CAR-T cells competing for antigen, per target-cell equivalent
    k_em: float         # 1/day, effector -> memory
    delta_e: float      # 1/day, effector death
    delta_m: float      # 1/day, memory decline
    k_react: float      # 1/day, memory -> effector on antigen
    k_exh: float        # 1/day, maximal exhaustion rate (per unit stimulation)
    D50_exh: float      # days of full stimulation giving half-maximal exhaustion
    h_exh: float        # Hill exponent of exhaustion in cumulative stimulation
    delta_x: float      # 1/day, exhausted-cell death
    # lymphodepletion / homeostatic space (Kimmel 2021)
    K_N: float
    r_N: float
    boost_a: float
    boost_b: float
    # killing (Kimmel 2021)
    gamma: float        # 1/day, CD8-adjusted
    k_half: float
    pot_m: float
    pot_x: float
    # targets
    r_T: float
    T_ext: float
    K_T: float          # cells, target carrying capacity (whole marrow, maximal tumour volume)
    stim_eff: float     # stimulation per target cell relative to marrow/blood disease
    target_b: float     # 1 if the product's antigen is on normal B cells (CD19), else 0
    b_prod: float       # cells/day, marrow output of normal B cells
    b_turn: float       # 1/day
    kill_b: float       # maximal kill rate of normal B cells relative to target cells
    T0: float           # cells, baseline target (marker normalisation)
    # cytokines and neurotoxicity
    act_k: float
    K_kill: float
    F_clear: float      # cells/day, kill flux cleared without inflammation (half-saturation)
    K_car: float
    il6_base: float
    neuro_k: float
    neuro_K_il6: float
    neuro_K_car: float
    neuro_mult: float   # costimulatory-domain multiplier on neuro-inflammatory drive
    # serum marker
    k_marker: float
    marker_spared: float
    # drugs
    toci_k: float
    toci_ec50: float
    dex_k: float
    dex_ec50: float
    dex_emax_exp: float
    dex_emax_act: float
    dex_emax_neuro: float


class Drugs(NamedTuple):
    """Drug exposure at the start of a one-day step (dose-equivalents) and that time."""

    toci: float
    dex: float
    t0: float


#: The equations below use only arithmetic and these three functions, looked up as module
#: globals, so the same source runs under JAX (here) and, rebound to ``math.exp``,
#: ``math.log`` and the builtin ``max``, compiled by numba in :mod:`cartsim.patient.fast_solver`: one copy of
#: the model, two engines.
exp = jnp.exp
log = jnp.log
maximum = jnp.maximum


def drug_effects(t, theta: Theta, drugs: Drugs):
    """Tocilizumab IL-6R blockade and steroid effect (both fractions in [0, 1)) at time t.

    Exposure decays first-order from the start of the day; effects are Emax-type.
    """
    dt = t - drugs.t0
    c_toci = drugs.toci * exp(-theta.toci_k * dt)
    c_dex = drugs.dex * exp(-theta.dex_k * dt)
    return c_toci / (c_toci + theta.toci_ec50), c_dex / (c_dex + theta.dex_ec50)


def lymphodepletion_boost(total_t, theta: Theta):
    """Extra CAR-T proliferation when T cells are depleted (Kimmel 2021, eq. for r_C)."""
    gap = total_t - theta.K_N
    boost = theta.boost_b * gap**2 / (theta.boost_a * total_t**2 + gap**2)
    return boost * (total_t < theta.K_N)


def derivatives(t, y, theta: Theta, drugs: Drugs):
    """d(state)/dt for one patient as a tuple (log states, plus the linear stimulation integral)."""
    E, M, X = exp(y[IE]), exp(y[IM]), exp(y[IX])
    Tp, Tn, B, N = exp(y[ITP]), exp(y[ITN]), exp(y[IB]), exp(y[IN])
    A, Q, P = y[IA], y[IQ], y[IP]
    # tocilizumab blocks IL-6 signalling (observations), not IL-6 production: only the
    # steroid effect enters the equations (as in drug_effects)
    c_dex = drugs.dex * exp(-theta.dex_k * (t - drugs.t0))
    steroid = c_dex / (c_dex + theta.dex_ec50)

    C = E + M + X
    stim_antigen = theta.stim_eff * Tp + theta.target_b * B
    # De Boer & Perelson (J Theor Biol 1995;175:567): CAR-T cells compete for antigen, so
    # stimulation per cell falls when they outnumber it. Without this term a persistent
    # antigen source (B cells produced by the marrow) could drive unbounded expansion.
    stim = stim_antigen / (stim_antigen + theta.K_stim + theta.compete * C)
    D = y[ID]
    dpos = maximum(D, 0.0)
    rh = (dpos / theta.D50_exh) ** theta.h_exh
    exh = theta.k_exh * stim * rh / (1 + rh)
    prolif = (theta.rho + lymphodepletion_boost(N + C, theta)) * stim * (1 - theta.dex_emax_exp * steroid)

    d_E = (prolif - theta.delta_e - theta.k_em - exh
           + theta.k_react * stim * M / E)
    d_M = theta.k_em * E / M - theta.delta_m  # reactivation is asymmetric: M kept
    d_X = exh * E / X - theta.delta_x

    killers = E + theta.pot_m * M + theta.pot_x * X
    kill = theta.gamma * killers / (theta.k_half + killers)  # per target cell, 1/day
    crowding = 1 - (Tp + Tn) / theta.K_T
    d_Tp = theta.r_T * Tp / (Tp + theta.T_ext) * crowding - kill
    d_Tn = theta.r_T * Tn / (Tn + theta.T_ext) * crowding
    kill_b = theta.target_b * theta.kill_b * kill  # B cells in blood and marrow: direct contact
    d_B = theta.b_prod / B - theta.b_turn - kill_b
    d_N = theta.r_N * log(theta.K_N / (N + C))

    kill_flux = kill * Tp + kill_b * B
    engaged = E * stim
    # Dead-cell debris activates macrophages only beyond what efferocytosis clears quietly:
    # the drive is quadratic at low kill flux and linear in a burst of killing.
    inflammatory_flux = kill_flux * kill_flux / (kill_flux + theta.F_clear)
    drive_a = (inflammatory_flux / theta.K_kill + engaged / theta.K_car) * (1 - theta.dex_emax_act * steroid)
    d_A = theta.act_k * (1 + drive_a - A)
    il6 = theta.il6_base * A
    drive_q = (theta.neuro_mult * (il6 / theta.neuro_K_il6 + engaged / theta.neuro_K_car)
               * (1 - theta.dex_emax_neuro * steroid))
    d_Q = theta.neuro_k * (1 + drive_q - Q)
    produced = (1 - theta.marker_spared) * (Tp + Tn) / theta.T0 + theta.marker_spared
    d_P = theta.k_marker * (produced - P)
    return (d_E, d_M, d_X, d_Tp, d_Tn, d_B, d_N, d_A, d_Q, d_P, stim)


def vector_field(t, y, args):
    """d(state)/dt for one patient as an array (diffrax term). ``args = (theta, drugs)``."""
    theta, drugs = args
    return jnp.stack(derivatives(t, y, theta, drugs))


class Obs(NamedTuple):
    """Per-patient constants that map states to clinical observations."""

    blood_frac_t: float     # share of T/CAR-T cells in blood
    blood_ul: float         # blood volume, uL
    blood_frac_b: float     # share of B cells in blood
    other_leuk: float       # cells/uL
    genomes_per_ug: float   # diploid genomes per ug DNA
    vcn: float              # transgene copies per CAR+ cell
    burden_scale: float     # target cells per burden unit (pct of marrow, mL, ...)
    burden_max: float       # upper bound of the burden unit (100 for pct)
    marker_base: float      # marker baseline in clinical units
    temp_base: float
    temp_rise: float
    il6_fever_half: float
    il6_g2: float
    il6_g3: float
    il6_g4: float
    ice_hill: float         # steepness of the ICE score's fall with neuro-inflammatory drive
    q_grade4: float


def observe(y, theta: Theta, obs: Obs, toci_block):
    """Clinical observations from one state vector (blood counts, IL-6, burden, marker)."""
    cells = jnp.exp(y[..., :IA])
    car = cells[..., IE] + cells[..., IM] + cells[..., IX]
    car_ul = car * obs.blood_frac_t / obs.blood_ul
    t_ul = cells[..., IN] * obs.blood_frac_t / obs.blood_ul
    b_ul = cells[..., IB] * obs.blood_frac_b / obs.blood_ul
    leuk = obs.other_leuk + car_ul + t_ul + b_ul
    copies = car_ul * obs.vcn / leuk * obs.genomes_per_ug
    target = cells[..., ITP] + cells[..., ITN]
    burden = jnp.minimum(target / obs.burden_scale, obs.burden_max)
    il6 = theta.il6_base * y[..., IA]
    return {
        "car_t_cells_per_ul": car_ul,
        "car_t_copies_per_ug": copies,
        "car_t_total_cells": car,
        "effector_cells": cells[..., IE],
        "memory_cells": cells[..., IM],
        "exhausted_cells": cells[..., IX],
        "target_cells": target,
        "target_antigen_neg_cells": cells[..., ITN],
        "tumour_burden": burden,
        "b_cells_per_ul": b_ul,
        "t_cells_per_ul": t_ul,
        "il6_pg_per_ml": il6,
        "il6_effective_pg_per_ml": il6 * (1 - toci_block),
        "neuro_index": y[..., IQ],
        "marker": obs.marker_base * y[..., IP],
    }


def clinical_signs(il6_effective, neuro_index, obs: Obs):
    """Surrogate bedside observations used for ASTCT grading.

    Temperature rises with effective IL-6 signalling; hypotension (and vasopressor need)
    and hypoxia (oxygen support) appear above calibrated IL-6 thresholds. The ICE score
    falls sigmoidally with the neuro-inflammatory drive above rest, Q - 1: one unit of drive
    halves it and ``ice_hill`` sets how steeply it falls (ICANS is close to all-or-none: a
    patient whose ICE score starts to fall often reaches grade 3). Above ``q_grade4`` the
    patient cannot be roused (ICE -1, i.e. grade 4).
    """
    s = il6_effective
    temperature = obs.temp_base + obs.temp_rise * s / (s + obs.il6_fever_half)
    hypotension = s >= obs.il6_g2
    n_pressors = (s >= obs.il6_g3).astype(jnp.int32) + (s >= obs.il6_g4).astype(jnp.int32)
    oxygen = hypotension.astype(jnp.int32) + n_pressors
    drive = jnp.maximum(neuro_index - 1.0, 0.0)
    ice = jnp.round(ICE_MAX / (1.0 + drive**obs.ice_hill))
    ice = jnp.where(neuro_index >= obs.q_grade4, -1, ice).astype(jnp.int32)
    return temperature, hypotension, n_pressors, oxygen, ice


def neuro_index_at_ice(ice: float, ice_hill: float) -> float:
    """The neuro-inflammation index at which the continuous ICE score of
    :func:`clinical_signs` equals ``ice`` (0 < ice < ICE_MAX): the inverse of its sigmoid."""
    return 1.0 + (ICE_MAX / ice - 1.0) ** (1.0 / ice_hill)
