"""Population engine: the same model and daily loop as :mod:`cartsim.patient.solver`,
integrated patient by patient in machine code (numba), for virtual trials.

Why a hand-written integrator: ``jax.vmap`` over ``diffrax.diffeqsolve`` advances all the
patients of a batch in lockstep (each loop iteration waits for the patient needing the
most steps; measured 1.5-3x wasted work on trial populations) and pays diffrax's
per-step bookkeeping on every patient; on this model that came to ~2.7 ms per patient,
20x over the issue's budget for 1e5 patients. No maintained library offers an adaptive
Runge-Kutta solver callable from compiled code with a user-supplied right-hand side and
per-patient event handling at that speed, so the ~60 lines of the step loop are written
here. Everything else is shared with the JAX engine, not copied:

- the equations are :func:`cartsim.patient.model.derivatives`, compiled by numba with
  ``exp``/``log``/``maximum`` rebound to their scalar versions;
- the Butcher tableau is diffrax's own ``Tsit5.tableau``; the step-size rule is the
  diffrax ``PIDController`` default (integral control, safety 0.9, factor in [0.2, 10]) on
  the same RMS error norm, with the same ``RTOL``/``ATOL``;
- grading and the management policy are :func:`cartsim.patient.solver.end_of_day`,
  ``vmap``-ed and ``jit``-compiled once over the batch, between days.

Daily values after the management window come from the cubic Hermite interpolant of each
step (value and derivative at both ends, the latter free with Tsit5's FSAL stage); the
agreement with an rtol 1e-10 diffrax solution is tested (tests/patient/test_fast_solver.py).
Each patient is integrated on its own, so a patient's result does not depend on which
other patients share its batch. The kernel releases the GIL: batches run on all cores
from a thread pool.
"""

from __future__ import annotations

import functools
import hashlib
import math
import types
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import numba
import numpy as np

from cartsim.patient import model as _model
from cartsim.patient.interventions import PolicyArrays
from cartsim.patient.model import N_STATES, Drugs, Obs, Theta
from cartsim.patient.solver import (
    ATOL, DT_MIN_START, MANAGEMENT_WINDOW_DAYS, MAX_STEPS_PER_DAY, RTOL, DailyOutput, _grade, end_of_day,
)


def _cache_ok() -> bool:
    """Whether the compiled kernel may be cached on disk (saves ~10 s per process).

    numba re-validates a cached function against its own file only; the kernel also
    inlines the equations of model.py. A stamp of both files' contents next to the cache
    drops a cache compiled from other equations.
    """
    here = Path(__file__)
    cache = here.parent / "__pycache__"
    digest = hashlib.sha256(here.read_bytes() + Path(_model.__file__).read_bytes()).hexdigest()
    stamp = cache / "fast_solver.model.sha256"
    try:
        cache.mkdir(exist_ok=True)
        if not stamp.exists() or stamp.read_text() != digest:
            for f in cache.glob("fast_solver._solve_days-*.nb[ci]"):
                f.unlink()
            stamp.write_text(digest)
        return True
    except OSError:  # read-only install: compile in memory every time
        return False


def _rebind(fn, **names):
    """``fn`` with some of its globals replaced (same code object, same equations)."""
    return types.FunctionType(fn.__code__, {**fn.__globals__, **names}, fn.__name__, fn.__defaults__)


_FAST = {"contract", "reassoc", "arcp", "nsz"}  # no "nnan"/"ninf": NaN checks must stay
_jit = functools.partial(numba.njit, cache=False, fastmath=_FAST, error_model="numpy")
_scalar = {"exp": math.exp, "log": math.log, "maximum": max}
_boost = _jit(_rebind(_model.lymphodepletion_boost, **_scalar))
_derivatives = _jit(_rebind(_model.derivatives, **_scalar, lymphodepletion_boost=_boost))

# Theta from one row of a [patients, fields] matrix (generated: numba has no *-unpacking).
_ns: dict = {"Theta": Theta}
exec("def _theta_row(P, i):\n    return Theta("
     + ", ".join(f"P[i, {k}]" for k in range(len(Theta._fields))) + ")", _ns)
_theta_row = _jit(_ns["_theta_row"])

