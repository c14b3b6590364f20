"""Fused Numba kernels for the BayesBiNN step, noise made in registers: the fast twins of ``_bayesbinn_math.py``.

Every kernel computes, in one pass over memory, what the NumPy functions in
``_bayesbinn_math.py`` compute in several, and gives the same bits (float32 and float64;
tests/test_bayesbinn_fused.py): the same operations in the same order, the same exp/log/tanh
(``_elementary.py``), and the same noise u, which never reaches memory: each block of
BLOCK elements makes its u from the noise key, one Philox4x32-10 call per four elements
(``refbinn.noise``: counter = (element // 4, step, sample, crc32(name)), key = the seed),
into a 4 KiB scratch that stays in L1 cache (``_block_uniforms``), and uses them at once.

Per element, the S = 1 step (``step_kernel``) reads lam and g (mu for 'official'; m only
when beta > 0; lam0 only when it is an array) and writes lam' (m' only when beta > 0;
mu' only for 'official'):

    u     = ((philox word >> 9) + 0.5) * 2**-23
    delta = 0.5*log(u/(1-u));  z = (lam + delta)/tau
    exact:    s = exp(min(log(N/tau) + 2*(|lam| - |z|), cap)) * ((1 + e**-2|lam|)/(1 + e**-2|z|))**2
    clipped:  s = min(s_exact, N/tau)
    official: s = (1 - w_r**2 + 1e-10)/tau/(1 - mu**2 + 1e-10), w_r = tanh(z); g_hat = (s*g)*N
    m'   = beta*m + (1-beta)*(g_hat + reweight*(lam - lam0))
    lam' = lam - lr*m'/(1 - beta**t)
    mu'  = tanh(lam) ('official': the authors' one-step lag; 'exact' stores no mu)

and returns the number of non-finite lam' (a NaN/inf gradient always makes lam' non-finite),
so that the caller can raise before anything is stored.

Work is split into blocks of BLOCK elements. |delta| <= 8.32 for every u of the stream, so
a block where |lam| alone shows that every w_r is +-1 (official) or every s is 0 (exact)
skips the noise and the transcendentals: the result is the same number, bit for bit. At the
paper's tau = 1e-10 this is nearly every block, so the step is a pass over lam and g
('exact' and ``forward_params`` decide the block from the least and greatest |lam|, integer
min/max reductions of their bits: a count of per-weight tests halved the loop's vector width;
the exact update of the MNIST MLP 7.2 -> 4.8 ms, forward_params 2.4 -> 2.1 ms, Intel Xeon).
Where |lam| does not show it (|lam| < 8.5), 'exact' still finds s = 0 for nearly every
weight at small tau once z is known: a block computes z first, and when every exponent lies
below the flush it skips the three exps per weight (13 against 27 ms for 10M weights with
|lam| < 10 at tau = 1e-10).
Inside a block that does need the noise, two more shortcuts give the same bits:
``forward_params`` writes sign(z) for every weight and remakes tanh(z) only in the groups of
32 that hold a |z| below the saturation (or a NaN), found by an integer min/max of the bits
of |z| (at the continual MLP's tau = 0.01 about 0.4% of the z need it: the first layer's
forward_params went from 317 to 206 us on one thread, Intel Xeon); and the official mu' =
tanh(lam) skips tanh32's series branch in a block with no |lam| < 0.5 (``tanh32_large``).

Each kernel is compiled twice: parallel over blocks (large arrays) and serial (small ones,
where starting the threads costs more than the work). Indices are uint64: with a signed
index Numba adds a negative-index wraparound to every access. The per-block functions
(``_official_block``, ``_exact_block``, their ``_acc`` kin, ``_relaxed_block``,
``_tanh_block``) are called, not inlined at Numba's IR level, once per block of BLOCK weights:
the twins share one compiled block, and the parallel loop's body stays small for Numba's
parfor passes. A step compiles the block of its own numerics only ('official' is the one
that passes mu). Together that cut the compile of the S = 1 step (float32, parallel and
serial twins) from 55 to 9 s ('official') and from 45 to 7 s ('exact'), with the same bits
and no measured change in speed (the loops that LLVM vectorises are inside the block, and
their element helpers stay inlined).

    ============================  =========================================
    NumPy reference               fused twin here
    ============================  =========================================
    ``relaxed_sample``            ``relaxed_fused`` (``relaxed_kernel``)
    ``concrete_scale``            ``_scale_exact``, ``_scale_official`` (per element);
                                  ``concrete_scale_fused`` (``scale_exact_kernel``,
                                  ``scale_official_kernel``: one formula each)
    ``natural_update``            ``_natural`` (per element)
    ``step_numpy``                ``step_fused`` (``step_kernel``, ``accumulate_kernel``,
                                  ``finish_kernel``)
    ============================  =========================================
"""
from __future__ import annotations

import functools
import math
import types as types_mod
import warnings

import numpy as np
from numba import njit, prange, types
from numba.core.errors import NumbaIRAssumptionWarning
from numba.extending import intrinsic, overload

from ..kernels.philox import philox4x32_10, word_to_uniform
from ..noise import param_id
from ._bayesbinn_math import EXACT, EXACT_CLIPPED, OFFICIAL, log_ratio, scale_cap
from ._elementary import tanh_
from ._float32 import HALF, INF, ONE, TWO, ZERO, exp32, log32, tanh32, tanh32_large

