"""The Numba twins of ``_pmf_math.py``: ``soft_weight_fused`` and ``pmf_step_fused``, one pass each.

The NumPy step makes ~20 passes over the 2 x 10M auxiliaries of the MNIST MLP (the
stacked gradient, weight decay, Adam, ``u - delta``); these kernels make one. They
perform the same float operations in the same order and precision (no fastmath,
so no fused multiply-add; constants rounded to the array dtype as NumPy rounds
Python floats), so the results are bit-identical. ``tanh`` stays NumPy's, applied in
place to the kernel's output: Numba's libm ``tanh`` need not round like NumPy's SIMD one.
"""
from __future__ import annotations

import numba
import numpy as np

@numba.njit(parallel=True, cache=True)
def soft_weight_kernel(u0, u1, beta, two, out):
    for i in numba.prange(out.size):
        out[i] = beta * (u1[i] - u0[i]) / two             # beta * (u[+1] - u[-1]) / 2


@numba.njit(parallel=True, cache=True)
def pmf_step_kernel(g, w, u0, u1, m0, m1, v0, v1, half_beta, one, wd, use_wd,
                   b1, c1, b2, c2, step_size, bc2, eps, u_out0, u_out1, m_out0, m_out1, v_out0, v_out1):
    for i in numba.prange(g.size):
        wi = w[i]
        d = g[i] * half_beta * (one - wi * wi)             # dL/du[+1]; dL/du[-1] = -d
        ga = -d
        gb = d
        if use_wd:
            ga = ga + wd * u0[i]
            gb = gb + wd * u1[i]
        ma = b1 * m0[i] + c1 * ga                          # Adam, as _adam_math.adam_update
        va = b2 * v0[i] + c2 * (ga * ga)
        mb = b1 * m1[i] + c1 * gb
        vb = b2 * v1[i] + c2 * (gb * gb)
        u_out0[i] = u0[i] - step_size * (ma / (np.sqrt(va) / bc2 + eps))
        u_out1[i] = u1[i] - step_size * (mb / (np.sqrt(vb) / bc2 + eps))
        m_out0[i] = ma
        m_out1[i] = mb
        v_out0[i] = va
        v_out1[i] = vb


def soft_weight_fused(u, beta):
    """``soft_weight`` for a C-contiguous float u (``PMF._soft_weight`` checks), bit for bit.

    w_soft = tanh(beta * (u[1] - u[0]) / 2): the argument in one Numba pass, then NumPy's
    ``tanh`` in place.

    Parameters
    ----------
    u : ndarray, shape (2,) + weight shape, float32 or float64, C-contiguous
        Auxiliary reals (``[0]`` for -1, ``[1]`` for +1).
    beta : float, > 0
        Softmax inverse temperature; rounded to u's dtype.

    Returns
    -------
    ndarray, weight shape, dtype of ``u``
        A new array, the soft weight in [-1, 1].
    """
    c = u.dtype.type
    out = np.empty(u.shape[1:], dtype=u.dtype)
    soft_weight_kernel(u[0].ravel(), u[1].ravel(), c(beta), c(2.0), out.ravel())
    return np.tanh(out, out=out)


def pmf_step_fused(g, w, u, m, v, t, lr, beta, weight_decay, beta1, beta2, eps):
    """``pmf_step`` for one weight array: return ``(u_new, m_new, v_new)`` (C-contiguous inputs of
    one float dtype; ``PMF._step`` checks).

    Parameters
    ----------
    g, w : ndarray, shape w.shape
        Mean gradient at the soft weight, and the soft weight tanh(beta (u[1] - u[0]) / 2).
    u, m, v : ndarray, shape (2,) + w.shape
        Auxiliaries and their Adam moments.
    t : int
        This step's number, from 1.
    lr, beta, weight_decay, beta1, beta2, eps : float
        As in ``pmf_step`` (``beta`` is the inverse temperature of ``w``); rounded to the
        arrays' dtype before the kernel runs.

    Returns
    -------
    u_new, m_new, v_new : ndarray, shape of ``u``
        New arrays: u' = u - delta and Adam's new moments, equal bit for bit to ``pmf_step``'s.
    """
    if not (u.shape == m.shape == v.shape == (2,) + g.shape and w.shape == g.shape):
        raise ValueError(f"pmf_step_fused: u, m, v must have shape (2,) + {g.shape} and w {g.shape}, got "
                         f"{u.shape}, {m.shape}, {v.shape} and {w.shape}")   # the kernel writes g.size each
    c = g.dtype.type
    u_new, m_new, v_new = np.empty_like(u), np.empty_like(m), np.empty_like(v)
    pmf_step_kernel(g.ravel(), w.ravel(), u[0].ravel(), u[1].ravel(), m[0].ravel(), m[1].ravel(),
                   v[0].ravel(), v[1].ravel(), c(beta / 2.0), c(1.0), c(weight_decay), bool(weight_decay),
                   c(beta1), c(1.0 - beta1), c(beta2), c(1.0 - beta2),
                   c(lr / (1.0 - beta1 ** t)), c(np.sqrt(1.0 - beta2 ** t)), c(eps),
                   u_new[0].ravel(), u_new[1].ravel(), m_new[0].ravel(), m_new[1].ravel(),
                   v_new[0].ravel(), v_new[1].ravel())
    return u_new, m_new, v_new
