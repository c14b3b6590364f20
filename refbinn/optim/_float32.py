"""Float32 building blocks of the Numba kernels: bit casts, constants, and exp/log/tanh
written so that LLVM vectorises them.

Why hand-written: the pip builds of llvmlite carry no SVML, so Numba turns ``math.exp``
into one scalar libm call per element and the loop does not vectorise (about 15 ms per
10M elements per function on 2 cores). The functions below are plain arithmetic (range
reduction and a truncated Taylor series whose error is below float32 rounding), within
3 ulp, and LLVM vectorises them for whatever the host has (SSE2, AVX2, AVX-512).

- ``inline="always"``: Numba compiles a function with a status-code return, and LLVM
  declines to inline the larger ones, leaving a call per element.
- ``error_model="numpy"``: Python's error model checks every division for a zero
  divisor, and that branch alone stops vectorisation.
- No fastmath: the official numerics must round like the authors' float32 code, and
  the finiteness counts must see NaN/inf.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

f32 = np.float32
i32 = np.int32
i64 = np.int64
u64 = np.uint64


# -- bit casts (LLVM bitcast: free, and vectorisable) ----------------------------
@intrinsic
def bits_of(typingctx, x):
    """The int32 whose bits are the float32 ``x``."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int32))
    return types.int32(types.float32), codegen


@intrinsic
def float_of(typingctx, i):
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
ZERO, HALF, ONE, TWO = f32(0.0), f32(0.5), f32(1.0), f32(2.0)

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
    two_k = float_of((ki + i32(127) - (i32(1) if top else i32(0))) << i32(23))
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
    bits = bits_of(xs)
    e = i32(((bits >> i32(23)) & i32(0xFF)) - i32(127) - (i32(23) if sub else i32(0)))
    m = float_of((bits & i32(0x007FFFFF)) | i32(0x3F800000))   # mantissa in [1, 2)
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
def tanh32_large(x):
    """``tanh32(x)`` for |x| >= 0.5 (or NaN), where tanh32 takes its second branch: the same
    operations, without the series that the vectorised tanh32 also evaluates for every element
    (about 30% of its cost)."""
    y = min(TWO * abs(x), f32(40.0))
    q = TWO / (exp32(y) + ONE)
    return math.copysign(ONE - q, x)

