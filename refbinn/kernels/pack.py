"""Bit packing of signs: 64 values of +-1 per uint64 word, along the reduction axis.

Convention (used by every kernel in this package, and by the NumPy twins)::

    bit = 1  <=>  sign(x) = -1  <=>  not (x >= 0)        (0 -> +1, NaN -> -1)
    element k of a row goes to word k // 64, bit k % 64   (little-endian bits)
    bits past the end of a row (k >= K) are 0

so ``words[..., w] = sum_b [not x[..., 64 w + b] >= 0] << b``. With this
convention the dot product of two packed +-1 rows of length K is
``K - 2 * popcount(a ^ b)``: agreeing bits give +1, differing bits -1, and the
padding bits are 0 in both rows, so they never differ and drop out (the
constant is the true K, not 64 Kw).

``sign`` here is ``refbinn.nn.sign`` (exact zeros map to +1). Packing a
real array therefore binarises it and packs in one pass.

Two layouts are provided:

* ``pack_signs(x)``: along the last axis of any array, ``(..., K) -> (..., Kw)``
  with ``Kw = ceil(K / 64)``; this packs Dense inputs and weights.
* ``pack_channels(x)``: an NCHW image batch along its channels,
  ``(N, C, H, W) -> (N, H, W, Cw)``, i.e. NHWC words so that one pixel's
  channels are contiguous for the binary convolution's im2col.

The compare-to-mask step is an LLVM vector compare (``vcmpps`` into a mask
register on AVX-512), so packing costs a few cycles per 64 values.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from ..checks import check_real, is_integer
from .popcount import I64, element_pointer, splat, u64x8, vlane, vzeros

_NATIVE = (np.float32, np.float64, np.int8, np.int16, np.int32, np.int64)


def _negative(builder, vec, dtype):
    """Lane mask of ``not (v >= 0)``: negative or NaN for floats, negative for ints."""
    zero = ir.Constant(vec.type, None)
    if isinstance(dtype, types.Float):
        return builder.fcmp_unordered("<", vec, zero)           # ult: true for NaN too
    return builder.icmp_signed("<", vec, zero)


def _native_array(ary):
    return isinstance(ary, types.Array) and isinstance(ary.dtype, (types.Float, types.Integer)) \
        and (isinstance(ary.dtype, types.Float) or ary.dtype.signed)


@intrinsic
def _sign_word(typingctx, ary, index):
    """sum_b [not ary.flat[index + b] >= 0] << b for b < 64, as one uint64."""
    if not _native_array(ary):
        return None

    def codegen(context, builder, sig, args):
        elt = context.get_value_type(sig.args[0].dtype)
        vty = ir.VectorType(elt, 64)
        vec = builder.load(element_pointer(context, builder, sig.args[0], args[0], args[1], vty),
                           align=sig.args[0].dtype.bitwidth // 8)
        return builder.bitcast(_negative(builder, vec, sig.args[0].dtype), I64)   # lane b -> bit b
    return types.uint64(ary, index), codegen


@intrinsic
def _or_sign_bits8(typingctx, acc, ary, index, bit):
    """acc | (bit if not ary.flat[index + l] >= 0 else 0), for the 8 lanes l."""
    if not _native_array(ary):
        return None

    def codegen(context, builder, sig, args):
        elt = context.get_value_type(sig.args[1].dtype)
        vty = ir.VectorType(elt, 8)
        vec = builder.load(element_pointer(context, builder, sig.args[1], args[1], args[2], vty),
                           align=sig.args[1].dtype.bitwidth // 8)
        bits = splat(builder, args[3], args[0].type)
        picked = builder.select(_negative(builder, vec, sig.args[1].dtype), bits,
                                ir.Constant(args[0].type, None))
        return builder.or_(args[0], picked)
    return u64x8(u64x8, ary, index, types.uint64), codegen


@njit(cache=True)
def _sign_bit(v):
    return np.uint64(0) if v >= 0 else np.uint64(1)


@njit(cache=True, parallel=True)
def _pack_rows(x2, out):
    M, K = x2.shape
    full = K // 64                                    # words with 64 real bits
    flat = x2.ravel()
    for i in prange(M):
        base = i * K
        for w in range(full):
            out[i, w] = _sign_word(flat, base + 64 * w)
        if full < out.shape[1]:
            word = np.uint64(0)
            for b in range(K - 64 * full):
                word |= _sign_bit(flat[base + 64 * full + b]) << np.uint64(b)
            out[i, full] = word


@njit(cache=True)
def _pack_pixel(flat, base, P, c0, c1):
    """sum_c [not flat[base + c P] >= 0] << (c - c0) for c0 <= c < c1: one word, one pixel."""
    word = np.uint64(0)
    for c in range(c0, c1):
        word |= _sign_bit(flat[base + c * P]) << np.uint64(c - c0)
    return word


@njit(cache=True, parallel=True)
def _pack_channels_kernel(x3, out):
    """out[n, p, g] = the signs of x3[n, 64 g : 64 g + 64, p] packed into one word (bit 1 = -1).

    The parallel kernel behind ``pack_channels``.

    Parameters
    ----------
    x3 : ndarray, (N, C, P), a native real dtype
        P = H*W pixels.
    out : ndarray, uint64, (N, P, ceil(C / 64))
        Written in place.

    Returns
    -------
    None
    """
    # One work item packs one 64-channel group for 16 consecutive pixels: 16 words built in
    # two registers.
    N, C, P = x3.shape
    Cw = out.shape[2]
    nblk = (P + 15) // 16
    flat = x3.ravel()
    for q in prange(N * Cw * nblk):
        n = q // (Cw * nblk)
        g = (q // nblk) % Cw
        p0 = (q % nblk) * 16
        c0 = 64 * g
        c1 = min(C, c0 + 64)
        base = n * C * P + p0
        if p0 + 16 <= P:
            lo = vzeros()
            hi = vzeros()
            for c in range(c0, c1):
                bit = np.uint64(1) << np.uint64(c - c0)
                lo = _or_sign_bits8(lo, flat, base + c * P, bit)
                hi = _or_sign_bits8(hi, flat, base + c * P + 8, bit)
            for lane in range(8):
                out[n, p0 + lane, g] = vlane(lo, lane)
                out[n, p0 + 8 + lane, g] = vlane(hi, lane)
        else:                                   # the last, partial block
            for p in range(p0, P):
                out[n, p, g] = _pack_pixel(flat, base + p - p0, P, c0, c1)


@njit(cache=True, parallel=True)
def _unpack_rows(words, out):
    M, K = out.shape
    for i in prange(M):
        for k in range(K):
            bit = (words[i, k // 64] >> np.uint64(k % 64)) & np.uint64(1)
            out[i, k] = 1 - 2 * np.int64(bit)


def as_native(x):
    """x as an array whose dtype the packing kernels compile for, signs kept exactly.

    Parameters
    ----------
    x : array-like, real (bool, integer or float)

    Returns
    -------
    ndarray
        ``x`` itself when its dtype is native to the kernels, else float64.

    Raises
    ------
    ValueError
        ``x`` is not real (complex, object, strings).
    """
    x = np.asarray(x)
    check_real("pack: x", x)
    if x.dtype.type not in _NATIVE:
        x = x.astype(np.float64)       # bool, unsigned, float16: signs are kept exactly
    return x


def n_words(k):
    """ceil(k / 64): the number of uint64 words holding k bits.

    Parameters
    ----------
    k : int, >= 0

    Returns
    -------
    int
    """
    return (int(k) + 63) // 64


def pack_signs(x):
    """words[..., w] = sum_b [not x[..., 64 w + b] >= 0] << b: signs packed along the last axis.

    Parameters
    ----------
    x : ndarray, shape (..., K), real dtype, K >= 1
        +-1 values or reals (binarised with ``refbinn.nn.sign``: 0 -> +1).

    Returns
    -------
    ndarray of uint64, shape (..., ceil(K / 64))
        Bit 1 = -1, bit 0 = +1, little-endian within a word, padding bits 0.
    """
    x = as_native(x)
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"pack_signs: x must have a last axis of size >= 1, got shape {x.shape}")
    K = x.shape[-1]
    x2 = np.ascontiguousarray(x.reshape(-1, K))                # (M, K)
    out = np.empty((x2.shape[0], n_words(K)), np.uint64)       # (M, Kw)
    _pack_rows(x2, out)
    return out.reshape(x.shape[:-1] + (out.shape[1],))


def unpack_signs(words, k, dtype=np.float32):
    """x[..., k] = 1 - 2 * ((words[..., k // 64] >> (k % 64)) & 1): the inverse of ``pack_signs``.

    Parameters
    ----------
    words : ndarray of uint64, shape (..., Kw)
    k : int
        Number of values per row, ``64 * (Kw - 1) < k <= 64 * Kw``.
    dtype : dtype of the result (float32 by default): float32, float64 or a signed integer.

    Returns
    -------
    ndarray, shape (..., k), values in {-1, +1}
    """
    words = np.asarray(words)
    if words.dtype != np.uint64 or words.ndim < 1:
        raise ValueError(f"unpack_signs: words must be a uint64 array with ndim >= 1, "
                         f"got {words.dtype} with shape {words.shape}")
    if np.dtype(dtype).type not in _NATIVE:          # unsigned and bool cannot hold -1
        raise ValueError(f"unpack_signs: dtype must be float32, float64 or a signed integer, "
                         f"got {np.dtype(dtype)}")
    if not (is_integer(k) and 64 * (words.shape[-1] - 1) < k <= 64 * words.shape[-1]):
        raise ValueError(f"unpack_signs: k must be in ({64 * (words.shape[-1] - 1)}, "
                         f"{64 * words.shape[-1]}] for {words.shape[-1]} words, an integer, got {k!r}")
    k = int(k)
    w2 = np.ascontiguousarray(words.reshape(-1, words.shape[-1]))   # (M, Kw)
    out = np.empty((w2.shape[0], k), dtype)                          # (M, K)
    _unpack_rows(w2, out)
    return out.reshape(words.shape[:-1] + (k,))


def pack_channels(x):
    """words[n, h, w, g] = sum_b [not x[n, 64 g + b, h, w] >= 0] << b: NCHW signs packed along C.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), real dtype

    Returns
    -------
    ndarray of uint64, shape (N, H, W, ceil(C / 64)): NHWC words, padding bits 0.
    """
    x = as_native(x)
    if x.ndim != 4 or min(x.shape[1:]) < 1:
        raise ValueError(f"pack_channels: x must have shape (N, C, H, W) with C, H, W >= 1, "
                         f"got {x.shape}")
    N, C, H, W = x.shape
    x3 = np.ascontiguousarray(x).reshape(N, C, H * W)               # (N, C, P)
    out = np.empty((N, H * W, n_words(C)), np.uint64)               # (N, P, Cw)
    _pack_channels_kernel(x3, out)
    return out.reshape(N, H, W, out.shape[2])
