"""Binary k x k convolution: y[n, o, p] = sum_{c, i, j} sign(x)[n, c, h, w] sign(W)[o, c, i, j], zero padded.

Here ``p = (ho, wo)``, ``h = ho * sh - pad_top + i``, ``w = wo * sw - pad_left + j``
and input positions outside the image are 0 (zero padding), exactly as the float
convolution ``torch.nn.functional.conv2d(sign(x), sign(W), stride, padding)``.

Steps (all inside one Numba call):

1. Pack the input along channels: NHWC words, ``Cw = ceil(C / 64)`` per pixel
   (``pack.pack_channels``).
2. Bit-level im2col: output position ``p`` becomes a row of ``T * Cw`` words
   (``T = kh * kw`` taps, tap-major, channel words minor), written straight
   into the 32-column panels of ``bgemm`` (positions are the columns of C).
3. Binary GEMM with the packed weights ``A[o] = pack(W[o] as (kh, kw, C))``:
   ``out[n] (O, P) = K - 2 popcount(A ^ B)`` with ``K = T * C``; this is
   already the NCHW output layout.
4. Padding correction. A zero cannot be a bit, so im2col writes taps that
   fall outside the image as 0-words, i.e. as inputs of +1. Such a tap
   adds ``S[t, o] = sum_c sign(W)[o, c, t]`` where zero padding adds nothing,
   so for every border position ``out[n, o, p] -= sum_{t outside at p} S[t, o]``.
   The set of outside taps is (outside rows) x all + all x (outside columns),
   so positions share a few patterns; the correction per pattern is computed
   once from the tap sums ``S`` stored with the packed weights, and applied
   right after each GEMM tile while its rows are in L1.

The result is an exact integer: it equals the float convolution of the +-1
input with zero padding for any C, H, W, kernel (up to 63 x 63), stride and
padding. The GEMM is ~2/3 of the time at 14x14x256 -> 256 (batch 1), packing
and im2col most of the rest.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from .bgemm import PANEL, ROWS, _tile
from ..checks import is_integer
from .pack import _pack_channels_kernel, as_native, pack_signs


class ConvWeights(NamedTuple):
    """A conv weight packed for ``binary_conv2d``.

    Attributes
    ----------
    words : ndarray, uint64, (O, kh * kw * Cw)
        Rows of A, tap-major then channel words.
    tap_sums : ndarray, int32, (kh * kw, O)
        S[t, o] = sum_c sign(W)[o, c, t] (for the padding correction).
    shape : (int, int, int, int)
        (O, C, kh, kw) of the float weight.
    """
    words: np.ndarray
    tap_sums: np.ndarray
    shape: tuple


def pack_conv_weight(w):
    """Pack an OIHW weight: A[o] = pack_signs(sign(W)[o] as (kh, kw, C)), plus the tap sums.

    Parameters
    ----------
    w : ndarray, shape (O, C, kh, kw), real or +-1

    Returns
    -------
    ConvWeights
    """
    w = np.asarray(w)
    if w.ndim != 4 or min(w.shape) < 1:
        raise ValueError(f"pack_conv_weight: w must have shape (O, C, kh, kw) with all sizes >= 1, "
                         f"got {w.shape}")
    O, C, kh, kw = w.shape
    words = pack_signs(w.transpose(0, 2, 3, 1))                  # (O, kh, kw, Cw)
    signs = np.where(w >= 0, 1, -1).astype(np.int32)              # (O, C, kh, kw), NaN -> -1
    tap_sums = np.ascontiguousarray(signs.sum(axis=1, dtype=np.int32).reshape(O, kh * kw).T)   # (T, O)
    return ConvWeights(np.ascontiguousarray(words.reshape(O, -1)), tap_sums, (O, C, kh, kw))


def _check_conv_weights(cw):
    """ValueError unless ``cw.words`` is uint64 (O, kh kw ceil(C/64)) and ``cw.tap_sums`` int32
    (kh kw, O), both C-ordered, as ``pack_conv_weight`` makes them for ``cw.shape``."""
    O, C, kh, kw = cw.shape
    for name, a, dt, shape in (("words", cw.words, np.uint64, (O, kh * kw * -(-C // 64))),
                               ("tap_sums", cw.tap_sums, np.int32, (kh * kw, O))):
        if not (isinstance(a, np.ndarray) and a.dtype == dt and a.shape == shape and a.flags.c_contiguous):
            raise ValueError(f"binary_conv2d: ConvWeights.{name} must be a C-ordered {np.dtype(dt).name} array "
                             f"of shape {shape} for shape {cw.shape}, got {getattr(a, 'dtype', type(a).__name__)} "
                             f"with shape {np.shape(a)}")


def conv_padding(padding, kernel, stride):
    """(top, bottom, left, right) zero padding from an int, a pair, 'valid' or 'same' (torch's rule).

    Parameters
    ----------
    padding : int, (int, int), 'valid' or 'same'
    kernel : (int, int)
        (kh, kw).
    stride : (int, int)
        (sh, sw); 'same' needs (1, 1).

    Returns
    -------
    (int, int, int, int)
        (top, bottom, left, right).
    """
    kh, kw = kernel
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"binary_conv2d: padding='same' needs stride 1, got stride {stride}")
            # torch: total k - 1, the extra one (even k) at the bottom/right
            return (kh - 1) // 2, kh - 1 - (kh - 1) // 2, (kw - 1) // 2, kw - 1 - (kw - 1) // 2
        raise ValueError(f"binary_conv2d: padding must be an int >= 0, a pair, 'valid' or 'same', "
                         f"got {padding!r}")
    shape = np.shape(padding)
    ph, pw = (padding, padding) if shape == () else tuple(padding) if shape == (2,) else (None, None)
    if not (is_integer(ph) and is_integer(pw) and ph >= 0 and pw >= 0):
        raise ValueError(f"binary_conv2d: padding must be integers >= 0, got {padding!r}")
    return int(ph), int(ph), int(pw), int(pw)


@njit(cache=True, parallel=True)
def _im2col_panels(xp, H, W, kh, kw, sh, sw, pt, pl, Ho, Wo, bp):
    # xp (N, H*W, Cw) packed pixels -> bp (N, nb, T*Cw, 32): bp[n, p // 32, t*Cw + g, p % 32].
    # Taps outside the image and positions past Ho*Wo get 0-words (+1 inputs).
    N, HW, Cw = xp.shape
    nb, Kw = bp.shape[1], bp.shape[2]
    src = xp.reshape(xp.size)                  # flat views: one index computation per word
    dst = bp.reshape(bp.size)
    for q in prange(N * nb):
        n = q // nb
        jb = q % nb
        for lane in range(PANEL):
            p = jb * PANEL + lane
            top = (p // Wo) * sh - pt          # input row and column of tap (0, 0)
            left = (p % Wo) * sw - pl
            d = q * Kw * PANEL + lane
            for i in range(kh):
                h = top + i
                if p < Ho * Wo and 0 <= h < H and 0 <= left and left + kw <= W:
                    # the whole tap row is inside: kw * Cw consecutive words of xp
                    s = (n * HW + h * W + left) * Cw
                    for e in range(kw * Cw):
                        dst[d] = src[s + e]
                        d += PANEL
                    continue
                for j in range(kw):
                    col = left + j
                    if p < Ho * Wo and 0 <= h < H and 0 <= col < W:
                        s = (n * HW + h * W + col) * Cw
                        for g in range(Cw):
                            dst[d] = src[s + g]
                            d += PANEL
                    else:
                        for g in range(Cw):
                            dst[d] = 0
                            d += PANEL


@njit(cache=True)
def _outside_taps(n_out, size, k, stride, pad):
    """Bit i of mask[o] set when tap i of output o reads outside [0, size) along one axis."""
    mask = np.zeros(n_out, np.int64)
    for o in range(n_out):
        for i in range(k):
            h = o * stride - pad + i
            if h < 0 or h >= size:
                mask[o] |= np.int64(1) << i
    return mask


@njit(cache=True)
def _pattern_ids(masks):
    """ids, uniq with uniq[ids[o]] == masks[o]: the few distinct border patterns of one axis."""
    uniq = np.empty(masks.size, np.int64)
    ids = np.empty(masks.size, np.int64)
    n = 0
    for o in range(masks.size):
        found = -1
        for u in range(n):
            if uniq[u] == masks[o]:
                found = u
                break
        if found < 0:
            uniq[n] = masks[o]
            found = n
            n += 1
        ids[o] = found
    return ids, uniq[:n]


@njit(cache=True)
def _border(S, H, W, kh, kw, sh, sw, pt, pl, Ho, Wo):
    """Positions with a tap outside the image, their correction rows, and each panel's share.

    Returns ``border`` (B,) positions in increasing order, ``pattern`` (B,) row of ``corr``
    for each, ``corr`` (patterns, O) = sum of S[t] over the outside taps of the pattern, and
    ``start`` (nb + 1,): the border positions of panel jb are border[start[jb]:start[jb+1]].
    """
    rmask = _outside_taps(Ho, H, kh, sh, pt)
    cmask = _outside_taps(Wo, W, kw, sw, pl)
    rid, rows = _pattern_ids(rmask)
    cid, cols = _pattern_ids(cmask)
    nc = cols.size
    O = S.shape[1]
    corr = np.zeros((rows.size * nc, O), np.int32)          # (patterns, O)
    for r in range(rows.size):
        for c in range(nc):
            for i in range(kh):
                for j in range(kw):
                    if (rows[r] >> i) & 1 or (cols[c] >> j) & 1:
                        for o in range(O):
                            corr[r * nc + c, o] += S[i * kw + j, o]
    border = np.empty(Ho * Wo, np.int64)
    pattern = np.empty(Ho * Wo, np.int64)
    nb = (Ho * Wo + PANEL - 1) // PANEL
    start = np.zeros(nb + 1, np.int64)
    B = 0
    for ho in range(Ho):
        for wo in range(Wo):
            if rmask[ho] != 0 or cmask[wo] != 0:
                border[B] = ho * Wo + wo
                pattern[B] = rid[ho] * nc + cid[wo]
                B += 1
                start[(ho * Wo + wo) // PANEL + 1] = B
    for jb in range(nb):                                    # panels without border positions
        start[jb + 1] = max(start[jb + 1], start[jb])
    return border[:B], pattern[:B], corr, start


@njit(cache=True, parallel=True)
def _conv(x3, H, W, A, S, K, kh, kw, sh, sw, pt, pl, Ho, Wo, out):
    # x3 (N, C, H*W) real input, A (O, T*Cw) packed weights, S (T, O) tap sums, out (N, O, Ho*Wo)
    N, C, HW = x3.shape
    O = A.shape[0]
    xp = np.empty((N, HW, (C + 63) // 64), np.uint64)          # (N, H*W, Cw)
    _pack_channels_kernel(x3, xp)
    nb = (Ho * Wo + PANEL - 1) // PANEL
    bp = np.empty((N, nb, A.shape[1], PANEL), np.uint64)      # (N, nb, T*Cw, 32)
    _im2col_panels(xp, H, W, kh, kw, sh, sw, pt, pl, Ho, Wo, bp)
    border, pattern, corr, start = _border(S, H, W, kh, kw, sh, sw, pt, pl, Ho, Wo)
    nt = (O + ROWS - 1) // ROWS
    for n in range(N):
        bpn = bp[n]                # views made once: making them per tile costs refcounting
        outn = out[n]
        for q in prange(nb * nt):
            jb = q // nt
            i0 = (q % nt) * ROWS
            _tile(A, bpn, outn, K, i0, jb)
            # the padding correction of this tile, while its rows are in L1
            for b in range(start[jb], start[jb + 1]):
                for o in range(i0, min(i0 + ROWS, O)):
                    outn[o, border[b]] -= corr[pattern[b], o]


def _pair(v, name):
    shape = np.shape(v)
    a, b = (v, v) if shape == () else tuple(v) if shape == (2,) else (None, None)
    if not (is_integer(a) and is_integer(b) and a >= 1 and b >= 1):
        raise ValueError(f"binary_conv2d: {name} must be integers >= 1, got {v!r}")
    return int(a), int(b)


def binary_conv2d(x, w, stride=1, padding=0):
    """y = conv2d(sign(x), sign(W), stride, padding) with zero padding, as exact int32.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), real or +-1 (binarised with 0 -> +1)
    w : ndarray (O, C, kh, kw), real or +-1, or ConvWeights from ``pack_conv_weight``
    stride : int or (int, int), >= 1
        (sh, sw): rows, then columns.
    padding : int >= 0, (int, int), 'valid' or 'same' (stride 1; even kernels pad
        one more at the bottom/right, as torch)
        A pair is (rows, columns), each padded on both sides; the 4-tuple that
        ``conv_padding`` returns is not accepted here. Padded positions hold 0 and add
        nothing to the sum, as in torch's zero padding.

    Returns
    -------
    ndarray of int32, shape (N, O, Ho, Wo), Ho = (H + pad_h - kh) // sh + 1 with pad_h =
    top + bottom padding (Wo likewise); kernels up to 63 x 63.
    """
    cw = w if isinstance(w, ConvWeights) else pack_conv_weight(w)
    O, C, kh, kw = cw.shape
    if max(kh, kw) > 63:                       # _outside_taps keeps one bit per tap row/column
        raise ValueError(f"binary_conv2d: kernel sizes must be <= 63, got {kh}x{kw}")
    if isinstance(w, ConvWeights):             # built by hand: the kernels index words and tap_sums unchecked
        _check_conv_weights(cw)
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1] != C or min(x.shape[2:]) < 1:
        raise ValueError(f"binary_conv2d: x has shape {x.shape}, expected (N, {C}, H, W)")
    x = as_native(x)
    N, _, H, W = x.shape
    sh, sw = _pair(stride, "stride")
    pt, pb, pl, pr = conv_padding(padding, (kh, kw), (sh, sw))
    Ho = (H + pt + pb - kh) // sh + 1
    Wo = (W + pl + pr - kw) // sw + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"binary_conv2d: a {kh}x{kw} kernel does not fit the padded input "
                         f"{H + pt + pb}x{W + pl + pr}")
    out = np.empty((N, O, Ho * Wo), np.int32)                     # (N, O, P)
    if N:
        x3 = np.ascontiguousarray(x).reshape(N, C, H * W)        # (N, C, H*W)
        _conv(x3, H, W, cw.words, cw.tap_sums, kh * kw * C, kh, kw, sh, sw, pt, pl, Ho, Wo, out)
    return out.reshape(N, O, Ho, Wo)
