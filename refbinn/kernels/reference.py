"""Plain NumPy twins of the Numba kernels: slow, obvious, and equal to them bit for bit.

Each function computes what the kernel of the same name (without ``_ref``)
computes, from the definitions and with NumPy only; the tests assert exact
equality. The conventions are those of ``pack.py``: bit 1 = -1, bit 0 = +1,
element k in word k // 64 at bit k % 64, padding bits 0.
"""
from __future__ import annotations

import numpy as np


def sign_bits_ref(x):
    """1 where sign(x) = -1, i.e. not (x >= 0) (0 -> +1, NaN -> -1).

    Parameters
    ----------
    x : ndarray, real dtype

    Returns
    -------
    ndarray, uint8, shape of x
    """
    return (~(np.asarray(x) >= 0)).astype(np.uint8)


def pack_signs_ref(x):
    """words[..., w] = sum_b [not x[..., 64 w + b] >= 0] << b, via np.packbits (little bit order).

    Twin of ``pack.pack_signs``.

    Parameters
    ----------
    x : ndarray, (..., K), real dtype

    Returns
    -------
    ndarray, uint64, (..., ceil(K / 64))
    """
    x = np.asarray(x)
    K = x.shape[-1]
    Kw = (K + 63) // 64
    bits = np.zeros(x.shape[:-1] + (64 * Kw,), np.uint8)            # (..., 64 Kw)
    bits[..., :K] = sign_bits_ref(x)
    packed = np.packbits(bits, axis=-1, bitorder="little")          # (..., 8 Kw) bytes
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64)   # (..., Kw)


def unpack_signs_ref(words, k, dtype=np.float32):
    """x[..., k] = 1 - 2 * bit k of the row, via np.unpackbits (little bit order).

    Twin of ``pack.unpack_signs``.

    Parameters
    ----------
    words : ndarray, uint64, (..., Kw)
    k : int
        Number of values to unpack, <= 64 Kw.
    dtype : numpy dtype

    Returns
    -------
    ndarray, (..., k), values in {-1, +1}
    """
    words = np.ascontiguousarray(np.asarray(words, dtype="<u8"))
    bits = np.unpackbits(words.view(np.uint8), axis=-1, bitorder="little")   # (..., 64 Kw)
    return (1 - 2 * bits[..., :k].astype(np.int64)).astype(dtype)


def pack_channels_ref(x):
    """NCHW signs packed along C into NHWC words: pack_signs_ref(x transposed to (N, H, W, C)).

    Twin of ``pack.pack_channels``.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), real dtype

    Returns
    -------
    ndarray, uint64, (N, H, W, ceil(C / 64))
    """
    return pack_signs_ref(np.asarray(x).transpose(0, 2, 3, 1))


def popcount_ref(words):
    """Bit counts of a uint64 array. Twin of ``popcount.popcount``.

    Parameters
    ----------
    words : ndarray, uint64

    Returns
    -------
    ndarray, uint8, shape of words
    """
    return np.bitwise_count(np.asarray(words, np.uint64))


def to_panels_ref(b):
    """Bp[jb, w, l] = B[32 jb + l, w], zero rows past N. Twin of ``bgemm.to_panels``.

    Parameters
    ----------
    b : ndarray, uint64, (N, Kw)

    Returns
    -------
    ndarray, uint64, (ceil(N / 32), Kw, 32)
    """
    N, Kw = b.shape
    nb = (N + 31) // 32
    padded = np.zeros((nb * 32, Kw), np.uint64)
    padded[:N] = b
    return np.ascontiguousarray(padded.reshape(nb, 32, Kw).transpose(0, 2, 1))   # (nb, Kw, 32)


def binary_gemm_ref(a, b, k):
    """C[i, j] = k - 2 * sum_w popcount(a[i, w] ^ b[j, w]). Twin of ``bgemm.binary_gemm``.

    Parameters
    ----------
    a : ndarray, uint64, (M, Kw)
    b : ndarray, uint64, (N, Kw)
    k : int
        The number of real (unpadded) bits per row.

    Returns
    -------
    ndarray, int32, (M, N)
    """
    a = np.asarray(a, np.uint64)
    b = np.asarray(b, np.uint64)
    diff = np.bitwise_count(a[:, None, :] ^ b[None, :, :]).sum(axis=-1, dtype=np.int64)  # (M, N)
    return (int(k) - 2 * diff).astype(np.int32)


