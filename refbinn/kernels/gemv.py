"""Real activations times packed +-1 weights: y[m, n] = sum_k x[m, k] w[n, k] = total[m] - 2 h[m, n].

With ``w[n, k] = 1 - 2 bit[n, k]`` (bits from ``pack_signs``)::

    y[m, n] = sum_k x[m, k] - 2 * sum_{k : bit[n, k] = 1} x[m, k] = total[m] - 2 h[m, n]

so the weights stay packed (32x less memory than float32: a 4096 x 8192
layer is 4 MiB instead of 128 MiB) and the inner step is a masked add:
16 bits of a weight word are the mask of one 16-lane float add
(``vaddps`` with a mask register on AVX-512), no unpacking to floats.

Summation order (fixed, so the NumPy twin reproduces every bit; no fast-math)::

    part[j] = sum over words w in order of x[64 w + j] where bit = 1   (j < 64, float32)
    v[l]    = ((part[l] + part[16 + l]) + part[32 + l]) + part[48 + l]  (l < 16)
    h       = sum of v by halving: v8 = v[:8] + v[8:], v4 = v8[:4] + v8[4:],
              v2 = v4[:2] + v4[2:], h = v2[0] + v2[1]
    total   = the same with every bit set, x zero-padded to 64 Kw
    y       = total - 2 h                                              (float32)

This is the kernel for batch-1 layers (GEMV), where a float weight does not
fit in cache and streaming it dominates (4096 x 8192: ~10x faster than numpy's
float32 GEMV here), and wherever weight memory matters. For large batches it
is compute-bound: a masked add does 16 MACs per instruction, like an FMA, but
each 16-bit mask also costs a mask-register move on the same ports, so it
measured about half of OpenBLAS's float32 GEMM on the unpacked weight; a
batched real-valued layer is faster through BLAS if memory allows.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, models, register_model

from .popcount import I32, element_pointer

_F32 = ir.FloatType()
_V16F = ir.VectorType(_F32, 16)
_I16 = ir.IntType(16)

ROWS = 4     # weight rows per tile
BLOCK = 16   # rows of x per work item (they stay in L2 while all weight tiles pass)


class F32x16Type(types.Type):
    """Numba type of an LLVM ``<16 x float>`` value (one AVX-512 register)."""

    def __init__(self):
        super().__init__(name="f32x16")


f32x16 = F32x16Type()


@register_model(F32x16Type)
class _F32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _V16F)


@intrinsic
def fzeros(typingctx):
    """The zero vector of 16 float32 lanes.

    Numba intrinsic: callable only inside ``njit`` code; ``typingctx`` is Numba's.

    Returns
    -------
    f32x16
    """
    def codegen(context, builder, sig, args):
        return ir.Constant(_V16F, None)
    return f32x16(), codegen


@intrinsic
def fload(typingctx, ary, index):
    """ary.flat[index : index + 16] of a float32 array (no bounds check).

    Numba intrinsic: callable only inside ``njit`` code; ``typingctx`` is Numba's.

    Parameters
    ----------
    ary : float32 array, C-contiguous
    index : int
        Flat index of the first lane.

    Returns
    -------
    f32x16
    """
    if not (isinstance(ary, types.Array) and ary.dtype == types.float32):
        return None

    def codegen(context, builder, sig, args):
        return builder.load(element_pointer(context, builder, sig.args[0], args[0], args[1], _V16F),
                            align=4)
    return f32x16(ary, index), codegen


@intrinsic
def fadd(typingctx, acc, x):
    """acc + x, lane by lane.

    Numba intrinsic: callable only inside ``njit`` code; ``typingctx`` is Numba's.

    Parameters
    ----------
    acc, x : f32x16

    Returns
    -------
    f32x16
    """
    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])
    return f32x16(f32x16, f32x16), codegen


@intrinsic
def fmask_add(typingctx, acc, x, words, half):
    """acc + x in the lanes l where bit 16 * (half % 4) + l of words.flat[half // 4] is 1, else acc.

    Numba intrinsic: callable only inside ``njit`` code; ``typingctx`` is Numba's.

    Parameters
    ----------
    acc, x : f32x16
    words : uint64 array, C-contiguous
        Packed weight bits.
    half : int
        Index of the 16-bit mask among the array's 16-bit pieces (4 per word).

    Returns
    -------
    f32x16
    """
    if not (isinstance(words, types.Array) and words.dtype == types.uint64):
        return None

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[2])(context, builder, args[2]).data
        ptr = builder.gep(builder.bitcast(data, _I16.as_pointer()), [args[3]])
        mask = builder.bitcast(builder.load(ptr, align=2), ir.VectorType(ir.IntType(1), 16))
        return builder.select(mask, builder.fadd(args[0], args[1]), args[0])
    return f32x16(f32x16, f32x16, words, half), codegen


@intrinsic
def fhsum4(typingctx, a0, a1, a2, a3):
    """v = ((a0 + a1) + a2) + a3, then its 16 lanes by halving: v[:8] + v[8:], ..., s[0] + s[1].

    Numba intrinsic: callable only inside ``njit`` code; ``typingctx`` is Numba's.

    Parameters
    ----------
    a0, a1, a2, a3 : f32x16

    Returns
    -------
    float32
        The sum, in exactly this order (the NumPy twin repeats it).
    """
    def codegen(context, builder, sig, args):
        v = builder.fadd(builder.fadd(builder.fadd(args[0], args[1]), args[2]), args[3])
        width = 16
        while width > 1:
            width //= 2
            lo = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(I32, width), list(range(width))))
            hi = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(I32, width),
                                                          list(range(width, 2 * width))))
            v = builder.fadd(lo, hi)
        return builder.extract_element(v, ir.Constant(I32, 0))
    return types.float32(f32x16, f32x16, f32x16, f32x16), codegen


@njit(cache=True, parallel=True)
def _totals_and_tails(x, Kw, tails, totals):
    # tails[m] = x[m, 64 (Kw-1):] zero-padded to 64; totals[m] = the sum with every bit set
    M, K = x.shape
    last = 64 * (Kw - 1)
    for m in prange(M):
        for j in range(64):
            tails[m, j] = x[m, last + j] if last + j < K else np.float32(0)
        a0, a1, a2, a3 = fzeros(), fzeros(), fzeros(), fzeros()
        for w in range(Kw - 1):
            o = m * K + 64 * w
            a0, a1 = fadd(a0, fload(x, o)), fadd(a1, fload(x, o + 16))
            a2, a3 = fadd(a2, fload(x, o + 32)), fadd(a3, fload(x, o + 48))
        o = m * 64
        a0, a1 = fadd(a0, fload(tails, o)), fadd(a1, fload(tails, o + 16))
        a2, a3 = fadd(a2, fload(tails, o + 32)), fadd(a3, fload(tails, o + 48))
        totals[m] = fhsum4(a0, a1, a2, a3)


@njit(cache=True)
def _row_tile(x, xo, tails, to, wp, r0, r1, r2, r3, Kw, out, m, n0, total):
    """out[m, n0:n0+4] = total - 2 h for the weight rows r0..r3 (row indices clamped by the caller)."""
    c00, c01, c02, c03 = fzeros(), fzeros(), fzeros(), fzeros()
    c10, c11, c12, c13 = fzeros(), fzeros(), fzeros(), fzeros()
    c20, c21, c22, c23 = fzeros(), fzeros(), fzeros(), fzeros()
    c30, c31, c32, c33 = fzeros(), fzeros(), fzeros(), fzeros()
    for w in range(Kw):
        if w < Kw - 1:
            o = xo + 64 * w
            x0, x1, x2, x3 = fload(x, o), fload(x, o + 16), fload(x, o + 32), fload(x, o + 48)
        else:                              # last word: from the zero-padded copy
            x0, x1 = fload(tails, to), fload(tails, to + 16)
            x2, x3 = fload(tails, to + 32), fload(tails, to + 48)
        h = 4 * (r0 * Kw + w)              # index of the word's first 16-bit half
        c00, c01 = fmask_add(c00, x0, wp, h), fmask_add(c01, x1, wp, h + 1)
        c02, c03 = fmask_add(c02, x2, wp, h + 2), fmask_add(c03, x3, wp, h + 3)
        h = 4 * (r1 * Kw + w)
        c10, c11 = fmask_add(c10, x0, wp, h), fmask_add(c11, x1, wp, h + 1)
        c12, c13 = fmask_add(c12, x2, wp, h + 2), fmask_add(c13, x3, wp, h + 3)
        h = 4 * (r2 * Kw + w)
        c20, c21 = fmask_add(c20, x0, wp, h), fmask_add(c21, x1, wp, h + 1)
        c22, c23 = fmask_add(c22, x2, wp, h + 2), fmask_add(c23, x3, wp, h + 3)
        h = 4 * (r3 * Kw + w)
        c30, c31 = fmask_add(c30, x0, wp, h), fmask_add(c31, x1, wp, h + 1)
        c32, c33 = fmask_add(c32, x2, wp, h + 2), fmask_add(c33, x3, wp, h + 3)
    two = np.float32(2)
    N = out.shape[1]
    out[m, n0] = total - two * fhsum4(c00, c01, c02, c03)
    if n0 + 1 < N:
        out[m, n0 + 1] = total - two * fhsum4(c10, c11, c12, c13)
    if n0 + 2 < N:
        out[m, n0 + 2] = total - two * fhsum4(c20, c21, c22, c23)
    if n0 + 3 < N:
        out[m, n0 + 3] = total - two * fhsum4(c30, c31, c32, c33)


@njit(cache=True, parallel=True)
def _wmatmul(x, wp, out):
    M, K = x.shape
    N, Kw = wp.shape
    tails = np.empty((M, 64), np.float32)
    totals = np.empty(M, np.float32)
    _totals_and_tails(x, Kw, tails, totals)
    nt = (N + ROWS - 1) // ROWS
    nmb = (M + BLOCK - 1) // BLOCK
    # row-block major: a block of x stays in L2 while the weight tiles pass over it
    for q in prange(nmb * nt):
        n0 = (q % nt) * ROWS
        r0 = min(n0, N - 1)
        r1 = min(n0 + 1, N - 1)
        r2 = min(n0 + 2, N - 1)
        r3 = min(n0 + 3, N - 1)
        for m in range((q // nt) * BLOCK, min((q // nt + 1) * BLOCK, M)):
            _row_tile(x, m * K, tails, m * 64, wp, r0, r1, r2, r3, Kw, out, m, n0, totals[m])


def binary_weight_matmul(x, w_words, k=None):
    """y = x @ sign(W).T for float32 x and W packed by ``pack_signs`` (bits never unpacked).

    Parameters
    ----------
    x : ndarray of float32, shape (M, K) or (K,)
    w_words : ndarray of uint64, shape (N, Kw), Kw = ceil(K / 64)
        ``pack_signs(W)`` for a (N, K) weight; padding bits must be 0.
    k : int, optional
        K, checked against ``x`` when given.

    Returns
    -------
    ndarray of float32, shape (M, N) (or (N,) for 1-d x), summed in the order of the
    module docstring.
    """
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise ValueError(f"binary_weight_matmul: x must be float32, got {x.dtype}")
    vec = x.ndim == 1
    x2 = np.ascontiguousarray(x[None] if vec else x)                # (M, K)
    w_words = np.ascontiguousarray(w_words)
    if x2.ndim != 2 or x2.shape[1] < 1:
        raise ValueError(f"binary_weight_matmul: x must have shape (M, K) or (K,), got {x.shape}")
    K = x2.shape[1]
    if k is not None and k != K:
        raise ValueError(f"binary_weight_matmul: k = {k} but x has {K} columns")
    Kw = (K + 63) // 64
    if w_words.dtype != np.uint64 or w_words.ndim != 2 or w_words.shape[1] != Kw \
            or w_words.shape[0] < 1:
        raise ValueError(f"binary_weight_matmul: w_words must be uint64 of shape (N, {Kw}) for "
                         f"K = {K}, got {w_words.dtype} with shape {w_words.shape}")
    out = np.empty((x2.shape[0], w_words.shape[0]), np.float32)     # (M, N)
    if out.size:
        _wmatmul(x2, w_words, out)
        if not np.isfinite(out).all() and np.isfinite(x2).all():    # 2h or total beyond float32
            raise FloatingPointError(f"binary_weight_matmul: total - 2h overflowed float32 (|x| up to "
                                     f"{float(np.abs(x2).max()):.4g}; float32 max is 3.403e+38); "
                                     f"scale x down")
    return out[0] if vec else out
