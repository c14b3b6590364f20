"""Fused Numba passes for BatchNorm -> ReLU [-> Dropout] on (N, C) inputs, and for Dropout alone.

The layers' NumPy code makes one pass over memory per operation (centre, square-sum, scale,
max, compare, two multiplies; backward as many). These kernels do the same IEEE operations,
each rounded to the array's dtype, in the same order, so the results are BIT-IDENTICAL to the
layers' NumPy forms (tests/test_nn_fast.py asserts it against the ``*_numpy`` twins below):

* a per-channel sum is accumulated over n = 0, 1, ..., N-1 from 0, one rounding per add,
  which is what ``x.sum(axis=0)``, ``x.mean(axis=0)`` and ``np.einsum("nc,nc->c", a, b)``
  (a product rounded, then added) do on a C-order (N, C) array;
* no fastmath and no FMA contraction (Numba emits neither without ``fastmath``);
* scalars arrive already in the array's dtype (``p``, ``1/(1-p)``, 0, 1), as NumPy's
  weak Python scalars (NEP 50) would be cast.

The reductions go over blocks of ``_BLOCK`` channels: a block of a (100, C) batch is
100 x 256 values, small enough to stay in cache between ``center``'s two sweeps.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_BLOCK = 256          # channels per block of the reductions
_JIT = dict(cache=True, error_model="numpy")
# Serial on purpose: a pass over a (100, 2048) batch takes ~20 us, less than waking threads, and
# threads that spin on a shared machine cost milliseconds. Loops index 0-based slices
# (x[i, lo:hi][j], not x[i, lo + j]) so that Numba drops its negative-index checks and vectorises.


# -- kernels ------------------------------------------------------------------------------------
@njit(**_JIT)
def _center_kernel(x, nf, d, mean, sq):
    """mean = sum_n x / N; d = x - mean; sq = sum_n d * d (per channel, sequential in n)."""
    n, c = x.shape
    for lo in range(0, c, _BLOCK):
        hi = min(c, lo + _BLOCK)
        mb, sb = mean[lo:hi], sq[lo:hi]
        mb[:] = 0
        sb[:] = 0
        for i in range(n):
            xr = x[i, lo:hi]
            for j in range(hi - lo):
                mb[j] = mb[j] + xr[j]
        for j in range(hi - lo):
            mb[j] = mb[j] / nf
        for i in range(n):
            xr, dr = x[i, lo:hi], d[i, lo:hi]
            for j in range(hi - lo):
                v = xr[j] - mb[j]
                dr[j] = v
                sb[j] = sb[j] + v * v


@njit(**_JIT)
def _scale_relu_kernel(d, inv_std, zero, out):
    """d *= inv_std (in place: BatchNorm's xhat); out = max(d, 0) (NaN kept, -0 -> +0)."""
    n, c = d.shape
    for i in range(n):
        dr, yr = d[i], out[i]
        for j in range(c):
            v = dr[j] * inv_std[j]
            dr[j] = v
            yr[j] = v if (v > 0 or v != v) else zero


@njit(**_JIT)
def _scale_relu_dropout_kernel(d, inv_std, u, p, scale, zero, one, keep, out):
    """d *= inv_std; keep = u >= p; out = (max(d, 0) * keep) * scale."""
    n, c = d.shape
    for i in range(n):
        dr, ur, kr, yr = d[i], u[i], keep[i], out[i]
        for j in range(c):
            v = dr[j] * inv_std[j]
            dr[j] = v
            r = v if (v > 0 or v != v) else zero
            k = ur[j] >= p
            kr[j] = k
            yr[j] = (r * (one if k else zero)) * scale


@njit(**_JIT)
def _dropout_kernel(x, u, p, scale, zero, one, keep, out):
    """keep = u >= p; out = (x * keep) * scale."""
    n, c = x.shape
    for i in range(n):
        xr, ur, kr, yr = x[i], u[i], keep[i], out[i]
        for j in range(c):
            k = ur[j] >= p
            kr[j] = k
            yr[j] = (xr[j] * (one if k else zero)) * scale


@njit(**_JIT)
def _relu_grad_sums_kernel(dy, xhat, zero, one, g, s_gx, s_g):
    """g = dy * (xhat > 0); s_gx = sum_n g * xhat; s_g = sum_n g."""
    n, c = dy.shape
    for lo in range(0, c, _BLOCK):
        hi = min(c, lo + _BLOCK)
        ab, bb = s_gx[lo:hi], s_g[lo:hi]
        ab[:] = 0
        bb[:] = 0
        for i in range(n):
            dr, xr, gr = dy[i, lo:hi], xhat[i, lo:hi], g[i, lo:hi]
            for j in range(hi - lo):
                xh = xr[j]
                v = dr[j] * (one if xh > 0 else zero)
                gr[j] = v
                ab[j] = ab[j] + v * xh
                bb[j] = bb[j] + v


@njit(**_JIT)
def _dropout_relu_grad_sums_kernel(dy, keep, scale, xhat, zero, one, g, s_gx, s_g):
    """g = ((dy * keep) * scale) * (xhat > 0); s_gx = sum_n g * xhat; s_g = sum_n g."""
    n, c = dy.shape
    for lo in range(0, c, _BLOCK):
        hi = min(c, lo + _BLOCK)
        ab, bb = s_gx[lo:hi], s_g[lo:hi]
        ab[:] = 0
        bb[:] = 0
        for i in range(n):
            dr, kr, xr, gr = dy[i, lo:hi], keep[i, lo:hi], xhat[i, lo:hi], g[i, lo:hi]
            for j in range(hi - lo):
                xh = xr[j]
                v = ((dr[j] * (one if kr[j] else zero)) * scale) * (one if xh > 0 else zero)
                gr[j] = v
                ab[j] = ab[j] + v * xh
                bb[j] = bb[j] + v


@njit(**_JIT)
def _bn_dx_kernel(xhat, a, b, inv_std, g):
    """g = ((xhat * a + g) - b) * inv_std, in place (BatchNorm's training backward)."""
    n, c = g.shape
    for i in range(n):
        xr, gr = xhat[i], g[i]
        for j in range(c):
            gr[j] = ((xr[j] * a[j] + gr[j]) - b[j]) * inv_std[j]


# -- calls from the layers ----------------------------------------------------------------------
def fusable(*arrays, sums=False):
    """True if every array is 2-D, C-contiguous, and the float ones share one float dtype.

    ``sums=True``: also at least 2 columns. With one column, axis 0 is contiguous in memory
    and NumPy's ``sum``/``einsum`` switch to pairwise / unrolled summation, another order.
    """
    dt = None
    for a in arrays:
        if sums and not (isinstance(a, np.ndarray) and a.ndim == 2 and a.shape[1] >= 2):
            return False
        if not (isinstance(a, np.ndarray) and a.ndim == 2 and a.flags.c_contiguous):
            return False
        if a.dtype != np.bool_:
            if a.dtype not in (np.float32, np.float64) or (dt is not None and a.dtype != dt):
                return False
            dt = a.dtype
    return True


def center(x):
    """(d, mean, sq): mean = x.mean(axis=0), d = x - mean, sq = einsum("nc,nc->c", d, d).

    Parameters
    ----------
    x : ndarray, (N, C), C-order float32 or float64

    Returns
    -------
    d : ndarray, (N, C)
    mean, sq : ndarray, (C,)
    """
    t = x.dtype.type
    d = np.empty_like(x)
    mean, sq = np.empty(x.shape[1], x.dtype), np.empty(x.shape[1], x.dtype)
    _center_kernel(x, t(x.shape[0]), d, mean, sq)
    return d, mean, sq


def scale_relu(d, inv_std, u=None, p=0.0, scale=1.0):
    """In place d *= inv_std; return (y, keep): y = max(d, 0) [then (y * keep) * scale, keep = u >= p].

    Parameters
    ----------
    d : ndarray, (N, C)
        Centred input; becomes BatchNorm's xhat.
    inv_std : ndarray, (C,)
    u : ndarray, (N, C) float32, optional
        Dropout's uniforms; None: no dropout (``keep`` is None).
    p, scale : float
        Dropout probability (compared in u's dtype, float32) and 1 / (1 - p) (in d's dtype).

    Returns
    -------
    y : ndarray, (N, C)
    keep : ndarray of bool, (N, C), or None
    """
    t = d.dtype.type
    y = np.empty_like(d)
    if u is None:
        _scale_relu_kernel(d, inv_std, t(0), y)
        return y, None
    keep = np.empty(d.shape, np.bool_)
    _scale_relu_dropout_kernel(d, inv_std, u, u.dtype.type(p), t(scale), t(0), t(1), keep, y)
    return y, keep


def dropout(x, u, p, scale):
    """(y, keep): keep = u >= p (in u's dtype), y = (x * keep) * scale (in x's dtype)."""
    t = x.dtype.type
    y = np.empty_like(x)
    keep = np.empty(x.shape, np.bool_)
    _dropout_kernel(x, u, u.dtype.type(p), t(scale), t(0), t(1), keep, y)
    return y, keep


def relu_grad_sums(dy, xhat, keep=None, scale=1.0):
    """(g, s_gx, s_g): g = dy [* keep * scale] * (xhat > 0); s_gx = einsum(g, xhat), s_g = g.sum(0).

    Parameters
    ----------
    dy : ndarray, (N, C)
    xhat : ndarray, (N, C)
        BatchNorm's normalised output, which is also the ReLU's input.
    keep : ndarray of bool, (N, C), optional
        Dropout's mask (None: no dropout between the ReLU and ``dy``).
    scale : float
        Dropout's 1 / (1 - p).

    Returns
    -------
    g : ndarray, (N, C)
        d loss / d xhat.
    s_gx, s_g : ndarray, (C,)
    """
    t = dy.dtype.type
    g = np.empty_like(dy)
    s_gx, s_g = np.empty(dy.shape[1], dy.dtype), np.empty(dy.shape[1], dy.dtype)
    if keep is None:
        _relu_grad_sums_kernel(dy, xhat, t(0), t(1), g, s_gx, s_g)
    else:
        _dropout_relu_grad_sums_kernel(dy, keep, t(scale), xhat, t(0), t(1), g, s_gx, s_g)
    return g, s_gx, s_g


def bn_dx(xhat, a, b, inv_std, g):
    """In place g = ((xhat * a + g) - b) * inv_std; returns g. a, b, inv_std: (C,)."""
    _bn_dx_kernel(xhat, a, b, inv_std, g)
    return g


# -- NumPy twins (the layers' own operations; tests assert equality) -----------------------------
def center_numpy(x):
    mean = x.mean(axis=0)
    d = x - mean
    return d, mean, np.einsum("nc,nc->c", d, d)


def scale_relu_numpy(d, inv_std, u=None, p=0.0, scale=1.0):
    d *= inv_std
    y = np.maximum(d, 0)
    if u is None:
        return y, None
    keep = u >= p
    y = y * keep
    y *= scale
    return y, keep


def dropout_numpy(x, u, p, scale):
    keep = u >= p
    y = x * keep
    y *= scale
    return y, keep


def relu_grad_sums_numpy(dy, xhat, keep=None, scale=1.0):
    if keep is not None:
        dy = dy * keep
        dy *= scale
    g = dy * (xhat > 0)
    return g, np.einsum("nc,nc->c", g, xhat), g.sum(axis=0)


def bn_dx_numpy(xhat, a, b, inv_std, g):
    dx = xhat * a
    dx += g
    dx -= b
    dx *= inv_std
    return dx
