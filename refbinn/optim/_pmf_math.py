"""The equations of PMF, in NumPy: the reference of ``pmf.py``.

    w_soft = tanh(beta * (u[+1] - u[-1]) / 2)                                 ``soft_weight``
    dL/du  = [-d, +d],  d = g * beta/2 * (1 - w_soft**2)                      ``soft_weight_vjp``
    u'     = u - adam_update(dL/du + weight_decay*u)                          ``pmf_step``

Their Numba twins (``soft_weight_fused``, ``pmf_step_fused``) are in ``_pmf_kernels.py``.
"""
from __future__ import annotations

import numpy as np

from ._adam_math import adam_update


def soft_weight(u, beta):
    """w_soft = tanh(beta * (u[1] - u[0]) / 2), shape u.shape[1:]."""
    return np.tanh(beta * (u[1] - u[0]) / 2.0)


def soft_weight_vjp(g, w_soft, beta):
    """dL/du from dL/dw_soft: shape (2,) + g.shape, [-d, +d] with d = g * beta/2 * (1 - w_soft**2)."""
    d = g * (beta / 2.0) * (1.0 - w_soft * w_soft)
    return np.stack([-d, d])                                  # (2,) + w.shape


def pmf_step(g, w_soft, u, m, v, t, lr, beta, weight_decay, beta1, beta2, eps):
    """One PMF step of one weight array: ``(u', m', v')``, Adam on dL/du + weight_decay*u.

    Parameters
    ----------
    g, w_soft : ndarray, weight shape
        Mean gradient at the soft weight, and the soft weight.
    u, m, v : ndarray, (2,) + weight shape
        Auxiliaries and their Adam moments.
    t : int
        This step's number, from 1.
    """
    gu = soft_weight_vjp(g, w_soft, beta)
    if weight_decay:
        gu = gu + weight_decay * u
    delta, m_new, v_new = adam_update(gu, m, v, t, lr, beta1, beta2, eps)
    return u - delta, m_new, v_new
