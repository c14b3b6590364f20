"""The equations of VISPA, one NumPy function each: the reference of ``vispa.py``.

    sigma  = sqrt(2 / (fan_in + fan_out))                   ``xavier_std`` (initial m and Z)
    w      = m + Z^T r,   w_b = sign(w)                     ``gaussian_weights``, ``sample_weights``
    grad_m = g,   grad_Z[k] = sqrt(S) * r_k * g             ``vispa_grads``
    buf    = momentum*buf + (grad + wd*p),   p = p - lr*buf ``sgd_momentum``
    v_i    = v_i / ||v_i||,   v_i = (m_i, Z[:, i]/sqrt(S))  ``project``
    the three above, for one parameter                      ``step_numpy``

Symbols, the paper's names and the fixed order of floating-point operations are in
the docstring of ``refbinn/optim/vispa.py``, which re-exports every function here
(import them from there). The float32 Numba kernels of ``_vispa_kernels.py`` reproduce
these bit for bit.

References: Orecchia et al., "Training Binary Neural Networks via Gaussian Variational
Inference and Low-Rank Semidefinite Programming", NeurIPS 2024.
"""
from __future__ import annotations

import math

import numpy as np

from ..nn.base import sign


# -- the math, one function per equation -------------------------------------------------
def xavier_std(shape):
    """sqrt(2 / (fan_in + fan_out)), the Xavier-normal (Glorot) std with gain 1, fans as torch computes them.

    For a weight of shape (out, in, *kernel): fan_in = in * prod(kernel),
    fan_out = out * prod(kernel) (torch ``_calculate_fan_in_and_fan_out``). torch refuses
    fewer than 2 dimensions; here a 1-D parameter of length n counts as an (n, 1) matrix
    (fan_in = 1, fan_out = n) and a scalar as (1, 1). The value does not matter after
    ``project``: m_i and Z[:, i] share the std, and the projection divides it out.

    Parameters
    ----------
    shape : tuple of int
        The weight's shape (not the factor's).

    Returns
    -------
    float
        The standard deviation, > 0.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        fan_out, fan_in = (shape[0] if shape else 1), 1
    else:
        field = int(np.prod(shape[2:], dtype=np.int64))
        fan_out, fan_in = shape[0] * field, shape[1] * field
    return math.sqrt(2.0 / (fan_in + fan_out))


def project(m, Z, scale):
    """Scale each v_i = (m_i, Z[:, i]/sqrt(S)) to unit length:

        A_i = m_i**2 + (1/S) sum_k Z[k, i]**2,   m_i <- m_i/sqrt(A_i),   Z[:, i] <- Z[:, i]/sqrt(A_i)

    A_i = 0 gives m_i = 1, Z[:, i] = 0 (the weight sign(0) = +1 already had).

    Parameters
    ----------
    m : ndarray, weight shape, float
    Z : ndarray, (K,) + weight shape, dtype of ``m``
    scale : float > 0
        S.

    Returns
    -------
    (m, Z) : new arrays, shapes and dtype of the inputs
    """
    m = np.asarray(m)
    dt = m.dtype
    sq = np.zeros_like(m)
    for z in Z:                                     # k = 0, 1, ..., K-1: a fixed order for ports
        sq += z * z
    A = m * m + sq / dt.type(scale)
    zero = A == 0
    root = np.sqrt(np.where(zero, dt.type(1), A))
    m_new = np.where(zero, dt.type(1), m / root)
    Z_new = np.where(zero, dt.type(0), Z / root)     # root broadcasts over the K axis
    return m_new, Z_new


def gaussian_weights(m, Z, r):
    """w = m + Z^T r = m + sum_k r_k Z[k], summed over k = 0, 1, ... in order.

    Parameters
    ----------
    m : ndarray, weight shape
    Z : ndarray, (K,) + weight shape
    r : ndarray, (K,)

    Returns
    -------
    ndarray, weight shape, dtype of ``m``
    """
    w = np.array(m, copy=True)
    r = np.asarray(r, dtype=w.dtype)
    for k in range(len(r)):
        w += r[k] * Z[k]
    return w


def sample_weights(m, Z, r):
    """w_b = sign(m + Z^T r) in {-1, +1} (0 -> +1, ``refbinn.nn.sign``): one binary network.

    Parameters
    ----------
    m : ndarray, weight shape
    Z : ndarray, (K,) + weight shape
    r : ndarray, (K,), a draw of N(0, I_K/S)

    Returns
    -------
    ndarray, weight shape, dtype of ``m``, values exactly -1 or +1
    """
    return sign(gaussian_weights(m, Z, r))


def vispa_grads(g, r, scale):
    """grad_m = g,   grad_Z[k] = sqrt(S) * r_k * g   (straight-through: dw_b/dw taken as 1).

    grad_Z is d/dV of L(m + V^T xi) at V = Z/sqrt(S), xi = sqrt(S) r.

    Parameters
    ----------
    g : ndarray, weight shape
        d loss/d w_b at the binary weights of this forward pass.
    r : ndarray, (K,)
        The noise that forward pass used.
    scale : float > 0
        S.

    Returns
    -------
    (grad_m, grad_Z) : ndarrays, weight shape and (K,) + weight shape, dtype of ``g``
    """
    g = np.asarray(g)
    coef = np.asarray(r, dtype=g.dtype) * math.sqrt(scale)                  # (K,)
    return g, coef.reshape(coef.shape + (1,) * g.ndim) * g                  # (K,) + weight shape


def sgd_momentum(p, buf, grad, lr, momentum, weight_decay):
    """torch SGD (dampening 0, no Nesterov):  buf = momentum*buf + (grad + wd*p);  p = p - lr*buf.

    torch starts the buffer as a copy of the first step's d = grad + wd*p; with buf = 0
    the formula above gives the same d. Python-float hyperparameters keep float32 float32.

    Parameters
    ----------
    p, buf, grad : ndarray, same shape and dtype
    lr, momentum, weight_decay : float

    Returns
    -------
    (p_new, buf_new) : new arrays
    """
    d = grad + weight_decay * p if weight_decay else grad
    buf_new = momentum * buf + d
    return p - lr * buf_new, buf_new


def step_numpy(m, Z, vel_m, vel_Z, grads, noise, lr, momentum, weight_decay, scale, do_project):
    """The reference step for one parameter: ``vispa_grads`` (averaged over passes),
    ``sgd_momentum`` on m and on Z, then ``project``.

    Parameters
    ----------
    m, vel_m : ndarray, weight shape
    Z, vel_Z : ndarray, (K,) + weight shape
    grads : list of ndarray, weight shape, dtype of ``m``
        d loss/d w_b of each pass.
    noise : list of ndarray, (K,)
        The r of each pass.
    lr, momentum, weight_decay, scale : float
    do_project : bool

    Returns
    -------
    (m, Z, vel_m, vel_Z) : new arrays
    """
    dt = m.dtype
    gm = gZ = None
    for g, r in zip(grads, noise):
        a, b = vispa_grads(g, r, scale)
        gm, gZ = (a, b) if gm is None else (gm + a, gZ + b)
    if len(grads) > 1:
        gm, gZ = gm / dt.type(len(grads)), gZ / dt.type(len(grads))
    m_new, vm_new = sgd_momentum(m, vel_m, gm, lr, momentum, weight_decay)
    Z_new, vZ_new = sgd_momentum(Z, vel_Z, gZ, lr, momentum, weight_decay)
    if do_project:
        m_new, Z_new = project(m_new, Z_new, scale)
    return m_new, Z_new, vm_new, vZ_new
