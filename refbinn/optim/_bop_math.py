"""The equations of Bop, in NumPy: the reference of ``bop.py`` (Bop has no kernels: two
elementwise passes over memory that NumPy already makes at its speed).

    m' = (1 - gamma)*m + gamma*g                     ``bop_momentum``
    w' = -w where w*m' > threshold, else w            ``bop_flip``
"""
from __future__ import annotations

import numpy as np


def bop_momentum(m, g, gamma):
    """m' = (1 - gamma)*m + gamma*g: the exponential moving average of the gradient.

    Parameters
    ----------
    m : ndarray
        The moving average before the step.
    g : ndarray, shape of ``m``
        The gradient at the binary weights (mean over the passes).
    gamma : float, in [0, 1]
        Adaptivity rate (0 keeps m).

    Returns
    -------
    ndarray, shape and dtype of ``m``
        m'.

    References
    ----------
    Helwegen et al. (2019), Algorithm 1 (the moving-average line).
    """
    return (1.0 - gamma) * m + gamma * g


def bop_flip(w, m, threshold):
    """Return -w where w * m > threshold, else w (same dtype).

    Parameters
    ----------
    w : ndarray
        Binary weights, exactly -1 or +1.
    m : ndarray, shape of ``w``
        The moving average after this step's ``bop_momentum``.
    threshold : float, >= 0
        The flip threshold tau; the comparison is strict.

    Returns
    -------
    ndarray, shape and dtype of ``w``
        The weights after the flip test, still exactly -1 or +1.

    References
    ----------
    Helwegen et al. (2019), Algorithm 1 (the flip line).
    """
    return np.where(w * m > threshold, -w, w)