BLOCK = 1024                          # elements per block (a multiple of 4: whole Philox groups)
DELTA_MAX = 8.5                       # > max |delta| = 0.5*log((1 - 2**-24)/2**-24) = 8.318
BOUND_SHRINK = 1.0 - 2.0 ** -20       # makes 1/tau a lower bound despite rounding
# per dtype: |x| at and above which tanh(x) is exactly +-1 (tanh32 / the C library's tanh),
# and an exponent below which exp gives exactly 0 (exp32 flushes below -87.33; C exp below -745.2)
TANH_SAT = {np.dtype(np.float32): 9.5, np.dtype(np.float64): 22.0}
EXP_ZERO = {np.dtype(np.float32): -100.0, np.dtype(np.float64): -760.0}
# elements below which the serial kernels run (a parallel region's start costs more than it saves).
# 2**15: an unsaturated block costs ~4 ns per weight on one thread (Philox, log, tanh), so the
# continual MLP's 78 400-weight layer gains from 2 threads (forward_params 0.46 -> 0.26 ms per step,
# the step 1.74 -> 1.46 ms, Intel Xeon, 2 cores; with 2**18 it ran serial); a saturated block costs
# ~0.4 ns per weight, where a few microseconds are lost or won at this size either way.
SERIAL_BELOW = 1 << 15
MODES = {EXACT: 0, OFFICIAL: 1, EXACT_CLIPPED: 2}
_M32 = 0xFFFFFFFF


# -- the dtype's exp, log, tanh (the functions of _elementary.py) -----------------------


def _exp(x):
    """exp32 for float32, the C library's exp for float64."""


def _log(x):
    """log32 for float32, the C library's log for float64 (log 0 = -inf, log(x < 0) = nan)."""


def _tanh(x):
    """tanh32 for float32, the C library's tanh for float64."""


def _tanh_large(x):
    """tanh x for |x| >= 0.5 or NaN: tanh32_large for float32 (tanh32's bits there), the C
    library's tanh for float64."""


def _as(x, like):
    """x (a float32: a u, or a constant such as HALF) converted to the type of ``like`` (exact)."""


# inline="always" (as in _float32.py): an un-inlined call per element stops vectorisation.
# Inlining these at Numba's IR level trips a pedantic SSA check (NumbaIRAssumptionWarning,
# "variable ... is not in scope") for the variables of the inlined branches; the code is
# correct (tests/test_bayesbinn_fused.py), so that warning is silenced for this module's compiles.
warnings.filterwarnings("ignore", category=NumbaIRAssumptionWarning)


@overload(_exp, inline="always")
def _exp_impl(x):
    if x == types.float32:
        return lambda x: exp32(x)
    return lambda x: math.exp(x)


@overload(_log, inline="always")
def _log_impl(x):
    if x == types.float32:
        return lambda x: log32(x)
    return lambda x: math.log(x) if x > 0.0 else (-math.inf if x == 0.0 else math.nan)


@overload(_tanh, inline="always")
def _tanh_impl(x):
    if x == types.float32:
        return lambda x: tanh32(x)
    return lambda x: math.tanh(x)


@overload(_tanh_large, inline="always")
def _tanh_large_impl(x):
    if x == types.float32:
        return lambda x: tanh32_large(x)
    return lambda x: math.tanh(x)


@overload(_as, inline="always")
def _as_impl(x, like):
    if like == types.float32:
        return lambda x, like: x
    return lambda x, like: np.float64(x)


@intrinsic
def _bits(typingctx, x):
    """The integer of x's width whose bits are the float x (float32 -> int32, float64 -> int64).

    For x >= 0 (and NaN with the sign bit clear) the integers order as the floats do, and every
    NaN is above the bits of inf: integer min/max reductions, which LLVM vectorises at the
    floats' width (a count of booleans is an int64 sum, which halved the float32 vector width)."""
    width = {types.float32: types.int32, types.float64: types.int64}.get(x)
    if width is None:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(width))
    return width(x), codegen


@intrinsic
def _unbits(typingctx, b, like):
    """The float of ``like``'s type whose bits are the integer b: the inverse of ``_bits``."""
    if (b, like) not in ((types.int32, types.float32), (types.int64, types.float64)):
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(like))
    return like(b, like), codegen


def _at(a, i):
    """a[i] for an array, a for a scalar (lam0 = 0, or m when beta = 0: no memory traffic)."""


@overload(_at, inline="always")
def _at_impl(a, i):
    if isinstance(a, types.Array):
        return lambda a, i: a[i]
    return lambda a, i: a


def _put(a, i, v):
    """a[i] = v for an array; nothing for None (m' when beta = 0, mu' in 'exact')."""


@overload(_put)            # not inline="always": Numba's IR inlining lost the store when a block inlined it 4 times
def _put_impl(a, i, v):
    if isinstance(a, types.NoneType):
        return lambda a, i, v: None

    def put(a, i, v):
        a[i] = v
    return put


def _over(x, d):
    """x/d, or x when d is None (bias correction 1 - 0**t = 1: x/1 == x, and no division)."""


@overload(_over, inline="always")
def _over_impl(x, d):
    if isinstance(d, types.NoneType):
        return lambda x, d: x
    return lambda x, d: x / d


@njit(cache=True, error_model="numpy", inline="always")
def _block_range(b, n):
    lo = np.uint64(b) * np.uint64(BLOCK)
    return lo, min(lo + np.uint64(BLOCK), np.uint64(n))