def conv2d_int_ref(x, w, stride, pads):
    """The definition: sum_{c,i,j} sign(x)[n, c, h, w] sign(W)[o, c, i, j] with zero padding.

    Parameters
    ----------
    x : ndarray, (N, C, H, W), real dtype
    w : ndarray, (O, C, kh, kw), real dtype
    stride : (int, int)
        (sh, sw).
    pads : (int, int, int, int)
        (top, bottom, left, right).

    Returns
    -------
    ndarray, int64, (N, O, Ho, Wo)
    """
    sx = 1 - 2 * sign_bits_ref(x).astype(np.int64)
    sw_ = 1 - 2 * sign_bits_ref(w).astype(np.int64)
    pt, pb, pl, pr = pads
    xp = np.pad(sx, ((0, 0), (0, 0), (pt, pb), (pl, pr)))          # zeros outside the image
    sh, sv = stride
    O, _, kh, kw = w.shape
    Ho = (xp.shape[2] - kh) // sh + 1
    Wo = (xp.shape[3] - kw) // sv + 1
    y = np.zeros((x.shape[0], O, Ho, Wo), np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + sh * (Ho - 1) + 1:sh, j:j + sv * (Wo - 1) + 1:sv]   # (N, C, Ho, Wo)
            y += np.einsum("nchw,oc->nohw", patch, sw_[:, :, i, j])
    return y


def binary_conv2d_ref(x, w, stride, pads):
    """The kernel's algorithm in NumPy: packed im2col with outside taps as 0-words (+1),
    binary GEMM, then minus the tap sums of the outside taps. Twin of ``bconv.binary_conv2d``.

    Parameters
    ----------
    x, w, stride, pads
        As in ``conv2d_int_ref``.

    Returns
    -------
    ndarray, int32, (N, O, Ho, Wo)
    """
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    sh, sv = stride
    pt, pb, pl, pr = pads
    Ho = (H + pt + pb - kh) // sh + 1
    Wo = (W + pl + pr - kw) // sv + 1
    xw = pack_channels_ref(x)                                       # (N, H, W, Cw)
    Cw = xw.shape[-1]
    xpad = np.zeros((N, H + pt + pb, W + pl + pr, Cw), np.uint64)   # 0-words = +1 inputs
    xpad[:, pt:pt + H, pl:pl + W] = xw
    inside = np.zeros((H + pt + pb, W + pl + pr), bool)
    inside[pt:pt + H, pl:pl + W] = True
    A = pack_signs_ref(w.transpose(0, 2, 3, 1)).reshape(O, kh * kw * Cw)   # (O, T*Cw)
    S = (1 - 2 * sign_bits_ref(w).astype(np.int64)).sum(axis=1)            # (O, kh, kw)
    y = np.empty((N, O, Ho, Wo), np.int64)
    for ho in range(Ho):
        for wo in range(Wo):
            rows = slice(ho * sh, ho * sh + kh)
            cols = slice(wo * sv, wo * sv + kw)
            B = xpad[:, rows, cols].reshape(N, kh * kw * Cw)                # (N, T*Cw)
            corr = (S * ~inside[rows, cols]).sum(axis=(1, 2))               # (O,)
            y[:, :, ho, wo] = binary_gemm_ref(B, A, kh * kw * C) - corr
    return y.astype(np.int32)


def binary_weight_matmul_ref(x, w_words):
    """y = total - 2 h in float32, in the summation order of ``gemv.py``'s docstring.

    Twin of ``gemv.binary_weight_matmul``.

    Parameters
    ----------
    x : ndarray, (M, K), cast to float32
    w_words : ndarray, uint64, (N, ceil(K / 64))
        ``pack_signs`` of the (N, K) weight.

    Returns
    -------
    ndarray, float32, (M, N)
    """
    x = np.asarray(x, np.float32)
    M, K = x.shape
    N, Kw = w_words.shape
    xpad = np.zeros((M, Kw * 64), np.float32)
    xpad[:, :K] = x
    xpad = xpad.reshape(M, Kw, 64)                                   # (M, Kw, 64)
    bits = unpack_signs_ref(w_words, Kw * 64, np.int8) < 0           # (N, 64 Kw) bit = 1
    bits = bits.reshape(N, Kw, 64)                                   # (N, Kw, 64)

    def ordered_sum(mask):                                           # mask (N', Kw, 64)
        part = np.zeros((M, mask.shape[0], 64), np.float32)          # (M, N', 64)
        for w in range(Kw):
            part = np.where(mask[None, :, w, :], part + xpad[:, None, w, :], part)
        v = ((part[..., 0:16] + part[..., 16:32]) + part[..., 32:48]) + part[..., 48:64]
        while v.shape[-1] > 1:                                       # halving: 16 -> 8 -> 4 -> 2 -> 1
            half = v.shape[-1] // 2
            v = v[..., :half] + v[..., half:]
        return v[..., 0]                                             # (M, N')

    total = ordered_sum(np.ones((1, Kw, 64), bool))                  # (M, 1)
    return total - np.float32(2) * ordered_sum(bits)
