"""The equations of STE-Adam, in NumPy: the reference of ``ste.py``.

    g   <- clip(g, -c, c)                                         ``clip_by_value``
    g   <- g * min(1, c / (||g||_2 + 1e-6))                        ``clip_by_global_norm``
    w_l <- clip(w_l - adam_step(g), -1, 1)                         (``adam.adam_step``, then ``clip_latent``)

STE has no kernels of its own: its Adam step runs in ``_adam_kernels`` (through
``adam.adam_step``) and the rest is a single cheap NumPy pass.
"""
from __future__ import annotations

import math

import numpy as np


def clip_by_value(g, clip_value):
    """g_k <- clip(g_k, -c, c) for every array.

    Parameters
    ----------
    g : dict name -> ndarray
        The gradients (mean over the passes).
    clip_value : float, > 0
        c, the bound on every entry.

    Returns
    -------
    dict name -> ndarray
        New arrays, same keys, shapes and dtypes.
    """
    return {k: np.clip(v, -clip_value, clip_value) for k, v in g.items()}


def clip_by_global_norm(g, clip_norm):
    """g_k <- g_k * min(1, c / (sqrt(sum_k ||g_k||^2) + 1e-6)), torch ``clip_grad_norm_``.

    The norm is summed in float64 over all arrays together (one global norm).

    Parameters
    ----------
    g : dict name -> ndarray
        The gradients (mean over the passes).
    clip_norm : float, > 0
        c, the largest global L2 norm let through.

    Returns
    -------
    dict name -> ndarray
        ``g`` itself when the factor is >= 1, else new arrays ``g_k * dtype(factor)``: the
        factor is computed in float64 and rounded to each array's dtype before the product.
    """
    total = math.sqrt(sum(float(np.sum(np.square(v, dtype=np.float64))) for v in g.values()))
    if total == math.inf:                  # squares beyond float64 (|g| > 1e154): scale by the largest |g|
        big = max(float(np.max(np.abs(v), initial=0.0)) for v in g.values())
        total = big * math.sqrt(sum(float(np.sum(np.square(v / big, dtype=np.float64))) for v in g.values()))
    coef = clip_norm / (total + 1e-6)
    if coef >= 1.0:
        return g
    return {k: v * coef for k, v in g.items()}


def clip_latent(w):
    """w_l = clip(w_l, -1, 1), the latent weights' box.

    Parameters
    ----------
    w : ndarray, float
        Latent weights, after the Adam step (or the initial parameters).

    Returns
    -------
    ndarray, shape and dtype of ``w``
        A new array with entries in [-1, 1].
    """
    return np.clip(w, -1.0, 1.0)