@njit(cache=True, error_model="numpy", inline="always")
def _w_is_sign(a, inv, bound):
    """True if w_r = tanh(z) is exactly +-1 for |lam| = a, whatever u: |z| >= (a - DELTA_MAX)*inv
    >= bound (``inv`` = 1/tau rounded down, ``bound`` = the tanh saturation)."""
    return (a - DELTA_MAX) * inv >= bound


@njit(cache=True, error_model="numpy", inline="always")
def _s_is_zero(a, inv, log_n_tau, zero_below):
    """True if the exact scale is exactly 0 for |lam| = a, whatever u:
    log(N/tau) + 2*(a - |z|) < zero_below with |z| >= max(a - DELTA_MAX, 0)*inv."""
    return log_n_tau + TWO * (a - max(a - DELTA_MAX, ZERO) * inv) < zero_below


@njit(cache=True, error_model="numpy", inline="always")
def _s_all_zero(lo_b, hi_b, like, inv, log_n_tau, zero_below):
    """True if ``_s_is_zero`` shows s = 0 for every |lam| whose bits lie in [lo_b, hi_b] (``_bits``):
    both ends >= DELTA_MAX, where the bound log(N/tau) + 2*(a - (a - DELTA_MAX)*inv) is linear in
    a, and below ``zero_below`` at both ends (so between them: the rounding is far inside the gap
    from ``zero_below`` to where exp flushes to 0, -100 against -87.3 in float32). An inf or NaN
    |lam| (the greatest bits) makes the bound NaN: False, and the general loop decides."""
    a_lo = _unbits(lo_b, like)
    return a_lo >= DELTA_MAX and _s_is_zero(a_lo, inv, log_n_tau, zero_below) and \
        _s_is_zero(_unbits(hi_b, like), inv, log_n_tau, zero_below)


@njit(cache=True, error_model="numpy", inline="always")
def _saturated(lam, lo, hi, tau, bound):
    """True if every |lam[i]| shows |z| >= bound (``bound`` = the tanh saturation), whatever u."""
    inv = ONE / tau * BOUND_SHRINK
    ok = 0
    for i in range(lo, hi):
        ok += _w_is_sign(abs(lam[i]), inv, bound)
    return ok == np.int64(hi - lo)


@njit(cache=True, error_model="numpy", inline="always")
def _flushes(lam, lo, hi, tau, log_n_tau, zero_below):
    """True if every exact scale of the block is exactly 0, whatever u (``_s_is_zero``)."""
    inv = ONE / tau * BOUND_SHRINK
    ok = 0
    for i in range(lo, hi):
        ok += _s_is_zero(abs(lam[i]), inv, log_n_tau, zero_below)
    return ok == np.int64(hi - lo)


@njit(cache=True, error_model="numpy", inline="always")
def _count_nonfinite(lo, hi, x):
    bad = 0
    for i in range(lo, hi):
        bad += not math.isfinite(x[i])
    return bad


@njit(cache=True, error_model="numpy", inline="always")
def _natural(m, ghat, lam, lam0, up):
    """``natural_update``: up = (lr, beta, 1 - beta, reweight, bc); returns (lam', m')."""
    m_new = up[1] * m + up[2] * (ghat + up[3] * (lam - lam0))
    return lam - _over(up[0] * m_new, up[4]), m_new


@njit(cache=True, error_model="numpy", inline="always")
def _z(lam, u, tau):
    """z = (lam + delta)/tau, delta = 0.5*log(u/(1-u)) (``logistic_noise``)."""
    return (lam + HALF * _log(u / (ONE - u))) / tau


@njit(cache=True, error_model="numpy", inline="always")
def _scale_official(lam, mu, u, tau, h):
    """``concrete_scale`` 'official' without N: (1 - w_r**2 + eps)/tau/(1 - mu**2 + eps);
    h = (log(N/tau), cap, N/tau, eps) in the dtype."""
    w = _tanh(_z(lam, u, tau))
    return (ONE - w * w + h[3]) / tau / (ONE - mu * mu + h[3])


@njit(cache=True, error_model="numpy", inline="always")
def _scale_exact(lam, u, tau, h):
    """``concrete_scale`` 'exact' with the factor N: exp(min(log(N/tau) + 2(|lam| - |z|), cap))
    * ((1 + e**-2|lam|)/(1 + e**-2|z|))**2; 'exact-clipped' is min(this, N/tau)."""
    return _scale_exact_z(lam, _z(lam, u, tau), h)


@njit(cache=True, error_model="numpy", inline="always")
def _e_exact(al, az, h):
    """The exponent of ``_scale_exact``: min(log(N/tau) + 2(|lam| - |z|), cap)."""
    return min(h[0] + TWO * (al - az), h[1])


@njit(cache=True, error_model="numpy", inline="always")
def _scale_exact_z(lam, z, h):
    """``_scale_exact`` from z = (lam + delta)/tau."""
    al = abs(lam)
    az = abs(z)
    a = _exp(-TWO * al)
    b = _exp(-TWO * az)
    ratio = (ONE + a) / (ONE + b)
    return _exp(_e_exact(al, az, h)) * (ratio * ratio)