_tab = diffrax.Tsit5.tableau
_S = len(_tab.b_sol)                                   # 7 stages (the last is FSAL)
_A = np.zeros((_S, _S))
for _i, _row in enumerate(_tab.a_lower):
    _A[_i + 1, : len(_row)] = _row
_B = np.asarray(_tab.b_sol, dtype=np.float64)
_E = np.asarray(_tab.b_error, dtype=np.float64)
_C = np.concatenate([[0.0], np.asarray(_tab.c, dtype=np.float64)])
assert np.allclose(_A[-1], _B) and _C[-1] == 1.0  # FSAL: the last stage is f(t + h, y1)
_SAFETY, _FACTOR_MIN, _FACTOR_MAX, _EXPONENT = 0.9, 0.2, 10.0, 1.0 / 5.0
_BETA1, _BETA2 = 0.7 / 5.0, 0.4 / 5.0  # PI control (Hairer & Wanner II, IV.2)


# out[j] = d[j], unrolled (generated): a loop would index the tuple dynamically.
exec("def _rhs(t, y, th, toci, dex, t0, out):\n    d = _derivatives(t, y, th, Drugs(toci, dex, t0))\n"
     + "".join(f"    out[{j}] = d[{j}]\n" for j in range(N_STATES)), _ns)
_ns.update(_derivatives=_derivatives, Drugs=Drugs)
_rhs = _jit(_ns["_rhs"])


def _lincomb(coefs, j) -> str:
    """``c0 * k[0, j] + c1 * k[1, j] + ...`` with the tableau's numbers as literals (zeros dropped)."""
    return " + ".join(f"{float(c)!r} * k[{q}, {j}]" for q, c in enumerate(coefs) if c != 0.0) or "0.0"


# The Runge-Kutta stages and the error estimate as straight-line code (generated), the
# tableau's numbers as literals and every state written out: no loop, so no vectorised
# loop whose peeling (and rounding) would depend on the buffers' alignment, and a patient's
# result stays independent of its batch. ~7% faster than the loops over the tableau.
_src = "def _stages(t, h, y, ys, k, th, toci, dex, t0):\n"
for _s in range(1, _S):
    _src += "".join(f"    ys[{j}] = y[{j}] + h * ({_lincomb(_A[_s, :_s], j)})\n" for j in range(N_STATES))
    _src += f"    _rhs(t + {float(_C[_s])!r} * h, ys, th, toci, dex, t0, k[{_s}])\n"
exec(_src, _ns)
exec("def _err_comb(k, j):\n    return " + _lincomb(_E, "j") + "\n", _ns)
_ns.update(_rhs=_rhs)
_stages = _jit(_ns["_stages"])
_err_comb = _jit(_ns["_err_comb"])


# One explicit signature, so one machine-code version of the kernel, whatever the
# layouts of the arrays a call passes (``out`` is a strided view of the daily states; for
# a batch of one it is also contiguous). With lazily compiled versions, numba compiled one
# per layout, and the one compiled first in a process (or loaded from the disk cache)
# rounded differently from one compiled later: a patient's result changed in its last
# digits with its batch and with the history of the cache (seen as a rare failure of
# tests/patient/test_fast_solver.py::test_a_patient_does_not_depend_on_its_batch).
_KERNEL_SIGNATURE = ("void(float64[:, ::1], float64[:, ::1], float64[::1], float64[::1], float64, int64, "
                     "float64[::1], boolean[::1], float64, float64, int64, float64[:, :, :], int64[:, ::1])")


