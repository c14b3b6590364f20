"""Fused float32 Numba kernels for the BayesBiNN step (the fast twin of _bayesbinn_math.py).

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

Implementation notes (each measured on the 10M-weight MNIST MLP here):

- Hand-written exp/log/tanh: the pip builds of llvmlite carry no SVML, so Numba
  turns ``math.exp`` into one scalar libm call per element and the loop does not
  vectorise (about 15 ms per 10M elements per function on 2 cores). The
  functions below are plain arithmetic (range reduction and a truncated Taylor
  series whose error is below float32 rounding), within 3 ulp, and LLVM
  vectorises them for whatever the host has (SSE2, AVX2, AVX-512).
- ``inline="always"``: Numba compiles a function with a status-code return, and
  LLVM declines to inline the larger ones, leaving a call per element.
- ``error_model="numpy"``: Python's error model checks every division for a
  zero divisor, and that branch alone stops vectorisation.
- No fastmath: the official numerics must round like the authors' float32 code,
  and the finiteness counts must see NaN/inf.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic, overload

f32 = np.float32
i32 = np.int32
i64 = np.int64
u64 = np.uint64


# -- bit casts (LLVM bitcast: free, and vectorisable) ----------------------------
@intrinsic
def _bits_of(typingctx, x):
    """The int32 whose bits are the float32 ``x``."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int32))
    return types.int32(types.float32), codegen


@intrinsic
def _float_of(typingctx, i):
    """The float32 whose bits are the low 32 bits of the integer ``i``.

    (Numba widens int32 arithmetic to int64; the truncation undoes that.)
    """
    if not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        if signature.args[0].bitwidth > 32:
            v = builder.trunc(v, context.get_value_type(types.int32))
        return builder.bitcast(v, context.get_value_type(types.float32))
    return types.float32(i), codegen


# -- constants (np.float32 so that no expression is promoted to float64) --------
_LN2 = math.log(2.0)
# Cody-Waite split of ln 2: LN2_HI has 12 significant bits, so k*LN2_HI is exact for |k| < 2**12
LN2_HI = f32(round(_LN2 * 2.0 ** 12) / 2.0 ** 12)
LN2_LO = f32(_LN2 - float(LN2_HI))
LOG2E = f32(1.0 / _LN2)
SQRT2 = f32(math.sqrt(2.0))
EXP_OVER = f32(np.log(np.finfo(np.float32).max))            # 88.72: above this exp is inf
# Below EXP_UNDER we return 0. It sits a little above log(tiny) = -87.3365 so that the
# clamped input still gives a normal number: a subnormal intermediate costs a microcode
# assist (~100 cycles) per element, which made exp of large negative inputs ~5x slower.
EXP_UNDER = f32(-87.33)
TINY = f32(np.finfo(np.float32).tiny)
TWO23 = f32(2.0 ** 23)
INF = f32(np.inf)
NAN = f32(np.nan)
# The exact scale is at most exp(SCALE_CAP) * 4 < float32 max (((1+a)/(1+b))**2 <= 4).
SCALE_CAP = f32(float(EXP_OVER) - 2.0 * _LN2 - 0.01)
ZERO, HALF, ONE, TWO = f32(0.0), f32(0.5), f32(1.0), f32(2.0)
EPS_CODE = f32(1e-10)                 # the constant in the authors' scale
LN2_F = f32(_LN2)
LOG4 = f32(2.0 * _LN2)
TANH_SAT = f32(9.5)                   # |x| >= 9.5: tanh32(x) is exactly +-1 (true value within 1.2e-8)
UNDERFLOW_SAFE = f32(-100.0)          # exponent below which exact_scale32 is 0, with margin
BOUND_SHRINK = f32(1.0 - 2.0 ** -20)  # makes 1/tau a lower bound despite rounding
BLOCK = 1024                          # elements per block (4 KiB of float32: stays in L1)

# Taylor coefficients 1/k!
C2, C3, C4, C5, C6, C7, C8, C9, C10 = (f32(1.0 / math.factorial(k)) for k in range(2, 11))
# atanh series 1/(2k+1)
A3, A5, A7, A9 = f32(1 / 3), f32(1 / 5), f32(1 / 7), f32(1 / 9)


