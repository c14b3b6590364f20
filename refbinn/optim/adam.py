"""Adam for real-valued parameters (full-precision baseline, biases, BN affine).

PyTorch's ``torch.optim.Adam`` (``amsgrad=False``), with L2 weight decay added
to the gradient (not AdamW's decoupled decay). At step t = 1, 2, ...::

    g  <- g + weight_decay * p
    m  <- beta1 * m + (1 - beta1) * g
    v  <- beta2 * v + (1 - beta2) * g**2
    p  <- p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

The moment update is ``adam_update``; STE and PMF reuse it on their latent
reals. ``mean_grads`` (the checks and the average over passes that every
non-Bayesian rule here needs) lives in this module too.

=========== ===================== =====================================
code        symbol                torch (``optimizer.state[p]``)
=========== ===================== =====================================
``m``       m (first moment)      ``exp_avg``
``v``       v (second moment)     ``exp_avg_sq``
``step``    t (updates taken)     ``step``
=========== ===================== =====================================
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ._adam_fused import adam_update_fused
from ..checks import check_range
from .base import Optimizer, as_grad_list, check_finite


class AdamState(NamedTuple):
    params: dict   # name -> array, the current weights
    m: dict        # name -> array like params
    v: dict        # name -> array like params
    step: int      # number of updates taken (t of the last update)


def check_betas(betas):
    """Return ``(beta1, beta2)`` as floats; ValueError unless a pair in [0, 1)."""
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
    check_range("betas[0]", b1, 0.0, 1.0, hi_open=True)
    check_range("betas[1]", b2, 0.0, 1.0, hi_open=True)
    return float(b1), float(b2)


def mean_grads(grads, like, owner):
    """g[k] = (1/S) sum_s grads[s][k], cast to ``like[k].dtype``.

    Parameters
    ----------
    grads : list of dict
        One dict per forward/backward pass (S >= 1), keyed like ``like``.
    like : dict name -> ndarray
        The arrays the gradients belong to (shapes and dtypes to match).
    owner : str
        Optimizer name for error messages.

    Returns
    -------
    dict name -> ndarray
        With one pass the arrays are returned as given (cast only), so S = 1
        involves no arithmetic.
    """
    for s, g in enumerate(grads):
        if set(g) != set(like):
            missing = [k for k in like if k not in g]
            extra = [k for k in g if k not in like]
            raise ValueError(f"{owner}: gradient dict {s} does not match the parameters "
                             f"(missing {missing}, unexpected {extra})")
        for k, a in like.items():
            if np.shape(g[k]) != np.shape(a):
                raise ValueError(f"{owner}: gradient of '{k}' has shape {np.shape(g[k])}, "
                                 f"expected {np.shape(a)}")
    out = {}
    for k, a in like.items():
        acc = np.asarray(grads[0][k], dtype=a.dtype)
        for g in grads[1:]:
            acc = acc + np.asarray(g[k], dtype=a.dtype)
        out[k] = acc / len(grads) if len(grads) > 1 else acc
    return out


def adam_update(g, m, v, t, lr, beta1, beta2, eps):
    """One Adam step for one array: return ``(delta, m_new, v_new)``; the new weight is ``p - delta``.

    delta = lr / (1 - beta1**t) * m_new / (sqrt(v_new) / sqrt(1 - beta2**t) + eps)

    Parameters
    ----------
    g, m, v : ndarray, same shape and dtype
        Gradient (weight decay already added) and the moments before the step.
    t : int
        This step's number, from 1.
    lr, beta1, beta2, eps : float
        Python floats, so float32 arrays stay float32.
    """
    fused = adam_update_fused(g, m, v, t, lr, beta1, beta2, eps)   # bit-identical, one pass
    if fused is not None:
        return fused
    m_new = beta1 * m + (1.0 - beta1) * g
    v_new = beta2 * v + (1.0 - beta2) * (g * g)
    step_size = lr / (1.0 - beta1 ** t)
    denom = np.sqrt(v_new) / math.sqrt(1.0 - beta2 ** t) + eps
    return step_size * (m_new / denom), m_new, v_new


class Adam(Optimizer):
    """Adam (torch semantics) on real parameters; see the module docstring for the rule.

    Parameters
    ----------
    lr : float, >= 0
    betas : (float, float), each in [0, 1)
    eps : float, >= 0
    weight_decay : float, >= 0
        L2 penalty: ``weight_decay * p`` is added to the gradient.

    ``params(state)`` and ``forward_params`` return the state's arrays (read-only by
    convention: every update makes new ones).
    """

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.lr = float(check_range("lr", lr, 0.0))
        self.betas = check_betas(betas)
        self.eps = float(check_range("eps", eps, 0.0))
        self.weight_decay = float(check_range("weight_decay", weight_decay, 0.0))

    def init(self, params, rng=None):
        p = {k: np.array(v, copy=True) for k, v in params.items()}
        for k, v in p.items():
            if not np.issubdtype(v.dtype, np.floating):
                raise ValueError(f"Adam: parameter '{k}' has dtype {v.dtype}, expected a float dtype")
        return AdamState(p, {k: np.zeros_like(v) for k, v in p.items()},
                         {k: np.zeros_like(v) for k, v in p.items()}, 0)

    def update(self, grads, state, noise=None, *, lr=None):
        grads = as_grad_list(grads, noise)
        check_finite(grads)
        g = mean_grads(grads, state.params, "Adam")
        lr = self.lr if lr is None else float(check_range("lr", lr, 0.0))
        b1, b2 = self.betas
        t = state.step + 1
        p_new, m_new, v_new = {}, {}, {}
        for k, p in state.params.items():
            gk = g[k] + self.weight_decay * p if self.weight_decay else g[k]
            delta, m_new[k], v_new[k] = adam_update(gk, state.m[k], state.v[k], t, lr, b1, b2, self.eps)
            p_new[k] = p - delta
        return AdamState(p_new, m_new, v_new, t)

    def params(self, state):
        return dict(state.params)

    def config(self):
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": self.weight_decay}