@numba.njit(_KERNEL_SIGNATURE, nogil=True, cache=_cache_ok(), fastmath=_FAST, error_model="numpy")
def _solve_days(P, Y, toci, dex, t0, n_days, dt, ok, rtol, atol, max_steps, out, stats):
    """Integrate every patient of the batch from ``t0`` over ``n_days`` days.

    ``Y`` (start states) and ``dt`` (next trial step) are updated in place; the state at
    the end of each day goes to ``out[i, d]``. A patient whose step count passes
    ``max_steps`` per day, whose step size collapses or whose state stops being finite is
    flagged in ``ok`` and kept at its last good state. ``stats[i]`` counts accepted and
    rejected steps.
    """
    n, m = Y.shape[0], N_STATES  # m a compile-time constant: the state loops unroll
    k = np.empty((_S, m))
    ys = np.empty(m)
    y1 = np.empty(m)
    t_end = t0 + n_days
    for i in range(n):
        y = Y[i].copy()
        if not ok[i]:
            for d in range(n_days):
                out[i, d] = y
            continue
        th = _theta_row(P, i)
        t, h, d, steps = t0, dt[i], 0, 0
        err_prev = 1.0
        _rhs(t, y, th, toci[i], dex[i], t0, k[0])
        while d < n_days:
            steps += 1
            if steps > max_steps * n_days or h < 1e-12:
                break
            h_try = min(h, t_end - t)
            _stages(t, h_try, y, ys, k, th, toci[i], dex[i], t0)
            for j in range(m):
                y1[j] = ys[j]  # the FSAL stage's input is the new solution
            err2 = 0.0
            for j in range(m):
                sc = atol + rtol * max(abs(y[j]), abs(y1[j]))
                err2 += (h_try * _err_comb(k, j) / sc) ** 2
            err = math.sqrt(err2 / m)
            if err <= 1.0:  # accept (NaN fails the test and is rejected)
                stats[i, 0] += 1
                t_new = t + h_try
                while d < n_days and t0 + d + 1 <= t_new + 1e-9 * (1.0 + abs(t_new)):
                    s_ = (t0 + d + 1 - t) / h_try  # cubic Hermite between the step's ends
                    h00 = (1 + 2 * s_) * (1 - s_) ** 2
                    h10 = s_ * (1 - s_) ** 2
                    h01 = s_ * s_ * (3 - 2 * s_)
                    h11 = s_ * s_ * (s_ - 1)
                    for j in range(m):
                        out[i, d, j] = h00 * y[j] + h10 * h_try * k[0, j] + h01 * y1[j] + h11 * h_try * k[_S - 1, j]
                    d += 1
                t = t_new
                for j in range(m):
                    y[j] = y1[j]
                    k[0, j] = k[_S - 1, j]
                err = max(err, 1e-10)
                factor = min(_FACTOR_MAX, max(1.0, _SAFETY * err ** -_BETA1 * err_prev ** _BETA2))
                err_prev = max(err, 1e-4)
                # a step shortened to land on the end does not shrink the proposed size
                h = max(h, h_try * factor) if h_try < h else h_try * factor
            else:
                stats[i, 1] += 1
                factor = _FACTOR_MIN if not err == err else min(_SAFETY, max(_FACTOR_MIN, _SAFETY * err ** -_EXPONENT))
                h = h_try * factor
        finite = True
        for j in range(m):
            if not math.isfinite(y[j]):
                finite = False
        if d < n_days or not finite:
            ok[i] = False
            last = Y[i] if d == 0 else out[i, d - 1]
            for dd in range(d, n_days):
                out[i, dd] = last
            Y[i] = last
        else:
            Y[i] = y
        dt[i] = h


def theta_matrix(theta) -> np.ndarray:
    """Stack a batch Theta or Obs (fields of shape [n]) into a C-contiguous [n, fields] matrix."""
    return np.ascontiguousarray(np.stack([np.asarray(f, dtype=np.float64) for f in theta], axis=1))


# Theta and Obs travel into the compiled grading as two matrices (one argument each, not
# 64): argument handling dominated the per-day cost.
def _unpack(P, O):
    return Theta(*(P[:, k] for k in range(P.shape[1]))), Obs(*(O[:, k] for k in range(O.shape[1])))


@jax.jit
def _end_of_day_batch(P, O, policy, y1, exposure, counts, waived):
    theta, obs = _unpack(P, O)
    return jax.vmap(end_of_day, in_axes=(0, 0, None, 0, 0, 0, 0))(theta, obs, policy, y1, exposure, counts, waived)


@functools.partial(jax.jit, static_argnames=("start",))
def _grade_days(P, O, ys, block, waived, start: int):
    """Grades of days ``start..`` of the daily states ``ys`` [n, days, states]."""
    theta, obs = _unpack(P, O)
    return jax.vmap(jax.vmap(_grade, in_axes=(0, None, None, 0, None)), in_axes=(0, 0, 0, 0, 0))(
        ys[:, start:], theta, obs, block[:, start:], waived)


