"""Binary GEMM: C[i, j] = sum_k a[i, k] b[j, k] = K - 2 * popcount(A[i] ^ B[j]) for +-1 rows.

A (M, Kw) and B (N, Kw) hold M and N rows of K signs packed along K by
``pack_signs`` (Kw = ceil(K / 64) uint64 words). Agreeing bits are +1 * +1 or
-1 * -1 = +1, disagreeing bits give -1, so a row pair's dot product is
``K - 2 * (number of differing bits)``; padding bits are 0 in both rows, never
differ, and drop out because the constant is the true K, not 64 * Kw.

Kernel layout (the classic GEMM micro-kernel, with xor+popcount+add in place of
a fused multiply-add):

* B is rearranged once into panels ``Bp[jb, w, l] = B[32 jb + l, w]``
  (``to_panels``; zero rows pad N up to a multiple of 32), so the 32 words a
  panel needs for one word index ``w`` are contiguous: four 8-lane loads.
* A 4 x 32 tile of C lives in 16 vector accumulators (16 zmm on AVX-512).
  For each word ``w``: load 4 vectors of B, broadcast 4 words of A, and do
  16 ``acc += popcount(a ^ b)``. No horizontal sums: lane ``l`` of an
  accumulator is one entry of C.
* Tiles are spread over threads with ``prange``, in blocks of 256 rows of A
  (kept in L2) and, inside a block, panel by panel (a panel of 32 * Kw words
  stays in L1 while its tiles are computed).

Each 512-bit step is three vector instructions (xor, vpopcntq, add) on the two
512-bit ports, so the ceiling is ~341 binary MACs per cycle per core; the
kernel reaches it (1.1 T binary MAC/s on one core, 2.0 T on two, measured on
the 2-core AVX-512 development machine), 20x or more numpy float32 matmul.

``gemm_asm()`` returns the tile's assembly (tests look for ``vpopcntq``).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..checks import is_integer
from .popcount import vbcast, vlane, vload, vstore_dot, vxpa, vzeros

ROWS = 4      # rows of A per tile
PANEL = 32    # columns of C per tile = width of a B panel (4 vectors of 8)
BLOCK_TILES = 64   # row tiles per block: 256 rows of A, 512 KiB at K = 16384


@njit(cache=True, parallel=True)
def _to_panels(b, bp):
    N, Kw = b.shape
    for jb in prange(bp.shape[0]):
        for l in range(PANEL):
            j = jb * PANEL + l
            if j < N:
                for w in range(Kw):
                    bp[jb, w, l] = b[j, w]
            else:
                for w in range(Kw):
                    bp[jb, w, l] = 0


def to_panels(b):
    """Bp[jb, w, l] = B[32 jb + l, w] (0 past row N): B rearranged for ``binary_gemm_panels``.

    Parameters
    ----------
    b : ndarray of uint64, shape (N, Kw)

    Returns
    -------
    ndarray of uint64, shape (ceil(N / 32), Kw, 32)
    """
    b = np.ascontiguousarray(b)
    if b.dtype != np.uint64 or b.ndim != 2 or b.shape[1] < 1:
        raise ValueError(f"to_panels: b must be a 2-d uint64 array with >= 1 word per row, "
                         f"got {b.dtype} with shape {b.shape}")
    bp = np.empty(((b.shape[0] + PANEL - 1) // PANEL, b.shape[1], PANEL), np.uint64)
    _to_panels(b, bp)
    return bp


@njit(cache=True)
def _store8(c, row, col, k, acc):
    """c[row, col:col+8] = k - 2 * acc, clipped at the last column of c."""
    count = c.shape[1] - col
    if count >= 8:
        vstore_dot(c, row * c.shape[1] + col, k, acc)
    else:
        for lane in range(count):
            c[row, col + lane] = np.int32(k - 2 * np.int64(vlane(acc, lane)))


@njit(cache=True)
def _store_row(c, row, col, k, v0, v1, v2, v3):
    _store8(c, row, col, k, v0)
    if col + 8 < c.shape[1]:
        _store8(c, row, col + 8, k, v1)
    if col + 16 < c.shape[1]:
        _store8(c, row, col + 16, k, v2)
    if col + 24 < c.shape[1]:
        _store8(c, row, col + 24, k, v3)


@njit(cache=True)
def _tile(a, bp, c, k, i0, jb):
    """c[i0:i0+4, 32 jb:32 jb+32] = k - 2 popcount(a[i0:i0+4] ^ panel jb), clipped at the edges of c.

    The register-blocked inner kernel of ``binary_gemm_panels`` (4 rows x 32 columns).

    Parameters
    ----------
    a : ndarray, uint64, (M, Kw)
    bp : ndarray, uint64, (nb, Kw, 32)
        The panels of B (``to_panels``).
    c : ndarray, int32, (M, N)
        Written in place.
    k : int
        The number of real bits per row.
    i0 : int
        First row of the tile.
    jb : int
        Panel index.

    Returns
    -------
    None
    """
    M, Kw = a.shape
    # Rows past M repeat the last row: same work, results not stored.
    r0 = min(i0, M - 1) * Kw
    r1 = min(i0 + 1, M - 1) * Kw
    r2 = min(i0 + 2, M - 1) * Kw
    r3 = min(i0 + 3, M - 1) * Kw
    p = jb * Kw * PANEL
    c00, c01, c02, c03 = vzeros(), vzeros(), vzeros(), vzeros()
    c10, c11, c12, c13 = vzeros(), vzeros(), vzeros(), vzeros()
    c20, c21, c22, c23 = vzeros(), vzeros(), vzeros(), vzeros()
    c30, c31, c32, c33 = vzeros(), vzeros(), vzeros(), vzeros()
    for w in range(Kw):
        q = p + w * PANEL
        b0, b1, b2, b3 = vload(bp, q), vload(bp, q + 8), vload(bp, q + 16), vload(bp, q + 24)
        x = vbcast(a, r0 + w)
        c00, c01, c02, c03 = vxpa(c00, x, b0), vxpa(c01, x, b1), vxpa(c02, x, b2), vxpa(c03, x, b3)
        x = vbcast(a, r1 + w)
        c10, c11, c12, c13 = vxpa(c10, x, b0), vxpa(c11, x, b1), vxpa(c12, x, b2), vxpa(c13, x, b3)
        x = vbcast(a, r2 + w)
        c20, c21, c22, c23 = vxpa(c20, x, b0), vxpa(c21, x, b1), vxpa(c22, x, b2), vxpa(c23, x, b3)
        x = vbcast(a, r3 + w)
        c30, c31, c32, c33 = vxpa(c30, x, b0), vxpa(c31, x, b1), vxpa(c32, x, b2), vxpa(c33, x, b3)
    col = jb * PANEL
    _store_row(c, i0, col, k, c00, c01, c02, c03)
    if i0 + 1 < M:
        _store_row(c, i0 + 1, col, k, c10, c11, c12, c13)
    if i0 + 2 < M:
        _store_row(c, i0 + 2, col, k, c20, c21, c22, c23)
    if i0 + 3 < M:
        _store_row(c, i0 + 3, col, k, c30, c31, c32, c33)


@njit(cache=True, parallel=True)
def _gemm(a, bp, c, k):
    nt = (a.shape[0] + ROWS - 1) // ROWS          # row tiles
    nb = bp.shape[0]                                # panels
    # Tile order: blocks of BLOCK_TILES row tiles (their rows of A stay in L2), in a block
    # panel by panel (consecutive tiles of a thread share the panel in L1).
    for t in prange(nb * nt):
        block = t // (nb * BLOCK_TILES)
        first = block * BLOCK_TILES
        size = min(BLOCK_TILES, nt - first)         # tiles in this block
        r = t - first * nb
        _tile(a, bp, c, k, (first + r % size) * ROWS, r // size)


def _check_words(name, x, kw=None, fn="binary_gemm"):
    x = np.asarray(x)
    if x.dtype != np.uint64 or x.ndim != 2 or (kw is not None and x.shape[1] != kw):
        want = "(*, Kw)" if kw is None else f"(*, {kw})"
        raise ValueError(f"{fn}: {name} must be a uint64 array of shape {want}, "
                         f"got {x.dtype} with shape {x.shape}")
    return np.ascontiguousarray(x)


def _check_k(k, kw, fn="binary_gemm"):
    if not (is_integer(k) and 64 * (kw - 1) < k <= 64 * kw):
        raise ValueError(f"{fn}: k must be in ({64 * (kw - 1)}, {64 * kw}] for {kw} words, "
                         f"an integer, got {k!r}")
    return int(k)


def binary_gemm_panels(a, bp, n, k):
    """C = K - 2 popcount(A ^ B) with B given as panels (``to_panels``), e.g. prepacked weights.

    Parameters
    ----------
    a : ndarray of uint64, shape (M, Kw)
    bp : ndarray of uint64, shape (ceil(N / 32), Kw, 32)
    n : int
        Number of real rows of B (columns of C).
    k : int
        Number of real bits per row, ``64 (Kw - 1) < k <= 64 Kw``.

    Returns
    -------
    ndarray of int32, shape (M, N)
    """
    a = _check_words("a", a, fn="binary_gemm_panels")
    bp = np.ascontiguousarray(bp)
    if bp.dtype != np.uint64 or bp.shape != ((int(n) + PANEL - 1) // PANEL, a.shape[1], PANEL):
        raise ValueError(f"binary_gemm_panels: bp must be uint64 panels of shape "
                         f"({(int(n) + PANEL - 1) // PANEL}, {a.shape[1]}, {PANEL}), "
                         f"got {bp.dtype} with shape {bp.shape}")
    k = _check_k(k, a.shape[1], "binary_gemm_panels")
    c = np.empty((a.shape[0], int(n)), np.int32)
    if c.size:
        _gemm(a, bp, c, k)
    return c


def binary_gemm(a, b, k):
    """C[i, j] = K - 2 * sum_w popcount(A[i, w] ^ B[j, w]) = sum_k a[i, k] b[j, k] for +-1 rows.

    Parameters
    ----------
    a : ndarray of uint64, shape (M, Kw)
        M rows of K signs packed by ``pack_signs``.
    b : ndarray of uint64, shape (N, Kw)
        N rows of K signs packed the same way (e.g. a Dense weight (out, in)).
    k : int
        Number of real bits per row, ``64 (Kw - 1) < k <= 64 Kw``.

    Returns
    -------
    ndarray of int32, shape (M, N): ``sign(x) @ sign(W).T`` for a = pack(x), b = pack(W).
    """
    a = _check_words("a", a)
    b = _check_words("b", b, a.shape[1])
    k = _check_k(k, a.shape[1])                              # named as this function's, first
    return binary_gemm_panels(a, to_panels(b), b.shape[0], k)


def gemm_asm():
    """Assembly of the GEMM tile for uint64/int32 arrays, compiled afresh (cached code has none).

    Returns
    -------
    str
        The x86 (or other host) assembly; the tests look for ``vpopcntq`` in it.
    """
    from numba import types
    arr2u = types.Array(types.uint64, 2, "C")
    arr3u = types.Array(types.uint64, 3, "C")
    arr2i = types.Array(types.int32, 2, "C")
    sig = (arr2u, arr3u, arr2i, types.int64, types.int64, types.int64)
    fresh = njit(_tile.py_func)
    fresh.compile(sig)
    return fresh.inspect_asm(sig)
