"""Fused float32 Numba kernels for the BayesBiNN step: the fast twins of ``_bayesbinn_math.py``.

Every kernel computes, in one parallel pass over memory, what the NumPy
functions in ``refbinn/optim/_bayesbinn_math.py`` compute in several passes; those are
the reference, and the tests bound the difference by the kernels' ulp errors
(bit-identical where no transcendental enters). Only float32 is covered (the
training dtype); other dtypes use the reference.

Per element, the fused S = 1 step (``step_exact`` / ``step_official``) reads
lam, u, g (m only when beta > 0, lam0 only when it is an array) and writes lam, m, mu:

    delta = 0.5*log(u/(1-u));  z = (lam + delta)/tau
    exact:    s = exp(min(log(N/tau) + 2*(|lam| - |z|), cap)) * ((1 + e^{-2|lam|})/(1 + e^{-2|z|}))**2
              (N/tau*exp(2*(logcosh(lam) - logcosh(z))) with exps only; cap keeps s finite)
    official: s = (1 - w_r**2 + 1e-10)/tau/(1 - mu**2 + 1e-10), w_r = tanh(z); g_hat = N*s*g
    m'   = beta*m + (1-beta)*(g_hat + reweight*(lam - lam0))
    lam' = lam - lr*m'/(1 - beta**t)
    mu'  = tanh(lam') (exact) or tanh(lam) (official: the authors' one-step lag)

and returns the number of non-finite lam' (a NaN/inf gradient always makes lam'
non-finite), so the caller can raise before anything is stored.

Work is split into blocks of BLOCK elements. A block where a cheap bound shows
that every s underflows to 0 (exact) or every w_r rounds to +-1 (official), or
that every |mu'| rounds to 1, skips those transcendentals; the result is the
same number, bit for bit. This is the common case at the paper's tau = 1e-10.

The float32 exp/log/tanh these kernels use, and why they are hand-written, are in
``_float32.py``. Kernel names follow the equations of ``_bayesbinn_math.py``:

    ============================  =========================================
    NumPy reference               float32 twin here
    ============================  =========================================
    ``logistic_noise``            ``logistic_noise32``
    ``relaxed_sample``            ``relaxed_sample_fused`` (``relaxed_sample_kernel``)
    ``concrete_scale`` exact      ``concrete_scale_exact32``
    ``concrete_scale`` official   ``concrete_scale_official32`` (without N)
    ``natural_update``            ``natural_update32``
    ``step_numpy``                ``step_fused`` (``step_exact_kernel``, ``step_official_kernel``,
                                  ``accumulate_*_kernel``, ``finish_step_kernel``)
    ============================  =========================================
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from ._bayesbinn_math import OFFICIAL
from ._float32 import (EXP_OVER, HALF, INF, ONE, TINY, TWO, ZERO, bits_of, exp32, f32, i32, i64, log32,
                       tanh32, u64)

# The exact scale is at most exp(SCALE_CAP) * 4 < float32 max (((1+a)/(1+b))**2 <= 4).
SCALE_CAP = f32(float(EXP_OVER) - 2.0 * math.log(2.0) - 0.01)
EPS_CODE = f32(1e-10)                 # the constant in the authors' scale
LN2_F = f32(math.log(2.0))
LOG4 = f32(2.0 * math.log(2.0))
TANH_SAT = f32(9.5)                   # |x| >= 9.5: tanh32(x) is exactly +-1 (true value within 1.2e-8)
UNDERFLOW_SAFE = f32(-100.0)          # exponent below which concrete_scale_exact32 is 0, with margin
BOUND_SHRINK = f32(1.0 - 2.0 ** -20)  # makes 1/tau a lower bound despite rounding
BLOCK = 1024                          # elements per block (4 KiB of float32: stays in L1)


@njit(cache=True, error_model="numpy", inline="always")
def logistic_noise32(u):
    """delta = 0.5*log(u/(1-u))."""
    return HALF * log32(u / (ONE - u))


# -- per-element pieces of the step ----------------------------------------------
@njit(cache=True, error_model="numpy", inline="always")
def concrete_scale_exact32(lam, u, tau, log_n_tau):
    """N/tau * (cosh(lam)/cosh(z))**2, z = (lam + delta)/tau, with exps only:

    cosh(x) = e**|x| (1 + e**(-2|x|))/2, so the ratio is
    exp(log(N/tau) + 2(|lam| - |z|)) * ((1 + e**(-2|lam|)) / (1 + e**(-2|z|)))**2.
    """
    z = (lam + logistic_noise32(u)) / tau
    al = abs(lam)
    az = abs(z)
    a = exp32(-TWO * al)
    b = exp32(-TWO * az)
    ratio = (ONE + a) / (ONE + b)
    e = min(log_n_tau + TWO * (al - az), SCALE_CAP)
    return exp32(e) * (ratio * ratio)


@njit(cache=True, error_model="numpy", inline="always")
def concrete_scale_official32(lam, mu, u, tau):
    """(1 - w_r**2 + 1e-10)/tau/(1 - mu**2 + 1e-10) in float32, in the authors' order."""
    w = tanh32((lam + logistic_noise32(u)) / tau)
    return (ONE - w * w + EPS_CODE) / tau / (ONE - mu * mu + EPS_CODE)