def solve_batch_fast(theta: Theta, obs: Obs, y0, policy: PolicyArrays, n_days: int,
                     rtol: float = RTOL, atol: float = ATOL, n_active: int | None = None,
                     step_counts: np.ndarray | None = None) -> DailyOutput:
    """Same contract as :func:`cartsim.patient.solver.solve_batch`, NumPy arrays out.

    Only the first ``n_active`` patients are integrated (default: all); the rest are
    padding that keeps the batch shape fixed, returned at their initial state and not ok.
    ``step_counts`` (int64 [n, 2]), if given, receives each patient's accepted and
    rejected steps (diagnostics).
    """
    P = theta_matrix(theta)
    Y = np.array(y0, dtype=np.float64, order="C")
    n = Y.shape[0]
    Pj, Oj = jnp.asarray(P), jnp.asarray(theta_matrix(obs))
    dt = np.full(n, DT_MIN_START)
    ok = np.ones(n, dtype=np.bool_)
    if n_active is not None:
        ok[n_active:] = False
    stats = np.zeros((n, 2), np.int64) if step_counts is None else step_counts
    exposure = jnp.zeros((n, 2))
    counts = jnp.zeros((n,) + policy.max_doses.shape, policy.max_doses.dtype)
    waived = jnp.zeros(n, dtype=bool)
    window = min(n_days, MANAGEMENT_WINDOW_DAYS)

    ys = np.empty((n, n_days + 1, N_STATES))
    ys[:, 0] = Y
    crs = np.zeros((n, n_days + 1), np.int32)
    icans = np.zeros((n, n_days + 1), np.int32)
    toci = np.zeros((n, n_days + 1), np.int32)
    dex = np.zeros((n, n_days + 1), np.int32)
    block = np.zeros((n, n_days + 1))
    c, i_ = _grade_days(Pj, Oj, jnp.asarray(Y[:, None]), jnp.zeros((n, 1)), waived, 0)
    crs[:, 0], icans[:, 0] = np.asarray(c)[:, 0], np.asarray(i_)[:, 0]

    for day in range(window):
        e = np.array(exposure)  # writable: the kernel signature takes writable arrays
        _solve_days(P, Y, np.ascontiguousarray(e[:, 0]), np.ascontiguousarray(e[:, 1]), float(day), 1, dt, ok,
                    rtol, atol, MAX_STEPS_PER_DAY, ys[:, day + 1 : day + 2], stats)
        c, i_, b, counts, exposure, given, waived = _end_of_day_batch(
            Pj, Oj, policy, jax.device_put(Y), exposure, counts, waived)
        crs[:, day + 1], icans[:, day + 1], block[:, day + 1] = np.asarray(c), np.asarray(i_), np.asarray(b)
        g = np.asarray(given)
        toci[:, day + 1], dex[:, day + 1] = g[:, 0], g[:, 1]

    if n_days > window:
        e = np.array(exposure)  # writable: the kernel signature takes writable arrays
        late = n_days - window
        _solve_days(P, Y, np.ascontiguousarray(e[:, 0]), np.ascontiguousarray(e[:, 1]), float(window), late, dt,
                    ok, rtol, atol, MAX_STEPS_PER_DAY, ys[:, window + 1 :], stats)
        tt = np.arange(1, late + 1, dtype=np.float64)
        toci_late = e[:, :1] * np.exp(-np.asarray(theta.toci_k, dtype=np.float64)[:, None] * tt)
        b_late = toci_late / (toci_late + np.asarray(theta.toci_ec50, dtype=np.float64)[:, None])
        block[:, window + 1 :] = b_late
        c, i_ = _grade_days(Pj, Oj, jax.device_put(ys), jax.device_put(block), waived, window + 1)
        crs[:, window + 1 :], icans[:, window + 1 :] = np.asarray(c), np.asarray(i_)
    return DailyOutput(y=ys, crs=crs, icans=icans, toci=toci, dex=dex, toci_block=block, ok=ok)
