"""Adam for real-valued parameters (full-precision baseline, biases, BN affine).

PyTorch's ``torch.optim.Adam`` (``amsgrad=False``), with L2 weight decay added
to the gradient (not AdamW's decoupled decay). At step t = 1, 2, ...::

    g  <- g + weight_decay * p
    m  <- beta1 * m + (1 - beta1) * g
    v  <- beta2 * v + (1 - beta2) * g**2
    p  <- p - [lr / (1 - beta1**t)] * (m / (sqrt(v) / [sqrt(1 - beta2**t)] + [eps]))

(the grouping of torch's ``step_size * (exp_avg / denom)``; each scalar in brackets, and
1 - beta1, 1 - beta2, is computed in float64 and rounded once to the array's dtype).

The moment update is ``adam_update`` (``_adam_math.py``; its Numba twin
``adam_update_fused`` in ``_adam_kernels.py``), chosen in ``adam_step``, which STE
and PMF reuse on their latent reals.

=========== ===================== =====================================
code        symbol                torch (``optimizer.state[p]``)
=========== ===================== =====================================
``m``       m (first moment)      ``exp_avg``
``v``       v (second moment)     ``exp_avg_sq``
``step``    t (updates taken)     ``step``
=========== ===================== =====================================
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..checks import check_range
from ._adam_kernels import adam_update_fused
from ._adam_math import adam_update  # noqa: F401  (re-exported)
from ._backend import check_backend, use_kernels
from .base import (Optimizer, as_grad_list, check_finite, check_state_like, check_state_type, float_params,
                   mean_grads)
from .finite_state import checked_state


class AdamState(NamedTuple):
    """Adam's state.

    Attributes
    ----------
    params : dict name -> ndarray
        The current weights.
    m, v : dict name -> ndarray
        First and second moments, like ``params``.
    step : int
        Updates taken (t of the last update).
    """
    params: dict
    m: dict
    v: dict
    step: int


def check_betas(betas):
    """Return ``(beta1, beta2)`` as floats; ValueError unless a pair in [0, 1).

    Parameters
    ----------
    betas : (float, float)
        Adam's decay rates of the first and second moments, each in [0, 1).

    Returns
    -------
    (float, float)
        ``(beta1, beta2)`` as Python floats. ValueError names ``betas[0]``/``betas[1]``
        or says the value is not a pair.
    """
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
    check_range("betas[0]", b1, 0.0, 1.0, hi_open=True)
    check_range("betas[1]", b2, 0.0, 1.0, hi_open=True)
    return float(b1), float(b2)


def adam_step(backend, g, m, v, t, lr, beta1, beta2, eps):
    """The one dispatch point of the Adam moment update (Adam, STE, PMF's NumPy path):
    ``adam_update_fused`` (``_adam_kernels``) or ``adam_update`` (``_adam_math``), bit for
    bit the same; returns ``(delta, m_new, v_new)``.

    m' = beta1*m + (1 - beta1)*g,  v' = beta2*v + (1 - beta2)*g**2,
    delta = lr/(1 - beta1**t) * m'/(sqrt(v')/sqrt(1 - beta2**t) + eps)

    Parameters
    ----------
    backend : {'numba', 'numpy'}
        'numba' takes the kernel when ``use_kernels`` allows it (float32 or float64,
        C-contiguous, at least ``FUSED_MIN_SIZE`` elements) and g, m, v share one dtype.
    g, m, v : ndarray, same shape
        Gradient (weight decay already added) and the moments before the step.
    t : int, >= 1
        This step's number (for the bias corrections).
    lr : float, >= 0
        Step size.
    beta1, beta2 : float, in [0, 1)
        Decay rates of the first and second moments.
    eps : float, > 0
        Added to the bias-corrected sqrt(v') (torch's placement).

    Returns
    -------
    delta, m_new, v_new : ndarray, like ``g``
        The new weight is ``p - delta``; ``m_new``, ``v_new`` are m', v'.
        ValueError if g, m, v differ in shape (the kernel would run past the smaller arrays).
    """
    if not np.shape(g) == np.shape(m) == np.shape(v):
        raise ValueError(f"adam_step: g, m and v must have one shape, got {np.shape(g)}, {np.shape(m)} "
                         f"and {np.shape(v)}")
    if use_kernels(backend, g, m, v, dtypes=(np.float32, np.float64)) and g.dtype == m.dtype == v.dtype:
        return adam_update_fused(g, m, v, t, lr, beta1, beta2, eps)
    with np.errstate(over="ignore", invalid="ignore"):          # checked_state reports a non-finite result
        return adam_update(g, m, v, t, lr, beta1, beta2, eps)


class Adam(Optimizer):
    """Adam (torch semantics) on real parameters; see the module docstring for the rule.

    Parameters
    ----------
    lr : float, >= 0
    betas : (float, float), each in [0, 1)
    eps : float, > 0
        Keeps the step finite where v' = 0 (a zero gradient at step 1 would give 0/0).
    weight_decay : float, >= 0
        L2 penalty: ``weight_decay * p`` is added to the gradient.

    backend : {'numba', 'numpy'}
        'numba' runs the moment update of large arrays in one Numba pass (bit for bit
        the NumPy result); 'numpy' always uses ``adam_update``.

    ``params(state)`` and ``forward_params`` return the state's arrays (read-only by
    convention: every update makes new ones).

    References
    ----------
    Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, Algorithm 1
    (m = b1*m + (1-b1)*g, v = b2*v + (1-b2)*g**2, p -= lr*m_hat/(sqrt(v_hat) + eps)),
    with torch's placement of eps and of the L2 term.
    """

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, backend="numba"):
        self.lr = float(check_range("lr", lr, 0.0))
        self.betas = check_betas(betas)
        self.eps = float(check_range("eps", eps, 0.0, lo_open=True))
        self.weight_decay = float(check_range("weight_decay", weight_decay, 0.0))
        self.backend = check_backend(backend)

    def init(self, params, rng=None):
        p = {k: np.array(v, copy=True) for k, v in float_params(params, "Adam").items()}
        return AdamState(p, {k: np.zeros_like(v) for k, v in p.items()},
                         {k: np.zeros_like(v) for k, v in p.items()}, 0)

    def update(self, grads, state, noise=None, *, lr=None, weights=None):
        check_state_type(state, AdamState, "Adam")
        grads = as_grad_list(grads, noise)
        check_finite(grads)
        check_state_like("Adam", "params", state.params, {"m": state.m, "v": state.v})
        g = mean_grads(grads, state.params, "Adam")
        lr = self.lr if lr is None else float(check_range("lr", lr, 0.0))
        b1, b2 = self.betas
        t = state.step + 1
        p_new, m_new, v_new = {}, {}, {}
        for k, p in state.params.items():
            gk = g[k] + self.weight_decay * p if self.weight_decay else g[k]
            delta, m_new[k], v_new[k] = adam_step(self.backend, gk, state.m[k], state.v[k], t, lr, b1, b2,
                                                  self.eps)
            p_new[k] = p - delta
        return checked_state(AdamState(p_new, m_new, v_new, t), "Adam")

    def params(self, state):
        return dict(check_state_type(state, AdamState, "Adam").params)

    def config(self):
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": self.weight_decay,
                "backend": self.backend}