# -- vectorisable float32 exp, log, tanh ---------------------------------------
@njit(cache=True, error_model="numpy", inline="always")
def exp32(x):
    """e**x for float32 x: x = k*ln2 + r, |r| <= ln2/2, e**x = 2**k * e**r.

    e**r by its Taylor series to r**7 (truncation < 6e-9 relative). Results at or
    below the smallest normal float32 (x < -87.33, e**x < 1.2e-38) are flushed to 0;
    x > 88.72 gives inf.
    """
    xc = min(max(x, EXP_UNDER), EXP_OVER)
    k = np.floor(xc * LOG2E + HALF)                       # -126 <= k <= 128
    r = (xc - k * LN2_HI) - k * LN2_LO
    p = ONE + r * (ONE + r * (C2 + r * (C3 + r * (C4 + r * (C5 + r * (C6 + r * C7))))))
    ki = i32(k)
    top = ki > i32(127)                                   # 2**128 has no float32 exponent: use 2*2**127
    two_k = _float_of((ki + i32(127) - (i32(1) if top else i32(0))) << i32(23))
    y = p * two_k
    y = y * TWO if top else y
    y = ZERO if x < EXP_UNDER else y
    y = INF if x > EXP_OVER else y
    return x if x != x else y


@njit(cache=True, error_model="numpy", inline="always")
def log32(x):
    """Natural log for float32 x: x = 2**e * m with m in [sqrt(1/2), sqrt(2)),

    log m = 2*atanh(s), s = (m-1)/(m+1), |s| <= 0.172, series to s**9
    (truncation < 3e-9 relative). log 0 = -inf, log(x<0) = nan, log inf = inf.
    """
    sub = x < TINY                                        # subnormal: scale into the normal range
    xs = x * TWO23 if sub else x
    bits = _bits_of(xs)
    e = i32(((bits >> i32(23)) & i32(0xFF)) - i32(127) - (i32(23) if sub else i32(0)))
    m = _float_of((bits & i32(0x007FFFFF)) | i32(0x3F800000))   # mantissa in [1, 2)
    big = m > SQRT2
    m = m * HALF if big else m
    e = i32(e + i32(1)) if big else e
    f = m - ONE
    s = f / (TWO + f)
    s2 = s * s
    p = TWO * s + TWO * s * s2 * (A3 + s2 * (A5 + s2 * (A7 + s2 * A9)))
    ef = f32(e)
    y = ef * LN2_HI + (ef * LN2_LO + p)
    y = -INF if x == ZERO else y
    y = NAN if x < ZERO else y
    y = INF if x == INF else y
    return x if x != x else y


@njit(cache=True, error_model="numpy", inline="always")
def tanh32(x):
    """tanh |x| = t/(t+2), t = expm1(2|x|), for 2|x| < 1 (expm1 by its Taylor series
    to y**10, truncation < 3e-8 relative); 1 - 2/(exp(2|x|) + 1) above, which keeps
    the last ulp below 1 right (the official numerics divide by 1 - mu**2)."""
    y = min(TWO * abs(x), f32(40.0))                      # tanh(20) == 1 in float32
    t = y * (ONE + y * (C2 + y * (C3 + y * (C4 + y * (C5 + y * (C6 + y * (C7 + y * (C8 + y * (
        C9 + y * C10)))))))))
    small = y < ONE
    q = (t if small else TWO) / ((t + TWO) if small else (exp32(y) + ONE))   # one division
    return math.copysign(q if small else ONE - q, x)


@njit(cache=True, error_model="numpy", inline="always")
def logistic_noise32(u):
    """delta = 0.5*log(u/(1-u))."""
    return HALF * log32(u / (ONE - u))


# -- per-element pieces of the step ----------------------------------------------
@njit(cache=True, error_model="numpy", inline="always")
def exact_scale32(lam, u, tau, log_n_tau):
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
def official_ratio32(lam, mu, u, tau):
    """(1 - w_r**2 + 1e-10)/tau/(1 - mu**2 + 1e-10) in float32, in the authors' order."""
    w = tanh32((lam + logistic_noise32(u)) / tau)
    return (ONE - w * w + EPS_CODE) / tau / (ONE - mu * mu + EPS_CODE)


