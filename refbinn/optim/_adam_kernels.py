"""The Numba twin of ``_adam_math.adam_update`` (used by Adam, STE-Adam and PMF): one pass.

It performs exactly the operations of ``adam_update`` in the same order and
the same precision (no fastmath, so no fused multiply-add), so its results are
bit-identical to the NumPy expression; it only avoids the ~12 temporaries NumPy
makes, which dominate an STE-Adam step on the 10M weights of the MNIST MLP.
"""
from __future__ import annotations

import numba
import numpy as np

@numba.njit(parallel=True, cache=True)
def adam_update_kernel(g, m, v, b1, c1, b2, c2, step_size, bc2, eps, delta, m_out, v_out):
    for i in numba.prange(g.size):
        gi = g[i]
        mi = b1 * m[i] + c1 * gi                     # beta1*m + (1-beta1)*g
        vi = b2 * v[i] + c2 * (gi * gi)              # beta2*v + (1-beta2)*g**2
        denom = np.sqrt(vi) / bc2 + eps
        delta[i] = step_size * (mi / denom)
        m_out[i] = mi
        v_out[i] = vi


def adam_update_fused(g, m, v, t, lr, beta1, beta2, eps):
    """``adam_update`` for C-contiguous g, m, v of one float dtype (``adam_step`` checks), bit for bit.

    m' = beta1*m + (1 - beta1)*g,  v' = beta2*v + (1 - beta2)*g**2,
    delta = [lr/(1 - beta1**t)] * (m'/(sqrt(v')/[sqrt(1 - beta2**t)] + [eps]))   (as ``adam_update``)

    Parameters
    ----------
    g, m, v : ndarray, same shape, one dtype (float32 or float64), C-contiguous
        Gradient (weight decay already added) and the moments before the step.
    t : int, >= 1
        This step's number.
    lr, beta1, beta2, eps : float
        As in ``adam_update``; rounded to the arrays' dtype before the kernel runs.

    Returns
    -------
    delta, m_new, v_new : ndarray, like ``g``
        New arrays: the step to subtract from the weight, and m', v'.
    """
    if not g.shape == m.shape == v.shape:                           # the kernel writes g.size elements
        raise ValueError(f"adam_update_fused: g, m and v must have one shape, got {g.shape}, {m.shape} "
                         f"and {v.shape}")
    c = g.dtype.type
    # The constants are rounded to the array dtype exactly as NumPy rounds Python floats
    # (NEP 50): each product/sum below is then the same float32 operation NumPy performs.
    delta, m_new, v_new = np.empty_like(g), np.empty_like(m), np.empty_like(v)
    adam_update_kernel(g.ravel(), m.ravel(), v.ravel(), c(beta1), c(1.0 - beta1), c(beta2), c(1.0 - beta2),
                 c(lr / (1.0 - beta1 ** t)), c(np.sqrt(1.0 - beta2 ** t)), c(eps),
                 delta.ravel(), m_new.ravel(), v_new.ravel())
    return delta, m_new, v_new
