"""The equations of Bop, in NumPy: the reference of ``bop.py`` (Bop has no kernels: two
elementwise passes over memory that NumPy already makes at its speed).

    m' = (1 - gamma)*m + gamma*g                     ``bop_momentum``
    w' = -w where w*m' > threshold, else w            ``bop_flip``
"""
from __future__ import annotations

import numpy as np


def bop_momentum(m, g, gamma):
    """m' = (1 - gamma)*m + gamma*g: the exponential moving average of the gradient."""
    return (1.0 - gamma) * m + gamma * g


def bop_flip(w, m, threshold):
    """Return -w where w * m > threshold, else w (same dtype)."""
    return np.where(w * m > threshold, -w, w)