@njit(cache=True, error_model="numpy", inline="always")
def _moment(m, ghat, lam, lam0, beta, one_m_beta, reweight, lr, bc):
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
    e = ((_bits_of(v) >> i32(23)) & i32(0xFF)) - i32(127)      # exponent of v, <= -1
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
    """True if exact_scale32 is certainly 0: exp(log(N/tau) + 2(|lam| - |z|)) * 4 < e**-100."""
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
            ln, mn = _moment(_at(m, i), ZERO * g[i], lam[i], _at(lam0, i),
                             beta, one_m_beta, reweight, lr, bc)
            lam_out[i] = ln
            m_out[i] = mn
    else:
        for i in range(lo, hi):
            li = lam[i]
            ghat = exact_scale32(li, u[i], tau, log_n_tau) * g[i]
            ln, mn = _moment(_at(m, i), ghat, li, _at(lam0, i), beta, one_m_beta, reweight, lr, bc)
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
            ln, mn = _moment(_at(m, i), (ratio * g[i]) * n_over_s, li, _at(lam0, i),
                             beta, one_m_beta, reweight, lr, bc)
            lam_out[i] = ln
            m_out[i] = mn
    else:
        for i in range(lo, hi):
            li = lam[i]
            ghat = (official_ratio32(li, mu[i], u[i], tau) * g[i]) * n_over_s
            ln, mn = _moment(_at(m, i), ghat, li, _at(lam0, i), beta, one_m_beta, reweight, lr, bc)
            lam_out[i] = ln
            m_out[i] = mn
    _tanh_block(lo, hi, lam, mu_out)                              # lagged: tanh of the OLD lam
    return _count_nonfinite(lo, hi, lam_out)


@njit(cache=True, error_model="numpy", inline="always")
def _finish_block(lo, hi, lam, m, acc, mul, div, lam0, lr, beta, one_m_beta, reweight, bc,
                  lagged_mu, lam_out, m_out, mu_out):
    for i in range(lo, hi):
        ln, mn = _moment(_at(m, i), acc[i] * mul / div, lam[i], _at(lam0, i),
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
def relaxed_weights(lam, u, tau, out):
    """out = tanh((lam + 0.5*log(u/(1-u)))/tau)  (the forward weights w_r)."""
    n = lam.size
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo, hi = _block_range(b, n)
        _relaxed_block(lo, hi, lam, u, tau, out)


@njit(parallel=True, cache=True, error_model="numpy")
def step_exact(lam, m, u, g, lam0, lr, beta, one_m_beta, reweight, bc, tau, log_n_tau,
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
def step_official(lam, mu, m, u, g, lam0, lr, beta, one_m_beta, reweight, bc, tau, n_over_s,
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
def accumulate_exact(lam, u, g, tau, log_n_tau, acc, first):
    """acc = s*g (first sample) or acc + s*g, exact scale."""
    for i in prange(lam.size):
        sg = exact_scale32(lam[i], u[i], tau, log_n_tau) * g[i]
        acc[i] = sg if first else acc[i] + sg


@njit(parallel=True, cache=True, error_model="numpy")
def accumulate_official(lam, mu, u, g, tau, acc, first):
    """acc = ratio*g (first sample) or acc + ratio*g: the authors' scale without N."""
    for i in prange(lam.size):
        sg = official_ratio32(lam[i], mu[i], u[i], tau) * g[i]
        acc[i] = sg if first else acc[i] + sg


@njit(parallel=True, cache=True, error_model="numpy")
def finish_step(lam, m, acc, mul, div, lam0, lr, beta, one_m_beta, reweight, bc, lagged_mu,
                lam_out, m_out, mu_out):
    """The natural update from an accumulated acc: g_hat = acc*mul/div.

    S > 1: exact mul = 1, div = S (the mean); official mul = N/S, div = 1.
    S = 0: acc = g, mul = N, div = 1. mu' = tanh(lam) if lagged_mu else tanh(lam').
    Returns the number of non-finite lam'.
    """
    n = lam.size
    bad = 0
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo, hi = _block_range(b, n)
        bad += _finish_block(lo, hi, lam, m, acc, mul, div, lam0, lr, beta, one_m_beta, reweight,
                             bc, lagged_mu, lam_out, m_out, mu_out)
    return bad


@njit(cache=True, error_model="numpy")
def elementwise(fn_id, x, out):
    """out = exp32/log32/tanh32(x) for fn_id 0/1/2 (for the accuracy tests; serial)."""
    for i in range(x.size):
        xi = x[i]
        out[i] = exp32(xi) if fn_id == 0 else (log32(xi) if fn_id == 1 else tanh32(xi))
