"""exp, log and tanh of the BayesBiNN equations: the same bits in the NumPy reference and the kernels.

The reference (``_bayesbinn_math.py``) and the fused kernels (``_bayesbinn_kernels.py``) call
the functions here, so that they give bit-identical lam (tests/test_bayesbinn_fused.py):

- float32: the hand-written ``exp32``, ``log32``, ``tanh32`` of ``_float32.py`` (within 3 ulp;
  why hand-written is said there), written out below as NumPy array operations in the same
  order. Every + - * / is one correctly rounded IEEE operation in both, the kernels are
  compiled without fastmath (so LLVM neither contracts to FMA nor reassociates), and the
  bit casts are views: the two agree bit for bit.
- float64: the C library's exp, log and tanh, which CPython's ``math`` module and Numba's
  ``math`` functions call; here as Numba ufuncs, so that the reference and the kernels call
  the same code (NumPy's own float64 ufuncs are SIMD approximations that differ from it,
  and between CPUs, in the last bit).

A port that wants the same bits uses the same functions (public as ``refbinn.elementary``,
whose docstring gives the float32 recipe); one that accepts a few ulp uses its framework's
exp/log/tanh (refbinn check-trace compares with a tolerance).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ._float32 import (A3, A5, A7, A9, C2, C3, C4, C5, C6, C7, C8, C9, C10, EXP_OVER, EXP_UNDER, HALF,
                       INF, LN2_HI, LN2_LO, LOG2E, NAN, ONE, SQRT2, TINY, TWO, TWO23, ZERO)

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)


# -- float64: the C library's functions -----------------------------------------------
def _exp64(x):
    """math.exp (the C library's exp)."""
    return math.exp(x)


def _log64(x):
    """math.log (the C library's log); log 0 = -inf, log(x < 0) = nan."""
    if x < 0.0:
        return math.nan
    if x == 0.0:
        return -math.inf
    return math.log(x)


def _tanh64(x):
    """math.tanh (the C library's tanh)."""
    return math.tanh(x)


@functools.cache
def c_ufuncs():
    """(exp64, log64, tanh64): ``_exp64``, ``_log64``, ``_tanh64`` as float64 Numba ufuncs,
    built (or loaded from Numba's cache) on first use, not at import, which a command that
    never runs the float64 reference does not pay: ``refbinn --help`` 1.0 -> 0.5 s."""
    from numba import vectorize
    ufunc = vectorize(["float64(float64)"], cache=True)
    return ufunc(_exp64), ufunc(_log64), ufunc(_tanh64)


def exp64(x):
    """math.exp (the C library's exp), elementwise."""
    return c_ufuncs()[0](x)


def log64(x):
    """math.log (the C library's log), elementwise; log 0 = -inf, log(x < 0) = nan."""
    return c_ufuncs()[1](x)


def tanh64(x):
    """math.tanh (the C library's tanh), elementwise."""
    return c_ufuncs()[2](x)


# -- float32: _float32.exp32 / log32 / tanh32 in NumPy ------------------------------
def _float_of(i):
    return np.asarray(i, dtype=np.int32).view(np.float32)


def exp32_np(x):
    """``_float32.exp32`` on a float32 array: x = k*ln2 + r, e**x = 2**k * e**r (Taylor to r**7)."""
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        xc = np.minimum(np.maximum(x, EXP_UNDER), EXP_OVER)
        k = np.floor(xc * LOG2E + HALF)
        r = (xc - k * LN2_HI) - k * LN2_LO
        p = ONE + r * (ONE + r * (C2 + r * (C3 + r * (C4 + r * (C5 + r * (C6 + r * C7))))))
        ki = np.where(np.isnan(k), 0, k).astype(np.int32)
        top = ki > 127
        two_k = _float_of((ki + np.int32(127) - top.astype(np.int32)) << np.int32(23))
        y = p * two_k
        y = np.where(top, y * TWO, y)
    y = np.where(x < EXP_UNDER, ZERO, y)
    y = np.where(x > EXP_OVER, INF, y)
    return np.where(np.isnan(x), x, y).astype(np.float32, copy=False)


def log32_np(x):
    """``_float32.log32`` on a float32 array: x = 2**e * m, log m = 2*atanh((m-1)/(m+1)) (series to s**9)."""
    x = np.asarray(x, dtype=np.float32)
    sub = x < TINY
    xs = np.where(sub, x * TWO23, x).astype(np.float32, copy=False)
    bits = xs.view(np.int32)
    e = ((bits >> np.int32(23)) & np.int32(0xFF)) - np.int32(127) - np.where(sub, np.int32(23), np.int32(0))
    m = _float_of((bits & np.int32(0x007FFFFF)) | np.int32(0x3F800000))
    big = m > SQRT2
    m = np.where(big, m * HALF, m)
    e = np.where(big, e + np.int32(1), e)
    f = m - ONE
    s = f / (TWO + f)
    s2 = s * s
    p = TWO * s + TWO * s * s2 * (A3 + s2 * (A5 + s2 * (A7 + s2 * A9)))
    ef = e.astype(np.float32)
    y = ef * LN2_HI + (ef * LN2_LO + p)
    y = np.where(x == ZERO, -INF, y)
    y = np.where(x < ZERO, NAN, y)
    y = np.where(x == INF, INF, y)
    return np.where(np.isnan(x), x, y).astype(np.float32, copy=False)


def tanh32_np(x):
    """``_float32.tanh32`` on a float32 array: t/(t+2), t = expm1(2|x|) below 2|x| = 1; 1 - 2/(e**2|x| + 1) above."""
    x = np.asarray(x, dtype=np.float32)
    y = np.minimum(TWO * np.abs(x), np.float32(40.0))
    t = y * (ONE + y * (C2 + y * (C3 + y * (C4 + y * (C5 + y * (C6 + y * (C7 + y * (C8 + y * (
        C9 + y * C10)))))))))
    small = y < ONE
    with np.errstate(invalid="ignore", over="ignore"):
        q = np.where(small, t, TWO) / np.where(small, t + TWO, exp32_np(y) + ONE)
    return np.copysign(np.where(small, q, ONE - q), x).astype(np.float32, copy=False)


# -- the dispatch the reference equations call ---------------------------------------
def _pick(x, f32, f64, name):
    x = np.asarray(x)
    if x.dtype == F32:
        return f32(x)
    if x.dtype == F64:
        return np.asarray(f64(x))
    raise ValueError(f"{name}: dtype must be float32 or float64, got {x.dtype}")


def exp_(x):
    """e**x in the dtype of x (float32: ``exp32``; float64: the C library's exp).

    Parameters
    ----------
    x : ndarray or scalar, float32 or float64

    Returns
    -------
    ndarray or NumPy scalar, shape and dtype of ``x`` (ValueError for another dtype)
    """
    return _pick(x, exp32_np, exp64, "exp")


def log_(x):
    """log x in the dtype of x (float32: ``log32``; float64: the C library's log).

    Parameters
    ----------
    x : ndarray or scalar, float32 or float64

    Returns
    -------
    ndarray or NumPy scalar, shape and dtype of ``x`` (ValueError for another dtype)
    """
    return _pick(x, log32_np, log64, "log")


def tanh_(x):
    """tanh x in the dtype of x (float32: ``tanh32``; float64: the C library's tanh).

    Parameters
    ----------
    x : ndarray or scalar, float32 or float64

    Returns
    -------
    ndarray or NumPy scalar, shape and dtype of ``x`` (ValueError for another dtype)
    """
    return _pick(x, tanh32_np, tanh64, "tanh")