@njit(cache=True, error_model="numpy", inline="always")
def natural_update32(m, ghat, lam, lam0, beta, one_m_beta, reweight, lr, bc):
    """m' = beta*m + (1-beta)*(g_hat + reweight*(lam - lam0)); lam' = lam - lr*m'/bc (bc None: 1)."""
    m_new = beta * m + one_m_beta * (ghat + reweight * (lam - lam0))
    return lam - _over(lr * m_new, bc), m_new


def _over(x, d):
    """x/d, or x when d is None (bias correction 1 - 0**t = 1: x/1 == x, and no division)."""


@overload(_over, inline="always")
def _over_impl(x, d):
    if isinstance(d, types.NoneType):
        return lambda x, d: x
    return lambda x, d: x / d


def _at(a, i):
    """a[i] for an array, a for a scalar (lam0 = 0, or m when beta = 0: no memory traffic)."""


@overload(_at, inline="always")
def _at_impl(a, i):
    if isinstance(a, types.Array):
        return lambda a, i: a[i]
    return lambda a, i: a


# -- cheap tests that let a whole block skip its transcendentals ----------------------
@njit(cache=True, error_model="numpy", inline="always")
def _delta_bound(u):
    """An upper bound on |delta| = 0.5*|log(u/(1-u))| without a log.

    |log(u/(1-u))| <= |log v|, v = min(u, 1-u) in (0, 1/2], and v = 2**e * [1, 2) gives
    |log v| <= |e|*ln2; one extra ln2 covers rounding. inf (no bound) if u is not in
    (0, 1) or v is subnormal (its exponent field does not give e).
    """
    v = min(u, ONE - u)
    e = ((bits_of(v) >> i32(23)) & i32(0xFF)) - i32(127)      # exponent of v, <= -1
    d = HALF * LN2_F * f32(abs(e) + 1)
    return d if (u > ZERO and u < ONE and v >= TINY) else INF


@njit(cache=True, error_model="numpy", inline="always")
def _min_abs_z(lam, u, inv_tau):
    """A lower bound on |z| = |lam + delta|/tau (0 when the bound says nothing).

    inv_tau = (1/tau)*(1 - 2**-20): a multiplication instead of a division, rounded
    down so that the bound stays a bound (the tests using it have wide margins).
    """
    return max(abs(lam) - _delta_bound(u), ZERO) * inv_tau


@njit(cache=True, error_model="numpy", inline="always")
def _scale_flushes(lam, u, inv_tau, log_n_tau):
    """True if concrete_scale_exact32 is certainly 0: exp(log(N/tau) + 2(|lam| - |z|)) * 4 < e**-100."""
    return log_n_tau + TWO * (abs(lam) - _min_abs_z(lam, u, inv_tau)) + LOG4 < UNDERFLOW_SAFE


@njit(cache=True, error_model="numpy", inline="always")
def _inv_tau_down(tau):
    return (ONE / tau) * BOUND_SHRINK


