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
    """w_soft = tanh(beta * (u[1] - u[0]) / 2), shape u.shape[1:].

    = softmax(beta*u)[+1] - softmax(beta*u)[-1]: the mean of w in {-1, +1} under the
    softmax of the two auxiliaries.

    Parameters
    ----------
    u : ndarray, shape (2,) + weight shape, float
        Auxiliary reals: ``u[0]`` for the value -1, ``u[1]`` for +1.
    beta : float, > 0
        Softmax inverse temperature (annealed upwards by PMF).

    Returns
    -------
    ndarray, weight shape, dtype of ``u``
        The soft weight, in [-1, 1].
    """
    return np.tanh(beta * (u[1] - u[0]) / 2.0)


def soft_weight_vjp(g, w_soft, beta):
    """dL/du from dL/dw_soft: shape (2,) + g.shape, [-d, +d] with d = g * beta/2 * (1 - w_soft**2).

    The vector-Jacobian product of ``soft_weight`` (d tanh(x)/dx = 1 - tanh(x)**2).

    Parameters
    ----------
    g : ndarray, weight shape
        dL/dw_soft (mean over the passes).
    w_soft : ndarray, weight shape
        ``soft_weight(u, beta)`` at which ``g`` was taken.
    beta : float, > 0
        The inverse temperature of that soft weight.

    Returns
    -------
    ndarray, shape (2,) + ``g.shape``
        dL/du: ``[0]`` = -d (for u[-1]), ``[1]`` = +d (for u[+1]).
    """
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
    lr : float, >= 0
        Adam's step size.
    beta : float, > 0
        The inverse temperature at which ``w_soft`` was computed.
    weight_decay : float, >= 0
        L2 penalty on u, added to dL/du (0: nothing is added).
    beta1, beta2 : float, in [0, 1)
        Adam's moment decay rates.
    eps : float, >= 0
        Adam's eps (torch placement).

    Returns
    -------
    u_new, m_new, v_new : ndarray, shape of ``u``
        u' = u - delta and Adam's new moments.
    """
    gu = soft_weight_vjp(g, w_soft, beta)
    if weight_decay:
        gu = gu + weight_decay * u
    delta, m_new, v_new = adam_update(gu, m, v, t, lr, beta1, beta2, eps)
    return u - delta, m_new, v_new
