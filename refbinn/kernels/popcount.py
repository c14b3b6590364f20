"""popcount(x) = number of set bits of a uint64, and 8-lane uint64 vectors for Numba.

Numba 0.68 cannot compile ``np.bitwise_count``, so the bit count is a small
``numba.extending.intrinsic`` that emits LLVM's ``llvm.ctpop`` directly. LLVM
lowers it to the best instruction the CPU has: ``vpopcntq`` (AVX-512
VPOPCNTDQ), ``popcnt``, a ``pshufb`` nibble table, or plain bit twiddling.

The binary GEMM needs more than a scalar popcount to run near the machine's
limit: LLVM's loop vectoriser prefers 256-bit vectors on AVX-512 CPUs, and the
reduction over words would end in horizontal sums. So this module also defines
``u64x8``, a Numba type that is an LLVM ``<8 x i64>`` vector held in one
register (one zmm on AVX-512, two ymm on AVX2, four xmm on SSE), and the few
operations the kernels use on it:

===========================  ===============================================
``vzeros()``                 (0, ..., 0)
``vload(a, i)``              a.flat[i : i + 8]  (no bounds check)
``vbcast(a, i)``             (a.flat[i],) * 8   (no bounds check)
``vxpa(c, x, y)``            c + popcount(x ^ y), lane by lane
``vlane(v, l)``              v[l]
``vstore_dot(o, i, k, c)``   o.flat[i : i + 8] = k - 2 * c, as int32
===========================  ===============================================

Explicit vectors are portable: on a CPU without AVX-512 the backend splits
them into narrower registers, so the kernels stay correct everywhere (a test compiles
them for ``haswell`` and ``generic`` x86-64, setting ``NUMBA_CPU_FEATURES`` as well as
``NUMBA_CPU_NAME``, which alone keeps the host's features, and checks them against their
NumPy twins).
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

I32 = ir.IntType(32)
I64 = ir.IntType(64)
_V8I64 = ir.VectorType(I64, 8)
_V8I32 = ir.VectorType(I32, 8)


class U64x8Type(types.Type):
    """Numba type of an LLVM ``<8 x i64>`` value (one AVX-512 register)."""

    def __init__(self):
        super().__init__(name="u64x8")


u64x8 = U64x8Type()


@register_model(U64x8Type)
class _U64x8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _V8I64)


def element_pointer(context, builder, arytype, ary, index, pointee):
    """LLVM pointer to ``ary.flat[index]``, cast to ``pointee*``; the array must be C-contiguous.

    A code-generation helper for the intrinsics here and in ``gemv``.

    Parameters
    ----------
    context, builder
        Numba's target context and the llvmlite IR builder of the codegen callback.
    arytype : numba.types.Array
        The array's Numba type.
    ary : llvmlite value
        The array argument.
    index : llvmlite value
        Flat element index.
    pointee : llvmlite.ir.Type
        What the pointer points to (e.g. an 8 x i64 vector).

    Returns
    -------
    llvmlite value
        A ``pointee*`` pointer.
    """
    data = context.make_array(arytype)(context, builder, ary).data
    return builder.bitcast(builder.gep(data, [index]), pointee.as_pointer())


def splat(builder, value, vtype):
    """The vector ``(value,) * n`` of LLVM type ``vtype`` (n = its lane count).

    Parameters
    ----------
    builder : llvmlite.ir.IRBuilder
    value : llvmlite value
        A scalar of the vector's element type.
    vtype : llvmlite.ir.VectorType

    Returns
    -------
    llvmlite value
    """
    n = vtype.count
    v = builder.insert_element(ir.Constant(vtype, ir.Undefined), value, ir.Constant(I32, 0))
    return builder.shuffle_vector(v, ir.Constant(vtype, ir.Undefined),
                                  ir.Constant(ir.VectorType(I32, n), [0] * n))


def _ctpop(builder, value):
    fnty = ir.FunctionType(value.type, [value.type])
    suffix = f"v{value.type.count}i64" if isinstance(value.type, ir.VectorType) else "i64"
    fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.ctpop.{suffix}")
    return builder.call(fn, [value])


# -- scalar ----------------------------------------------------------------------------
@intrinsic
def popcnt64(typingctx, x):
    """popcount(x) for a uint64 ``x``, as ``llvm.ctpop.i64``; usable only inside Numba code.

    Parameters
    ----------
    x : integer
        Cast to uint64 first.

    Returns
    -------
    uint64
    """
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        v = context.cast(builder, args[0], sig.args[0], types.uint64)
        return _ctpop(builder, v)
    return types.uint64(x), codegen


def popcount(words):
    """Bit counts of a uint64 array: ``popcount(words)[i] = sum_b (words[i] >> b) & 1``.

    The NumPy twin is ``np.bitwise_count(words)``.

    Parameters
    ----------
    words : ndarray of uint64, any shape

    Returns
    -------
    ndarray of uint8, the shape of ``words``

    Raises
    ------
    ValueError
        If ``words`` is not uint64 (a signed or float array would be counted as its bits
        reinterpreted, or not compile at all).
    """
    words = np.asarray(words)
    if words.dtype != np.uint64:
        raise ValueError(f"popcount: words must be a uint64 array, got {words.dtype}")
    return _popcount(words.ravel()).reshape(words.shape)


@njit(cache=True, parallel=True)
def _popcount(flat):
    out = np.empty(flat.size, np.uint8)
    for i in prange(flat.size):
        out[i] = np.uint8(popcnt64(flat[i]))
    return out


# -- 8-lane vectors ------------------------------------------------------------------
@intrinsic
def vzeros(typingctx):
    """The zero vector of 8 uint64 lanes.

    Numba intrinsic: callable only inside ``njit`` code; ``typingctx`` is Numba's.

    Returns
    -------
    u64x8
    """
    def codegen(context, builder, sig, args):
        return ir.Constant(_V8I64, None)
    return u64x8(), codegen


@intrinsic
def vload(typingctx, ary, index):
    """ary.flat[index : index + 8] of a uint64 array (no bounds check).

    Numba intrinsic: callable only inside ``njit`` code; ``typingctx`` is Numba's.

    Parameters
    ----------
    ary : uint64 array, C-contiguous
    index : int
        Flat index of the first lane.

    Returns
    -------
    u64x8
    """
    if not (isinstance(ary, types.Array) and ary.dtype == types.uint64):
        return None

    def codegen(context, builder, sig, args):
        return builder.load(element_pointer(context, builder, sig.args[0], args[0], args[1], _V8I64),
                            align=8)
    return u64x8(ary, index), codegen


@intrinsic
def vbcast(typingctx, ary, index):
    """(ary.flat[index],) * 8: one uint64 word in all 8 lanes.

    Numba intrinsic: callable only inside ``njit`` code; ``typingctx`` is Numba's.

    Parameters
    ----------
    ary : uint64 array, C-contiguous
    index : int
        Flat index of the word.

    Returns
    -------
    u64x8
    """
    if not (isinstance(ary, types.Array) and ary.dtype == types.uint64):
        return None

    def codegen(context, builder, sig, args):
        word = builder.load(element_pointer(context, builder, sig.args[0], args[0], args[1], I64),
                            align=8)
        return splat(builder, word, _V8I64)
    return u64x8(ary, index), codegen


@intrinsic
def vxpa(typingctx, acc, x, y):
    """acc + popcount(x xor y), lane by lane (the xnor-popcount step of a binary dot product).

    Numba intrinsic: callable only inside ``njit`` code; ``typingctx`` is Numba's.

    Parameters
    ----------
    acc, x, y : u64x8

    Returns
    -------
    u64x8
    """
    def codegen(context, builder, sig, args):
        return builder.add(args[0], _ctpop(builder, builder.xor(args[1], args[2])))
    return u64x8(u64x8, u64x8, u64x8), codegen


@intrinsic
def vlane(typingctx, v, lane):
    """v[lane] of an 8-lane uint64 vector.

    Numba intrinsic: callable only inside ``njit`` code; ``typingctx`` is Numba's.

    Parameters
    ----------
    v : u64x8
    lane : int, 0 <= lane < 8

    Returns
    -------
    uint64
    """
    def codegen(context, builder, sig, args):
        return builder.extract_element(args[0], args[1])
    return types.uint64(u64x8, lane), codegen


@intrinsic
def vstore_dot(typingctx, out, index, k, acc):
    """out.flat[index : index + 8] = k - 2 acc: 8 binary dot products from their xor counts.

    Numba intrinsic: callable only inside ``njit`` code; ``typingctx`` is Numba's.

    Parameters
    ----------
    out : int32 array, C-contiguous
    index : int
        Flat index of the first lane written.
    k : int
        The dot products' length K (< 2**31).
    acc : u64x8
        Per lane, popcount(a xor b) summed over the words.

    Returns
    -------
    None
    """
    if not (isinstance(out, types.Array) and out.dtype == types.int32):
        return None

    def codegen(context, builder, sig, args):
        kv = splat(builder, context.cast(builder, args[2], sig.args[2], types.int32), _V8I32)
        counts = builder.trunc(args[3], _V8I32)                     # counts <= k < 2**31
        dot = builder.sub(kv, builder.shl(counts, ir.Constant(_V8I32, [1] * 8)))
        ptr = element_pointer(context, builder, sig.args[0], args[0], args[1], _V8I32)
        builder.store(dot, ptr, align=4)
        return context.get_dummy_value()
    return types.none(out, index, k, u64x8), codegen