# -- block workers -------------------------------------------------------------------
# A block whose every element passes a cheap test takes a loop without the
# transcendentals. These functions are inlined into the parallel kernels' loop body,
# which Numba compiles with noalias arrays (as separate functions LLVM would need
# more runtime alias checks than it allows, and would not vectorise). Indices are
# uint64: with a signed index Numba adds a negative-index wraparound to every access,
# which costs ~30% here. Counts are kept out of the heavy loops: an int64 reduction
# makes LLVM pick 4-wide vectors for the whole loop.
@njit(cache=True, error_model="numpy", inline="always")
def _count_nonfinite(lo, hi, x):
    bad = 0
    for i in range(lo, hi):
        bad += not math.isfinite(x[i])
    return bad


@njit(cache=True, error_model="numpy", inline="always")
def _tanh_block(lo, hi, src, mu_out):
    """mu_out = tanh(src), written as +-1 without a tanh when every |src| >= TANH_SAT."""
    sat = 0
    for i in range(lo, hi):
        sat += abs(src[i]) >= TANH_SAT
    if sat == i64(hi - lo):
        for i in range(lo, hi):
            mu_out[i] = math.copysign(ONE, src[i])
    else:
        for i in range(lo, hi):
            mu_out[i] = tanh32(src[i])


@njit(cache=True, error_model="numpy", inline="always")
def _relaxed_block(lo, hi, lam, u, tau, out):
    inv_tau = _inv_tau_down(tau)
    sat = 0
    for i in range(lo, hi):
        sat += _min_abs_z(lam[i], u[i], inv_tau) >= TANH_SAT
    if sat == i64(hi - lo):                                       # tanh(z) rounds to +-1
        for i in range(lo, hi):
            out[i] = math.copysign(ONE, lam[i])
    else:
        for i in range(lo, hi):
            out[i] = tanh32((lam[i] + logistic_noise32(u[i])) / tau)


@njit(cache=True, error_model="numpy", inline="always")
def _exact_block(lo, hi, lam, m, u, g, lam0, lr, beta, one_m_beta, reweight, bc, tau, log_n_tau,
                 lam_out, m_out, mu_out):
    inv_tau = _inv_tau_down(tau)
    flush = 0
    for i in range(lo, hi):
        flush += _scale_flushes(lam[i], u[i], inv_tau, log_n_tau)
    if flush == i64(hi - lo):                                     # every s is 0: s*g = 0*g
        for i in range(lo, hi):
            ln, mn = natural_update32(_at(m, i), ZERO * g[i], lam[i], _at(lam0, i),
                             beta, one_m_beta, reweight, lr, bc)
            lam_out[i] = ln
            m_out[i] = mn
    else:
        for i in range(lo, hi):
            li = lam[i]
            ghat = concrete_scale_exact32(li, u[i], tau, log_n_tau) * g[i]
            ln, mn = natural_update32(_at(m, i), ghat, li, _at(lam0, i), beta, one_m_beta, reweight, lr, bc)
            lam_out[i] = ln
            m_out[i] = mn
    _tanh_block(lo, hi, lam_out, mu_out)
    return _count_nonfinite(lo, hi, lam_out)


@njit(cache=True, error_model="numpy", inline="always")
def _official_block(lo, hi, lam, mu, m, u, g, lam0, lr, beta, one_m_beta, reweight, bc, tau,
                    n_over_s, lam_out, m_out, mu_out):
    inv_tau = _inv_tau_down(tau)
    sat = 0
    for i in range(lo, hi):
        sat += _min_abs_z(lam[i], u[i], inv_tau) >= TANH_SAT
    if sat == i64(hi - lo):                                       # w_r = +-1: 1 - w_r**2 = 0 exactly
        top = (ONE - ONE + EPS_CODE) / tau                        # the numerator, same rounding
        for i in range(lo, hi):
            li = lam[i]
            mi = mu[i]
            ratio = top / (ONE - mi * mi + EPS_CODE)
            ln, mn = natural_update32(_at(m, i), (ratio * g[i]) * n_over_s, li, _at(lam0, i),
                             beta, one_m_beta, reweight, lr, bc)
            lam_out[i] = ln
            m_out[i] = mn
    else:
        for i in range(lo, hi):
            li = lam[i]
            ghat = (concrete_scale_official32(li, mu[i], u[i], tau) * g[i]) * n_over_s
            ln, mn = natural_update32(_at(m, i), ghat, li, _at(lam0, i), beta, one_m_beta, reweight, lr, bc)
            lam_out[i] = ln
            m_out[i] = mn
    _tanh_block(lo, hi, lam, mu_out)                              # lagged: tanh of the OLD lam
    return _count_nonfinite(lo, hi, lam_out)