@njit(cache=True, error_model="numpy", inline="always")
def _block_uniforms(key, lo):
    """The BLOCK float32 u of the block starting at element lo: one Philox call
    per group of four, into a 4 KiB (float32) scratch that stays in L1 cache. Filling it in its
    own loop lets LLVM vectorise the Philox rounds, which it does not do when each group's words
    feed the update directly (12x slower); no u array is read from or written to memory."""
    u = np.empty(BLOCK, dtype=np.float32)
    q0 = lo // np.uint64(4)
    for q in range(np.uint64(BLOCK // 4)):
        x0, x1, x2, x3 = philox4x32_10(q0 + q, key[2], key[3], key[4], key[0], key[1])
        i = q * np.uint64(4)
        u[i] = word_to_uniform(x0)
        u[i + np.uint64(1)] = word_to_uniform(x1)
        u[i + np.uint64(2)] = word_to_uniform(x2)
        u[i + np.uint64(3)] = word_to_uniform(x3)
    return u


@njit(cache=True, error_model="numpy")
def _tanh_block(lo, hi, src, out, sat):
    """out = tanh(src): +-1 written while counting that every |src| >= sat (tanh is then exactly
    +-1; one pass), else tanh(src), overwriting the block; without tanh32's series branch
    (``_tanh_large``) when no |src| < 0.5 (NaN counts as large: tanh32 takes that branch for it)."""
    if abs(src[lo]) >= sat:
        n_sat = 0
        for i in range(lo, hi):
            si = src[i]
            n_sat += abs(si) >= sat
            out[i] = math.copysign(ONE, si)
        if n_sat == np.int64(hi - lo):
            return
    half_b = _bits(_as(HALF, src[lo]))                         # 0.5 in src's type
    lo_b = _bits(abs(src[lo]))
    for i in range(lo, hi):
        lo_b = min(lo_b, _bits(abs(src[i])))
    if lo_b >= half_b:                                          # no |src| < 0.5: no series branch
        for i in range(lo, hi):
            out[i] = _tanh_large(src[i])
        return
    for i in range(lo, hi):
        out[i] = _tanh(src[i])


# -- the step's block, per numerics. ``step_fused`` passes mu (an array) for 'official' only, so
# the overloads below pick the block function from mu's type: a compiled step holds the code
# of its own numerics only (the one block for all three, decided by ``mode`` at run time,
# took twice the compile time of either).


@njit(cache=True, error_model="numpy")
def _official_block(lo, hi, key, lam, mu, m, g, w, use_w, lam0, tau, h, n_over_s, up, skip, lam_out, m_out,
                    mu_out):
    """One 'official' block of ``step_kernel``; returns (non-finite count of lam', whether mu' was written).

    At small tau nearly every block is one where every w_r is +-1 whatever u. The first loop
    computes such a block's lam' and mu' = +-1 while it counts the weights for which this
    holds, so the common block takes one pass over lam. A block where it does not hold for
    every weight is then computed again by the general loops below, which overwrite every
    output of the block (and mu' is left to the caller's ``_tanh_block`` unless every |lam| >=
    TANH_SAT): the same bits as deciding first. The first weight is tested before the first
    loop, so that a block (or a tau) where nothing saturates pays nothing for it."""
    inv = ONE / tau * BOUND_SHRINK
    n = np.int64(hi - lo)
    if _w_is_sign(abs(lam[lo]), inv, skip[0]):                  # every w_r = +-1: no noise needed
        top = (ONE - ONE + h[3]) / tau                          # 1 - w_r**2 + eps, same rounding
        ok = 0
        at = 0                                                  # |lam| >= TANH_SAT: mu' = +-1
        bad = 0                                                 # non-finite lam'
        for i in range(lo, hi):
            li = lam[i]
            al = abs(li)
            ok += _w_is_sign(al, inv, skip[0])
            at += al >= skip[0]
            mi = mu[i]
            ln, mn = _natural(_at(m, i), ((top / (ONE - mi * mi + h[3])) * g[i]) * n_over_s, li,
                              _at(lam0, i), up)
            lam_out[i] = ln
            _put(m_out, i, mn)
            _put(mu_out, i, math.copysign(ONE, li))
            bad += not math.isfinite(ln)
        if ok == n:
            return bad, at == n
    if use_w:                                                   # w_r from this pass's forward weights
        bad = 0
        for i in range(lo, hi):
            wi = w[i]
            mi = mu[i]
            s = (ONE - wi * wi + h[3]) / tau / (ONE - mi * mi + h[3])
            ln, mn = _natural(_at(m, i), (s * g[i]) * n_over_s, lam[i], _at(lam0, i), up)
            lam_out[i] = ln
            _put(m_out, i, mn)
            bad += not math.isfinite(ln)
        return bad, False
    u = _block_uniforms(key, lo)
    for i in range(lo, hi):
        li = lam[i]
        s = _scale_official(li, mu[i], _as(u[i - lo], li), tau, h)
        ln, mn = _natural(_at(m, i), (s * g[i]) * n_over_s, li, _at(lam0, i), up)
        lam_out[i] = ln
        _put(m_out, i, mn)
    return _count_nonfinite(lo, hi, lam_out), False


@njit(cache=True, error_model="numpy")
def _exact_block(clipped, lo, hi, key, lam, m, g, lam0, tau, h, up, skip, lam_out, m_out):
    """One 'exact' (``clipped``: 'exact-clipped') block of ``step_kernel``; returns the
    non-finite count of lam'. A block whose |lam| show s = 0 whatever u takes one pass (the
    least and greatest |lam| decide it: ``_s_all_zero``); else u is made, and z first: where
    every exponent flushes, the three exps per weight are skipped (the same bits)."""
    inv = ONE / tau * BOUND_SHRINK
    n = np.int64(hi - lo)
    a0 = abs(lam[lo])
    if _s_is_zero(a0, inv, h[0], skip[1]):                      # every s = 0: s*g = 0*g
        # the least and greatest bits of |lam| (integer min/max reductions; a count of
        # per-weight tests, as in the 'official' block, made this loop 1.6x slower in float32)
        lo_b = hi_b = _bits(a0)
        bad = 0
        for i in range(lo, hi):
            li = lam[i]
            b = _bits(abs(li))
            lo_b = min(lo_b, b)
            hi_b = max(hi_b, b)
            ln, mn = _natural(_at(m, i), ZERO * g[i], li, _at(lam0, i), up)
            lam_out[i] = ln
            _put(m_out, i, mn)
            bad += not math.isfinite(ln)
        if _s_all_zero(lo_b, hi_b, a0, inv, h[0], skip[1]):
            return bad
    u = _block_uniforms(key, lo)
    # at small tau |lam| alone rarely shows s = 0, but z does: e < EXP_ZERO for nearly every
    # weight, so exp(e) = 0 and s = 0 * ratio**2 = 0 (ratio in [1/2, 2]). One pass finds z and
    # whether that holds for the whole block; if so the three exps per weight are skipped (the
    # same bits), else z is reused by the general loop.
    z = np.empty(BLOCK, dtype=lam.dtype)
    ok = 0
    for i in range(lo, hi):
        li = lam[i]
        zi = _z(li, _as(u[i - lo], li), tau)
        z[i - lo] = zi
        ok += _e_exact(abs(li), abs(zi), h) < skip[1]
    if ok == n:
        for i in range(lo, hi):
            ln, mn = _natural(_at(m, i), ZERO * g[i], lam[i], _at(lam0, i), up)
            lam_out[i] = ln
            _put(m_out, i, mn)
    else:
        for i in range(lo, hi):
            li = lam[i]
            s = _scale_exact_z(li, z[i - lo], h)
            s = min(s, h[2]) if clipped else s
            ln, mn = _natural(_at(m, i), s * g[i], li, _at(lam0, i), up)
            lam_out[i] = ln
            _put(m_out, i, mn)
    return _count_nonfinite(lo, hi, lam_out)


def _step_block(mode, lo, hi, key, lam, mu, m, g, w, use_w, lam0, tau, h, n_over_s, up, skip, lam_out, m_out,
                mu_out):
    """One block of ``step_kernel``: (non-finite count of lam', whether mu' was written)."""


@overload(_step_block)
def _step_block_impl(mode, lo, hi, key, lam, mu, m, g, w, use_w, lam0, tau, h, n_over_s, up, skip, lam_out,
                     m_out, mu_out):
    if isinstance(mu, types.Array):                             # 'official' (mode 1)
        def official(mode, lo, hi, key, lam, mu, m, g, w, use_w, lam0, tau, h, n_over_s, up, skip, lam_out,
                     m_out, mu_out):
            return _official_block(lo, hi, key, lam, mu, m, g, w, use_w, lam0, tau, h, n_over_s, up, skip,
                                   lam_out, m_out, mu_out)
        return official

    def exact(mode, lo, hi, key, lam, mu, m, g, w, use_w, lam0, tau, h, n_over_s, up, skip, lam_out, m_out,
              mu_out):
        return _exact_block(mode == 2, lo, hi, key, lam, m, g, lam0, tau, h, up, skip, lam_out, m_out), False
    return exact


@njit(cache=True, error_model="numpy")
def _official_acc_block(lo, hi, key, lam, mu, g, w, use_w, tau, h, skip, acc, first):
    """One 'official' block of ``accumulate_kernel``: acc (+)= s*g, s without the factor N."""
    if _saturated(lam, lo, hi, tau, skip[0]):
        top = (ONE - ONE + h[3]) / tau
        for i in range(lo, hi):
            mi = mu[i]
            sg = (top / (ONE - mi * mi + h[3])) * g[i]
            acc[i] = sg if first else acc[i] + sg
    elif use_w:
        for i in range(lo, hi):
            wi = w[i]
            mi = mu[i]
            sg = ((ONE - wi * wi + h[3]) / tau / (ONE - mi * mi + h[3])) * g[i]
            acc[i] = sg if first else acc[i] + sg
    else:
        u = _block_uniforms(key, lo)
        for i in range(lo, hi):
            sg = _scale_official(lam[i], mu[i], _as(u[i - lo], lam[i]), tau, h) * g[i]
            acc[i] = sg if first else acc[i] + sg


@njit(cache=True, error_model="numpy")
def _exact_acc_block(clipped, lo, hi, key, lam, g, tau, h, skip, acc, first):
    """One 'exact' (``clipped``: 'exact-clipped') block of ``accumulate_kernel``: acc (+)= s*g."""
    if _flushes(lam, lo, hi, tau, h[0], skip[1]):
        for i in range(lo, hi):
            sg = ZERO * g[i]
            acc[i] = sg if first else acc[i] + sg
    else:
        u = _block_uniforms(key, lo)
        for i in range(lo, hi):
            s = _scale_exact(lam[i], _as(u[i - lo], lam[i]), tau, h)
            sg = (min(s, h[2]) if clipped else s) * g[i]
            acc[i] = sg if first else acc[i] + sg


def _acc_block(mode, lo, hi, key, lam, mu, g, w, use_w, tau, h, skip, acc, first):
    """One block of ``accumulate_kernel``."""


@overload(_acc_block)
def _acc_block_impl(mode, lo, hi, key, lam, mu, g, w, use_w, tau, h, skip, acc, first):
    if isinstance(mu, types.Array):                             # 'official' (mode 1)
        return lambda mode, lo, hi, key, lam, mu, g, w, use_w, tau, h, skip, acc, first: _official_acc_block(
            lo, hi, key, lam, mu, g, w, use_w, tau, h, skip, acc, first)
    return lambda mode, lo, hi, key, lam, mu, g, w, use_w, tau, h, skip, acc, first: _exact_acc_block(
        mode == 2, lo, hi, key, lam, g, tau, h, skip, acc, first)


@njit(cache=True, error_model="numpy")
def _relaxed_block(lo, hi, key, lam, tau, sat_bound, out):
    """One block of ``relaxed_kernel``: +-1 where every tanh(z) rounds to +-1 (written while
    that is counted, one pass), else tanh(z) from the block's u (overwriting the block)."""
    inv = ONE / tau * BOUND_SHRINK
    a0 = abs(lam[lo])
    if _w_is_sign(a0, inv, sat_bound):
        # _w_is_sign rises with |lam| (each rounded step does): the least |lam| decides the
        # block, unless one is NaN (its bits above inf's). Integer min/max reductions of the
        # bits, not a count of per-weight tests, which halved the loop's vector width.
        lo_b = hi_b = _bits(a0)
        for i in range(lo, hi):
            li = lam[i]
            b = _bits(abs(li))
            lo_b = min(lo_b, b)
            hi_b = max(hi_b, b)
            out[i] = math.copysign(ONE, li)
        if hi_b <= _bits(_as(INF, a0)) and _w_is_sign(_unbits(lo_b, a0), inv, sat_bound):
            return
    u = _block_uniforms(key, lo)
    z = np.empty(BLOCK, dtype=lam.dtype)
    sat_b = _bits(sat_bound)
    inf_b = _bits(_as(INF, sat_bound))
    lo_b, hi_b = inf_b, sat_b                      # the least and greatest bits of |z|
    for i in range(lo, hi):
        zi = _z(lam[i], _as(u[i - lo], lam[i]), tau)
        z[i - lo] = zi
        out[i] = math.copysign(ONE, zi)
        b = _bits(abs(zi))
        lo_b = min(lo_b, b)
        hi_b = max(hi_b, b)
    if lo_b < sat_b or hi_b > inf_b:               # some |z| < sat_bound, or a NaN
        _tanh_unsaturated(hi - lo, z, sat_b, inf_b, out[lo:hi])


@njit(cache=True, error_model="numpy", inline="always")
def _tanh_unsaturated(n, z, sat_b, inf_b, out):
    """out[j] = tanh(z[j]) where |z[j]| < sat_bound or z[j] is NaN (bits of |z| below ``sat_b`` or
    above ``inf_b``), in groups of 32 that are skipped when every |z| in them saturates."""
    for c in range(0, np.int64(n), 32):
        e = min(c + 32, np.int64(n))
        lo_b, hi_b = inf_b, sat_b
        for j in range(c, e):
            b = _bits(abs(z[j]))
            lo_b = min(lo_b, b)
            hi_b = max(hi_b, b)
        if lo_b < sat_b or hi_b > inf_b:
            for j in range(c, e):
                b = _bits(abs(z[j]))
                if b < sat_b or b > inf_b:
                    out[j] = _tanh(z[j])


# -- kernels: each compiled parallel (large arrays) and serial (small, see _twins) ---------


def relaxed_kernel(key, lam, tau, sat_bound, out):
    """out = tanh((lam + delta)/tau), u from ``key`` = (k0, k1, step, sample, param id)."""
    n = lam.size
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo, hi = _block_range(b, n)
        _relaxed_block(lo, hi, key, lam, tau, sat_bound, out)


def step_kernel(mode, key, lam, mu, m, g, w, use_w, lam0, tau, h, n_over_s, up, skip, lam_out, m_out, mu_out):
    """The S = 1 step of every numerics; mu_out = tanh(lam) unless None ('official' only);
    with ``use_w`` the 'official' scale takes w_r from ``w`` (the pass's forward weights, the
    same bits) instead of remaking it from u. Returns the number of non-finite lam'.

    The numerics are mu's type and ``mode`` together: mu an array for 'official' (mode 1) and
    a scalar for 'exact' (0) and 'exact-clipped' (2), as ``step_fused`` passes them; the block
    is chosen from mu's type when the kernel compiles, so another pairing runs the numerics
    of mu's type."""
    n = lam.size
    bad = 0
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo, hi = _block_range(b, n)
        nonfinite, mu_done = _step_block(mode, lo, hi, key, lam, mu, m, g, w, use_w, lam0, tau, h, n_over_s,
                                         up, skip, lam_out, m_out, mu_out)
        bad += nonfinite
        if mu_out is not None and not mu_done:
            _tanh_block(lo, hi, lam, mu_out, skip[0])
    return bad


def accumulate_kernel(mode, key, lam, mu, g, w, use_w, tau, h, skip, acc, first):
    """acc = s*g (first sample) or acc + s*g; u of the key's sample (or w_r from ``w``, as in
    ``step_kernel``, whose pairing of mu's type and ``mode`` this kernel shares)."""
    n = lam.size
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo, hi = _block_range(b, n)
        _acc_block(mode, lo, hi, key, lam, mu, g, w, use_w, tau, h, skip, acc, first)


def finish_kernel(lam, m, acc, mul, div, lam0, up, sat, lam_out, m_out, mu_out):
    """The natural update from g_hat = acc*mul/div (S > 1: the accumulated s*g; S = 0:
    acc = g, mul = N); mu_out = tanh(lam) unless None. Returns the number of non-finite lam'."""
    n = lam.size
    bad = 0
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo, hi = _block_range(b, n)
        for i in range(lo, hi):
            ln, mn = _natural(_at(m, i), acc[i] * mul / div, lam[i], _at(lam0, i), up)
            lam_out[i] = ln
            _put(m_out, i, mn)
        if mu_out is not None:
            _tanh_block(lo, hi, lam, mu_out, sat)
        bad += _count_nonfinite(lo, hi, lam_out)
    return bad


def scale_official_kernel(lam, mu, u, tau, h, n_factor, out):
    """out = ``concrete_scale`` 'official' (the ratio times ``n_factor``, N), for given u."""
    for i in prange(lam.size):
        out[i] = _scale_official(lam[i], mu[i], u[i], tau, h) * n_factor


def scale_exact_kernel(clipped, lam, u, tau, h, out):
    """out = ``concrete_scale`` 'exact' (``clipped``: 'exact-clipped'), for given u. A kernel of
    its own, as the official one: each compiles one formula."""
    for i in prange(lam.size):
        s = _scale_exact(lam[i], u[i], tau, h)
        out[i] = min(s, h[2]) if clipped else s


def _twins(fn):
    """(parallel, serial) builds of a kernel. The serial one is compiled from a copy named
    ``<name>_serial``, so that Numba's cache (keyed by name and code) keeps both."""
    serial = types_mod.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__)
    serial.__qualname__ = fn.__qualname__ + "_serial"
    opts = dict(cache=True, error_model="numpy")
    return njit(parallel=True, **opts)(fn), njit(**opts)(serial)


KERNELS = {"relaxed_kernel": _twins(relaxed_kernel), "step_kernel": _twins(step_kernel),
           "scale_official_kernel": _twins(scale_official_kernel), "scale_exact_kernel": _twins(scale_exact_kernel),
           "accumulate_kernel": _twins(accumulate_kernel), "finish_kernel": _twins(finish_kernel)}


# -- calls from ``BayesBiNN``: flat views of C-order arrays, outputs from the optimizer's pool --


@functools.lru_cache(maxsize=1024)
def kernel_key(key, sample, name):
    """The words a kernel needs for one parameter and sample: (k0, k1, step, sample, crc32(name)).

    Cached (a step asks for each parameter's words twice: ``forward_params`` and ``update``).

    Parameters
    ----------
    key : refbinn.noise.NoiseKey
    sample : int
    name : str

    Returns
    -------
    tuple of 5 numpy.uint64
    """
    u64 = np.uint64
    return (u64(key.seed & _M32), u64(key.seed >> 32), u64(key.step), u64(sample), u64(param_id(name)))


def _pick(dt, name, n):
    """The kernel ``name`` (either dtype): the parallel build, or the serial one below SERIAL_BELOW."""
    pair = KERNELS[name]
    return pair[1] if n < SERIAL_BELOW else pair[0]


def relaxed_fused(pool, lam, key, sample, name, tau):
    """``relaxed_sample(lam, uniform(key, sample, name, ...), tau)``, u made in registers.

    Parameters
    ----------
    pool : ArrayPool
    lam : ndarray, any shape, float32 or float64, C-contiguous
    key : refbinn.noise.NoiseKey
    sample : int
        The Monte Carlo sample j.
    name : str
        The parameter's name.
    tau : float > 0

    Returns
    -------
    ndarray, shape and dtype of ``lam``, values in [-1, 1]
    """
    w = pool.empty_like(lam)
    _pick(lam.dtype, "relaxed_kernel", lam.size)(kernel_key(key, sample, name), lam.reshape(-1),
                                                 *_relaxed_constants(lam.dtype, tau), w.reshape(-1))
    return w


@functools.lru_cache(maxsize=256)
def _relaxed_constants(dt, tau):
    """(tau, tanh saturation) in the dtype, for ``relaxed_kernel`` (cached; tau > 0)."""
    return dt.type(tau), dt.type(TANH_SAT[dt])


def concrete_scale_fused(lam, u, tau, N, numerics, mu=None):
    """``concrete_scale(lam, u, tau, N, numerics, mu)`` in a kernel: the same bits (for the
    diagnostics, which need s itself; the training step never stores it).

    Parameters
    ----------
    lam, u : ndarray, same shape, float32 or float64, C-contiguous
    tau, N : float > 0
    numerics : {'exact', 'official', 'exact-clipped'}
    mu : ndarray of lam's shape, optional ('official': the stored mean; default tanh(lam))

    Returns
    -------
    ndarray of lam's shape and dtype
    """
    dt = lam.dtype
    T = dt.type
    official = numerics == OFFICIAL
    if official and mu is None:
        mu = tanh_(lam)
    out = np.empty_like(lam)
    u = np.ascontiguousarray(u, dtype=dt).reshape(-1)
    if official:                                                 # as step_numpy: N after the ratio
        _pick(dt, "scale_official_kernel", lam.size)(lam.reshape(-1), np.ascontiguousarray(mu, dtype=dt).reshape(-1),
                                                     u, T(tau), _hyper(dt, 1.0, tau, numerics), T(N), out.reshape(-1))
    else:
        _pick(dt, "scale_exact_kernel", lam.size)(numerics == EXACT_CLIPPED, lam.reshape(-1), u, T(tau),
                                                  _hyper(dt, N, tau, numerics), out.reshape(-1))
    return out


def _hyper(dt, N, tau, numerics):
    """(log(N/tau), cap, N/tau, eps) in the dtype, the constants of ``concrete_scale``."""
    t = dt.type
    return (t(log_ratio(N, tau)), t(scale_cap(dt)), t(N / tau), t(1e-10))


@functools.lru_cache(maxsize=256)
def _step_constants(dt, N, tau, numerics):
    """What ``step_fused`` passes to every kernel call, in the dtype: (tau, N, h = ``_hyper``,
    skip = (tanh saturation, exp flush)). Cached: the same for every parameter and step
    (N and tau are > 0, so equal keys give equal values; -0.0 == 0.0 cannot arise)."""
    T = dt.type
    return T(tau), T(N), _hyper(dt, N, tau, numerics), (T(TANH_SAT[dt]), T(EXP_ZERO[dt]))


def step_fused(pool, name, lam, m, mu, gs, key, lam0, lr, beta, reweight, tau, N, numerics, t, ws=None):
    """``step_numpy`` in the fused kernels, u regenerated from ``key``: one pass for S <= 1;
    for S > 1 one accumulating pass per sample, then the step.

    Parameters
    ----------
    pool : ArrayPool
    name : str
        The parameter's name (its crc32 is in the noise counter).
    lam : ndarray, float32 or float64, C-contiguous
    m : ndarray of lam's shape and dtype, or None (beta = 0: not read, m' not written)
    mu : ndarray of lam's shape and dtype, or None ('exact': not read, mu' not written)
    gs : list of S ndarrays (one for S = 0), lam's shape and dtype, C-contiguous
    key : refbinn.noise.NoiseKey, or None for S = 0
    lam0 : ndarray, scalar or shape of ``lam``, dtype of ``lam``
    lr, beta, reweight, tau, N : float
    numerics : {'exact', 'official', 'exact-clipped'}
    t : int >= 1
        The step count (bias correction 1 - beta**t).
    ws : list of S ndarrays of lam's shape and dtype, C-contiguous, optional
        Each pass's forward weights w_r (``relaxed_fused`` of the same key): 'official' then
        reads w_r instead of remaking u, log and tanh (the same bits; cheaper everywhere:
        a saturated block reads neither).

    Returns
    -------
    (lam', m', mu') : pooled arrays of lam's shape (m' None when beta = 0, mu' None unless
    'official'); lam' is None if it came out non-finite
    """
    dt = lam.dtype
    T = dt.type
    flat = lambda a: a.reshape(-1)                                # views: all C-contiguous
    official = numerics == OFFICIAL
    lam0 = flat(np.ascontiguousarray(lam0, dtype=dt)) if np.ndim(lam0) else T(lam0)
    m_in = flat(m) if beta != 0 else T(0)                          # beta = 0: m is not read
    bc = None if beta == 0 else T(1 - beta ** t)                   # None: no division by 1
    up = (T(lr), T(beta), T(1 - beta), T(reweight), bc)
    tau_t, n_t, h, skip = _step_constants(dt, N, tau, numerics)
    lam_out = pool.empty_like(lam)
    m_out = pool.empty_like(lam) if beta != 0 else None
    mu_out = pool.empty_like(lam) if official else None
    outs = (flat(lam_out), None if m_out is None else flat(m_out), None if mu_out is None else flat(mu_out))
    mu_in = flat(mu) if official else T(0)
    mu_sat = skip[0]
    n = lam.size
    use_w = official and ws is not None
    w_in = [flat(w) for w in ws] if use_w else [flat(lam)] * len(gs)   # lam: a placeholder, not read
    if key is None:                                                # S = 0: g_hat = N*g
        bad = _pick(dt, "finish_kernel", n)(flat(lam), m_in, flat(gs[0]), n_t, T(1), lam0, up, mu_sat,
                                            *outs)
    elif len(gs) == 1:
        bad = _pick(dt, "step_kernel", n)(MODES[numerics], kernel_key(key, 0, name), flat(lam), mu_in,
                                          m_in, flat(gs[0]), w_in[0], use_w, lam0, tau_t, h, n_t, up,
                                          skip, *outs)
    else:                                                          # S > 1: accumulate, then step
        acc = pool.empty_like(lam)
        for j, g in enumerate(gs):
            _pick(dt, "accumulate_kernel", n)(MODES[numerics], kernel_key(key, j, name), flat(lam), mu_in,
                                              flat(g), w_in[j], use_w, tau_t, h, skip, flat(acc), j == 0)
        mul, div = (T(N / len(gs)), T(1)) if official else (T(1), T(len(gs)))
        bad = _pick(dt, "finish_kernel", n)(flat(lam), m_in, flat(acc), mul, div, lam0, up, mu_sat,
                                            *outs)
    return (None if bad else lam_out), m_out, mu_out
