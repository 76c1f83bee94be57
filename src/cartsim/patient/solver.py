"""Batched solver: many patients, one compiled call, with the daily grade-and-treat loop.

Each patient is integrated one day at a time (diffrax Tsit5, adaptive) inside a
``lax.scan`` over the management window; at the end of each day the ASTCT grades are
computed from the model's surrogate clinical signs and the management policy decides the
next doses. The rest of follow-up is one solve, saved and graded daily. The whole
thing is ``vmap``-ed over patients and ``jit``-compiled once per horizon.

Explicit Tsit5 is appropriate because the cell states are logarithms (no positivity
problem) and IL-6, whose 20-minute half-life would make the system stiff, is taken at
quasi-steady state (docs/model.md).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import diffrax
import jax
import jax.numpy as jnp

from cartsim.patient.interventions import PolicyArrays, apply_policy
from cartsim.patient.model import Drugs, Obs, Theta, clinical_signs, observe, vector_field
from cartsim.toxicity import crs_grade_array, icans_grade_array

RTOL = 1e-5  # relative tolerance on log states (i.e. absolute in ln-units); 1e-4 decades vs rtol 1e-10 (tests/patient/test_model.py)
ATOL = 1e-9
DT_MIN_START = 0.05  # days: first trial step on day 0 (and the smallest carried-over start)
MAX_STEPS_PER_DAY = 512  # typical days need 2-20 steps; a patient past this is flagged

#: Days on which the management policy may act. Afterwards the model is integrated in one
#: solve and still graded daily, but no new doses are decided: new-onset CRS after day 14
#: was seen in 0% and ICANS in 0.7% of 475 patients (Blood Adv 2024;8(20):5346,
#: shared/reference/toxicity_grading.md section 6.1), and patients are monitored for
#: 4 weeks (US REMS). 42 days leaves room for CRS that started late to resolve.
MANAGEMENT_WINDOW_DAYS = 42


class DailyOutput(NamedTuple):
    """Arrays of shape [batch, days + 1, ...]; index 0 is the day of infusion."""

    y: jnp.ndarray            # log states
    crs: jnp.ndarray          # ASTCT CRS grade
    icans: jnp.ndarray        # ASTCT ICANS grade
    toci: jnp.ndarray         # tocilizumab doses given that day
    dex: jnp.ndarray          # dexamethasone doses given that day
    toci_block: jnp.ndarray   # fraction of IL-6 signalling blocked at end of day
    ok: jnp.ndarray           # [batch] bool: solve succeeded and stayed finite


def _grade(y, theta: Theta, obs: Obs, toci_block, waived):
    o = observe(y, theta, obs, toci_block)
    temp, hypo, n_press, oxygen, ice = clinical_signs(o["il6_effective_pg_per_ml"], o["neuro_index"], obs)
    crs = crs_grade_array(temp, n_press, oxygen, waived, hypo)
    icans = icans_grade_array(ice, 0, 0, False, 0)
    return crs.astype(jnp.int32), icans.astype(jnp.int32)


def end_of_day(theta: Theta, obs: Obs, policy: PolicyArrays, y1, exposure, counts, waived):
    """Grade the day that just ended and decide the next doses (one patient).

    ``exposure`` is the drug exposure at the start of the day; it decays over the day,
    then the doses the policy gives are added. Returns ``(crs, icans, toci_block, counts,
    exposure, doses_given[2], fever_waived)``.
    """
    decay = jnp.exp(-jnp.stack([theta.toci_k, theta.dex_k]))
    exposure = exposure * decay
    block = exposure[0] / (exposure[0] + theta.toci_ec50)
    crs, icans = _grade(y1, theta, obs, block, waived)
    counts, exposure, given = apply_policy(policy, crs, icans, counts, exposure)
    waived = waived | jnp.any(given > 0)
    return crs, icans, block, counts, exposure, given, waived


def _one_patient(theta: Theta, obs: Obs, y0, policy: PolicyArrays, n_days: int,
                 rtol: float = RTOL, atol: float = ATOL):
    term = diffrax.ODETerm(vector_field)
    solver = diffrax.Tsit5()
    ctrl = diffrax.PIDController(rtol=rtol, atol=atol)

    def step(carry, day):
        y, exposure, counts, waived, ok, dt0 = carry
        t0 = day.astype(jnp.float64)
        sol = diffrax.diffeqsolve(
            term, solver, t0, t0 + 1.0, dt0=dt0, y0=y,
            args=(theta, Drugs(exposure[0], exposure[1], t0)),
            stepsize_controller=ctrl, saveat=diffrax.SaveAt(t1=True),
            max_steps=MAX_STEPS_PER_DAY, throw=False,
        )
        y1 = sol.ys[-1]
        good = (sol.result == diffrax.RESULTS.successful) & jnp.all(jnp.isfinite(y1))
        y1 = jnp.where(good, y1, y)  # keep the last good state; the patient is flagged
        crs, icans, block, counts, exposure, given, waived = end_of_day(
            theta, obs, policy, y1, exposure, counts, waived)
        # Start the next day at yesterday's mean accepted step rather than from scratch:
        # saves the controller's ramp-up at every daily restart.
        n_acc = jnp.maximum(sol.stats["num_accepted_steps"], 1)
        dt_next = jnp.clip(1.0 / n_acc, DT_MIN_START, 1.0)
        carry = (y1, exposure, counts, waived, ok & good, dt_next)
        return carry, (y1, crs, icans, given[0], given[1], block)

    window = min(n_days, MANAGEMENT_WINDOW_DAYS)
    init = (y0, jnp.zeros(2), jnp.zeros_like(policy.max_doses), jnp.asarray(False), jnp.asarray(True),
            jnp.asarray(DT_MIN_START))
    (y_w, exposure, _, waived, ok, _), (ys, crs, icans, toci, dex, block) = jax.lax.scan(
        step, init, jnp.arange(window))
    if n_days > window:
        ys, crs, icans, toci, dex, block, ok = _after_window(
            theta, obs, term, solver, ctrl, y_w, exposure, waived, ok, window, n_days,
            (ys, crs, icans, toci, dex, block))
    zero_i = jnp.zeros((1,), jnp.int32)
    crs0, icans0 = _grade(y0, theta, obs, 0.0, False)
    return DailyOutput(
        y=jnp.concatenate([y0[None], ys]),
        crs=jnp.concatenate([crs0[None], crs]),
        icans=jnp.concatenate([icans0[None], icans]),
        toci=jnp.concatenate([zero_i, toci]),
        dex=jnp.concatenate([zero_i, dex]),
        toci_block=jnp.concatenate([jnp.zeros(1), block]),
        ok=ok,
    )


def _after_window(theta, obs, term, solver, ctrl, y_w, exposure, waived, ok, window, n_days, daily):
    """One solve from the end of the management window to the end, saved and graded daily."""
    t0 = float(window)
    ts = jnp.arange(window + 1, n_days + 1, dtype=jnp.float64)
    sol = diffrax.diffeqsolve(
        term, solver, t0, float(n_days), dt0=0.05, y0=y_w,
        args=(theta, Drugs(exposure[0], exposure[1], t0)),
        stepsize_controller=ctrl, saveat=diffrax.SaveAt(ts=ts),
        max_steps=MAX_STEPS_PER_DAY * (n_days - window), throw=False,
    )
    good = (sol.result == diffrax.RESULTS.successful) & jnp.all(jnp.isfinite(sol.ys))
    y_late = jnp.where(good, sol.ys, y_w[None])
    toci_late = exposure[0] * jnp.exp(-theta.toci_k * (ts - t0))
    block_late = toci_late / (toci_late + theta.toci_ec50)
    crs_late, icans_late = jax.vmap(lambda y, b: _grade(y, theta, obs, b, waived))(y_late, block_late)
    zeros = jnp.zeros(ts.shape, jnp.int32)
    ys, crs, icans, toci, dex, block = daily
    return (jnp.concatenate([ys, y_late]), jnp.concatenate([crs, crs_late]),
            jnp.concatenate([icans, icans_late]), jnp.concatenate([toci, zeros]),
            jnp.concatenate([dex, zeros]), jnp.concatenate([block, block_late]), ok & good)


@functools.partial(jax.jit, static_argnames=("n_days", "rtol", "atol"))
def solve_batch(theta: Theta, obs: Obs, y0, policy: PolicyArrays, n_days: int,
                rtol: float = RTOL, atol: float = ATOL) -> DailyOutput:
    """Solve a batch of patients (leading axis of every ``theta``/``obs``/``y0`` leaf)."""
    return jax.vmap(_one_patient, in_axes=(0, 0, 0, None, None, None, None))(
        theta, obs, y0, policy, n_days, rtol, atol)
