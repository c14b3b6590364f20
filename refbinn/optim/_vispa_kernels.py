"""Fused float32 Numba kernels for VISPA: the fast twins of ``_vispa_math.py``.

``step_fused`` computes what ``step_numpy`` computes for one forward pass, and
``sample_weights_fused`` what ``sample_weights`` computes, each in one parallel
pass over memory and bit for bit (the tests assert equal bits). Only float32 is
covered; which arrays come here is decided in ``vispa.py`` (``_backend.use_kernels``).

References: Orecchia et al., "Training Binary Neural Networks via Gaussian Variational
Inference and Low-Rank Semidefinite Programming", NeurIPS 2024.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

TASK = 16384                  # weights per parallel task of the fused kernels
BLOCK = 128                   # weights per block: the block's K rows of Z stay in L1 between passes
FMAX = np.float32(np.finfo(np.float32).max)     # |x| <= FMAX: x is finite (NaN compares False)
_NO_W = np.empty(0, dtype=np.float32)           # w_out when the kernel emits no weights


# -- the kernels (one pass over memory; the tests assert bit-equality with the NumPy twins) --
# Layout: the kernels see m, vel_m, g as (n,) and Z, vel_Z as (K*n,) flat views, row k of Z
# at k*n ... k*n + n - 1 (the state's own C order). Work goes in tasks of TASK weights (the
# parallel loop), each in blocks of BLOCK weights; per block: the m part, then for
# k = 0..K-1 the k-th row of the block (accumulating sum_k z**2), then the projection,
# which reads the block's K rows of Z back from L1. Flat 1-D slices give unit-stride loops
# that LLVM vectorises; the earlier (K, n) 2-D indexing compiled to gathers and scatters.
# Measured on one thread, 10M weights, K = 8 (a loaded 2-core Xeon): blocks of 64-128
# weights 135-145 ms, 1024 about 180, 4096 about 195; a K-contiguous (n, K) layout with
# the k loop innermost 360 ms (a runtime K does not vectorise).
# error_model="numpy": Python's error model tests every divisor for zero, which stops LLVM
# from vectorising the loops. No fastmath: the twins must round exactly like NumPy.
@njit(cache=True, parallel=True, error_model="numpy")
def step_kernel(m, Z, vm, vZ, g, coef, lr, mom, wd, use_wd, scale, do_project,
                 m_out, Z_out, vm_out, vZ_out, r_next, emit, w_out):
    """``step_numpy`` for one pass, grad_Z formed on the fly (never stored):

        grad_m = g,   grad_Z[k] = coef_k * g,   coef = sqrt(S) * r  (as ``vispa_grads`` rounds it)
        buf = mom*buf + (grad + wd*p),   p = p - lr*buf            (m and every row of Z)
        root_i = sqrt(m_i**2 + (sum_k Z[k, i]**2)/S),   m_i /= root_i,   Z[:, i] /= root_i

    with m_i = 1, Z[:, i] = 0 where root_i = 0 (``project``). With ``emit``, also the next
    step's forward weights from the new (projected) block while it is in L1::

        w_out = sign(m_out + sum_k r_next[k] Z_out[k])     (``sample_weights_kernel``'s order)

    so the next ``forward_params`` need not read m and Z again.

    Parameters
    ----------
    m, vm, g : ndarray, (n,), float32
    Z, vZ : ndarray, (K*n,), float32
        Row k of the (K, n) factor at k*n ... k*n + n - 1.
    coef : ndarray, (K,), float32
    lr, mom, wd, scale : float32
    use_wd, do_project : bool
    m_out, vm_out : ndarray, (n,);  Z_out, vZ_out : ndarray, (K*n,)
        Written; must not overlap the inputs.
    r_next : ndarray, (K,), float32
        The next step's r (read only with ``emit``).
    emit : bool
    w_out : ndarray, (n,), float32
        Written with -1 or +1 when ``emit`` (may be empty otherwise).

    Returns
    -------
    int
        The number of non-finite entries of m_out and Z_out.
    """
    n, K = m.shape[0], coef.shape[0]
    bad = 0
    for t in prange((n + TASK - 1) // TASK):
        sq = np.empty(BLOCK, dtype=m.dtype)          # sum_k z**2, then root, per weight of a block
        nb = 0
        for a in range(t * TASK, min(t * TASK + TASK, n), BLOCK):
            L = min(BLOCK, n - a)
            m_, vm_, g_, mo, vmo = m[a:a + L], vm[a:a + L], g[a:a + L], m_out[a:a + L], vm_out[a:a + L]
            for i in range(L):
                d = g_[i] + wd * m_[i] if use_wd else g_[i]
                v = mom * vm_[i] + d
                vmo[i] = v
                mo[i] = m_[i] - lr * v
                sq[i] = 0
            for k in range(K):
                o = k * n + a
                ck = coef[k]
                z_, vz_, zo, vzo = Z[o:o + L], vZ[o:o + L], Z_out[o:o + L], vZ_out[o:o + L]
                for i in range(L):
                    gz = ck * g_[i]
                    d = gz + wd * z_[i] if use_wd else gz
                    v = mom * vz_[i] + d
                    vzo[i] = v
                    z = z_[i] - lr * v
                    zo[i] = z
                    sq[i] += z * z
            if do_project:
                for i in range(L):
                    mi = mo[i]
                    root = np.sqrt(mi * mi + sq[i] / scale)
                    sq[i] = root
                    q = mi / root if root != 0 else np.float32(1)   # root = 0 iff A = 0
                    mo[i] = q
                    nb += 0 if np.abs(q) <= FMAX else 1
                for k in range(K):
                    zo = Z_out[k * n + a:k * n + a + L]
                    for i in range(L):
                        root = sq[i]
                        q = zo[i] / root if root != 0 else np.float32(0)   # +0, as ``project``
                        zo[i] = q
                        nb += 0 if np.abs(q) <= FMAX else 1
            else:
                for i in range(L):
                    nb += 0 if np.abs(mo[i]) <= FMAX else 1
                for k in range(K):
                    zo = Z_out[k * n + a:k * n + a + L]
                    for i in range(L):
                        nb += 0 if np.abs(zo[i]) <= FMAX else 1
            if emit:                                 # the block's new m and Z rows are in L1
                _block_signs(mo, Z_out, r_next, n, a, w_out[a:a + L])
        bad += nb
    return bad


@njit(cache=True, parallel=True, error_model="numpy")
def sample_weights_kernel(m, Z, r, out):
    """``sample_weights``: out = sign(m + sum_k r_k Z[k]), summed over k = 0, 1, ... in order.

    Parameters
    ----------
    m : ndarray, (n,), float32
    Z : ndarray, (K*n,), float32
        Row k at k*n ... k*n + n - 1.
    r : ndarray, (K,), float32
    out : ndarray, (n,), float32
        Written with -1 or +1 (0 -> +1, NaN -> -1, as ``refbinn.nn.sign``).
    """
    n = m.shape[0]
    for t in prange((n + TASK - 1) // TASK):
        for a in range(t * TASK, min(t * TASK + TASK, n), BLOCK):
            L = min(BLOCK, n - a)
            _block_signs(m[a:a + L], Z, r, n, a, out[a:a + L])


@njit(cache=True, error_model="numpy")
def _block_signs(m_blk, Z, r, n, a, w):
    """w = sign(m_blk + sum_k r_k Z[k*n + a : k*n + a + L]), k = 0, 1, ... in order, accumulated
    in place in w (L1); 0 -> +1, NaN -> -1. One block of ``sample_weights_kernel``, and of
    ``step_kernel``'s next weights (so the two give the same bits by construction)."""
    L = w.shape[0]
    w[:] = m_blk
    for k in range(r.shape[0]):
        rk = r[k]
        z_ = Z[k * n + a:k * n + a + L]
        for i in range(L):
            w[i] += rk * z_[i]
    for i in range(L):
        w[i] = np.float32(1) if w[i] >= 0 else np.float32(-1)


# -- calls from ``VISPA``: flat views of C-order arrays, outputs from the optimizer's pool --
def step_fused(pool, m, Z, vm, vZ, g, r, lr, momentum, weight_decay, scale, do_project, r_next=None):
    """``step_numpy`` for one pass in ``step_kernel``; None if m or Z came out non-finite.

    With ``r_next``, the kernel also writes ``sample_weights(m_new, Z_new, r_next)``
    (the same bits), the next step's forward weights, in the same pass.

    Outputs come from the pool: a 10M-weight K = 8 step writes 0.7 GB, and fresh
    pages cost a page fault and zeroing each (measured on one thread: 310 ms a step
    with fresh outputs, 185 ms with pooled ones, for a 150 ms kernel).

    Parameters
    ----------
    pool : ArrayPool
    m, vm, g : ndarray, weight shape, float32
    Z, vZ : ndarray, (K,) + weight shape, float32
    r : ndarray, (K,), float32
    lr, momentum, weight_decay, scale : float
    do_project : bool
    r_next : ndarray, (K,), float32, optional
        The next step's r.

    Returns
    -------
    (m, Z, vel_m, vel_Z, w) : pooled arrays, shapes of the inputs (w: the weight shape,
        None without ``r_next``); or None
    """
    t = m.dtype.type
    m, Z, vm, vZ, g = (np.ascontiguousarray(a) for a in (m, Z, vm, vZ, g))
    flat = lambda a: a.reshape(-1)                                       # (n,) or (K*n,): views
    outs = tuple(pool.empty_like(a) for a in (m, Z, m, Z))             # m, Z, vel_m, vel_Z
    coef = r * math.sqrt(scale)                                          # as in vispa_grads
    emit = r_next is not None
    w = pool.empty_like(m) if emit else None
    bad = step_kernel(flat(m), flat(Z), flat(vm), flat(vZ), flat(g), coef, t(lr),
                       t(momentum), t(weight_decay), weight_decay != 0,
                       t(scale), do_project, *(o.reshape(-1) for o in outs),
                       r_next if emit else coef, emit, flat(w) if emit else _NO_W)
    return None if bad else outs + (w,)


def sample_weights_fused(pool, m, Z, r):
    """sign(m + Z^T r) in ``sample_weights_kernel``, the output from the pool.

    Parameters
    ----------
    pool : ArrayPool
    m : ndarray, weight shape, float32
    Z : ndarray, (K,) + weight shape, float32
    r : ndarray, (K,), float32

    Returns
    -------
    ndarray, weight shape, float32, values exactly -1 or +1
    """
    m = np.ascontiguousarray(m)                  # the pool hands out C-order arrays
    w = pool.empty_like(m)
    sample_weights_kernel(m.reshape(-1), np.ascontiguousarray(Z).reshape(-1), r,
                 w.reshape(-1))                                      # (n,), (K*n,)
    return w