@njit(cache=True, error_model="numpy", inline="always")
def _finish_block(lo, hi, lam, m, acc, mul, div, lam0, lr, beta, one_m_beta, reweight, bc,
                  lagged_mu, lam_out, m_out, mu_out):
    for i in range(lo, hi):
        ln, mn = natural_update32(_at(m, i), acc[i] * mul / div, lam[i], _at(lam0, i),
                         beta, one_m_beta, reweight, lr, bc)
        lam_out[i] = ln
        m_out[i] = mn
    _tanh_block(lo, hi, lam if lagged_mu else lam_out, mu_out)
    return _count_nonfinite(lo, hi, lam_out)


@njit(cache=True, error_model="numpy", inline="always")
def _block_range(b, n):
    lo = u64(b) * u64(BLOCK)
    return lo, min(lo + u64(BLOCK), u64(n))


# -- kernels (parallel over blocks of BLOCK elements; arrays flat and C-contiguous) ----
@njit(parallel=True, cache=True, error_model="numpy")
def relaxed_sample_kernel(lam, u, tau, out):
    """out = tanh((lam + 0.5*log(u/(1-u)))/tau)  (the forward weights w_r)."""
    n = lam.size
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo, hi = _block_range(b, n)
        _relaxed_block(lo, hi, lam, u, tau, out)


@njit(parallel=True, cache=True, error_model="numpy")
def step_exact_kernel(lam, m, u, g, lam0, lr, beta, one_m_beta, reweight, bc, tau, log_n_tau,
               lam_out, m_out, mu_out):
    """Fused S = 1 step, exact numerics; mu' = tanh(lam').

    ``m`` and ``lam0`` are arrays or float32 scalars (m = 0 when beta = 0); ``bc`` is
    None when beta = 0. Returns the number of non-finite lam' (a NaN/inf gradient
    always makes lam' non-finite, since lr > 0).
    """
    n = lam.size
    bad = 0
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo, hi = _block_range(b, n)
        bad += _exact_block(lo, hi, lam, m, u, g, lam0, lr, beta, one_m_beta, reweight, bc, tau,
                            log_n_tau, lam_out, m_out, mu_out)
    return bad


@njit(parallel=True, cache=True, error_model="numpy")
def step_official_kernel(lam, mu, m, u, g, lam0, lr, beta, one_m_beta, reweight, bc, tau, n_over_s,
                  lam_out, m_out, mu_out):
    """Fused S = 1 step, the authors' float32 numerics; mu' = tanh of the OLD lam (their lag)."""
    n = lam.size
    bad = 0
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo, hi = _block_range(b, n)
        bad += _official_block(lo, hi, lam, mu, m, u, g, lam0, lr, beta, one_m_beta, reweight, bc,
                               tau, n_over_s, lam_out, m_out, mu_out)
    return bad


@njit(parallel=True, cache=True, error_model="numpy")
def accumulate_exact_kernel(lam, u, g, tau, log_n_tau, acc, first):
    """acc = s*g (first sample) or acc + s*g, exact scale."""
    for i in prange(lam.size):
        sg = concrete_scale_exact32(lam[i], u[i], tau, log_n_tau) * g[i]
        acc[i] = sg if first else acc[i] + sg


@njit(parallel=True, cache=True, error_model="numpy")
def accumulate_official_kernel(lam, mu, u, g, tau, acc, first):
    """acc = ratio*g (first sample) or acc + ratio*g: the authors' scale without N."""
    for i in prange(lam.size):
        sg = concrete_scale_official32(lam[i], mu[i], u[i], tau) * g[i]
        acc[i] = sg if first else acc[i] + sg


@njit(parallel=True, cache=True, error_model="numpy")
def finish_step_kernel(lam, m, acc, mul, div, lam0, lr, beta, one_m_beta, reweight, bc, numerics,
                       lam_out, m_out, mu_out):
    """The natural update from an accumulated acc: g_hat = acc*mul/div.

    S > 1: exact mul = 1, div = S (the mean); official mul = N/S, div = 1.
    S = 0: acc = g, mul = N, div = 1. mu' = tanh(lam') ('exact') or tanh(lam) ('official':
    the authors' one-step lag). Returns the number of non-finite lam'.
    """
    lagged_mu = numerics == "official"
    n = lam.size
    bad = 0
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo, hi = _block_range(b, n)
        bad += _finish_block(lo, hi, lam, m, acc, mul, div, lam0, lr, beta, one_m_beta, reweight,
                             bc, lagged_mu, lam_out, m_out, mu_out)
    return bad


