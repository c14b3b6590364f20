"""The equation of Adam, in NumPy: the reference of ``adam.py`` (STE and PMF reuse it).

    m'    = beta1*m + (1 - beta1)*g
    v'    = beta2*v + (1 - beta2)*g**2
    delta = [lr/(1 - beta1**t)] * (m'/(sqrt(v')/[sqrt(1 - beta2**t)] + [eps]))   ``adam_update``

(scalars in brackets, and 1 - beta1, 1 - beta2, in float64, rounded once to the dtype).

Its Numba twin is ``_adam_kernels.adam_update_fused`` (bit for bit the same).
"""
from __future__ import annotations

import math

import numpy as np


def adam_update(g, m, v, t, lr, beta1, beta2, eps):
    """One Adam step for one array: return ``(delta, m_new, v_new)``; the new weight is ``p - delta``.

    delta = [lr / (1 - beta1**t)] * (m_new / (sqrt(v_new) / [sqrt(1 - beta2**t)] + [eps])),
    the scalars in brackets computed in float64 and rounded once to g's dtype.

    Parameters
    ----------
    g, m, v : ndarray, same shape and dtype
        Gradient (weight decay already added) and the moments before the step.
    t : int
        This step's number, from 1.
    lr, beta1, beta2, eps : float
        Python floats, so float32 arrays stay float32; lr, eps >= 0, beta1, beta2 in [0, 1).

    Returns
    -------
    delta, m_new, v_new : ndarray, like ``g``
        The step to subtract from the weight, and m', v'.
    """
    m_new = beta1 * m + (1.0 - beta1) * g
    v_new = beta2 * v + (1.0 - beta2) * (g * g)
    step_size = lr / (1.0 - beta1 ** t)
    denom = np.sqrt(v_new) / math.sqrt(1.0 - beta2 ** t) + eps
    return step_size * (m_new / denom), m_new, v_new