# -- calls from ``BayesBiNN``: flat views of C-order arrays, outputs from the optimizer's pool --
def relaxed_sample_fused(pool, lam, u, tau):
    """``relaxed_sample``: w_r = tanh((lam + delta)/tau) in ``relaxed_sample_kernel``, the output from the pool.

    Parameters
    ----------
    pool : ArrayPool
    lam : ndarray, any shape, float32, C-contiguous
    u : ndarray, shape of ``lam``, float32
        Uniform noise in (0, 1).
    tau : float > 0

    Returns
    -------
    ndarray, shape of ``lam``, float32, values in [-1, 1]
    """
    w = pool.empty_like(lam)
    relaxed_sample_kernel(lam.reshape(-1), np.ascontiguousarray(u).reshape(-1),
                           np.float32(tau), w.reshape(-1))                   # (n,) views
    return w


def step_fused(pool, lam, m, mu, gs, us, lam0, lr, beta, reweight, tau, N, numerics, t):
    """``step_numpy`` in the fused kernels: one pass for S <= 1; for S > 1 one
    accumulating pass per sample, then the step.

    Parameters
    ----------
    pool : ArrayPool
    lam, m, mu : ndarray, same shape, float32, C-contiguous
    gs : list of S ndarrays, shape of ``lam``, float32, C-contiguous
    us : list of S ndarrays of that shape, float32, C-contiguous, or [None] (S = 0)
    lam0 : ndarray, scalar or shape of ``lam``, float32
    lr, beta, reweight, tau, N : float
    numerics : {'exact', 'official'}
    t : int >= 1
        The step count (bias correction 1 - beta**t).

    Returns
    -------
    (lam', m', mu') : pooled arrays, shape of ``lam``; lam' is None if it came out non-finite
    """
    f = np.float32
    official = numerics == OFFICIAL
    flat = lambda a: a.reshape(-1)                                 # views: all C-contiguous
    lam0 = flat(np.ascontiguousarray(lam0)) if lam0.ndim else f(lam0)
    m_in = flat(m) if beta != 0 else f(0)                          # beta = 0: m is not read
    bc = None if beta == 0 else f(1 - beta ** t)                   # None: no division by 1
    hyper = (lam0, f(lr), f(beta), f(1 - beta), f(reweight), bc)
    lam_out, m_out, mu_out = (pool.empty_like(lam) for _ in range(3))
    outs = (flat(lam_out), flat(m_out), flat(mu_out))
    log_n_tau = f(math.log(N / tau))
    if us[0] is None:                                              # S = 0: g_hat = N*g
        bad = finish_step_kernel(flat(lam), m_in, flat(gs[0]), f(N), f(1), *hyper,
                                 numerics, *outs)
    elif len(gs) == 1 and official:
        bad = step_official_kernel(flat(lam), flat(mu), m_in, flat(us[0]), flat(gs[0]), *hyper,
                                   f(tau), f(N), *outs)
    elif len(gs) == 1:
        bad = step_exact_kernel(flat(lam), m_in, flat(us[0]), flat(gs[0]), *hyper, f(tau),
                                log_n_tau, *outs)
    else:                                                          # S > 1: accumulate, then step
        acc = pool.empty_like(lam)
        for j, (g, u) in enumerate(zip(gs, us)):
            if official:
                accumulate_official_kernel(flat(lam), flat(mu), flat(u), flat(g), f(tau),
                                           flat(acc), j == 0)
            else:
                accumulate_exact_kernel(flat(lam), flat(u), flat(g), f(tau), log_n_tau,
                                        flat(acc), j == 0)
        mul, div = (f(N / len(gs)), f(1)) if official else (f(1), f(len(gs)))
        bad = finish_step_kernel(flat(lam), m_in, flat(acc), mul, div, *hyper, numerics, *outs)
    return (None if bad else lam_out), m_out, mu_out
