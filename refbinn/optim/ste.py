"""Straight-through estimator (STE) with Adam on latent real weights.

The forward pass uses binary weights w_b = sign(w_l) (0 -> +1); the gradient
taken at w_b is applied to the latent weights as if sign were the identity
(the "straight-through" step), by Adam; then the latent weights are clipped::

    g    <- clip(g, -clip_value, clip_value)                   (optional)
    g    <- g * min(1, clip_norm / (||g||_2 + 1e-6))            (optional, global norm over all params)
    w_l  <- clip(w_l - adam_step(g), -1, 1)
    w_b   = sign(w_l)

Value clipping runs before norm clipping when both are set. The norm rule is
torch's ``clip_grad_norm_`` (the 1e-6 included; the norm is summed in float64).

=========== ==================== ==========================
code        symbol               authors' STE code / larq
=========== ==================== ==========================
``latent``  w_l (latent reals)   ``p.org`` / latent kernel
``params``  w_b = sign(w_l)      ``p.data`` / ``ste_sign``
=========== ==================== ==========================

Where the code is: this module (the optimizer) and ``_ste_math.py`` (the equations);
the Adam step is ``adam.adam_step`` (its kernels in ``_adam_kernels.py``).

References: Bengio et al. 2013 (STE); paper section 5 "STE Adam" baseline.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..checks import check_range
from ..nn.base import sign
from ._backend import check_backend
from ._ste_math import clip_by_global_norm, clip_by_value, clip_latent  # noqa: F401  (re-exported)
from .adam import adam_step, check_betas
from .base import (Optimizer, as_grad_list, check_finite, check_state_like, check_state_type, float_params,
                   mean_grads)
from .finite_state import checked_state


class STEState(NamedTuple):
    """STE-Adam's state.

    Attributes
    ----------
    latent : dict name -> ndarray
        Latent real weights in [-1, 1].
    m, v : dict name -> ndarray
        Adam's first and second moments, like ``latent``.
    step : int
        Updates taken.
    """
    latent: dict
    m: dict
    v: dict
    step: int


class STEAdam(Optimizer):
    """STE with Adam; see the module docstring for the rule.

    Parameters
    ----------
    lr : float, >= 0
    betas : (float, float), each in [0, 1)
    eps : float, > 0
    clip_value : float > 0 or None
        Clip every gradient entry to [-clip_value, clip_value].
    clip_norm : float > 0 or None
        Rescale the gradients so their global L2 norm is at most clip_norm.
    backend : {'numba', 'numpy'}
        Of the Adam step (``adam.adam_step``).

    ``init(params)`` takes the latent weights from ``params`` (clipped to [-1, 1]);
    ``params(state)`` is sign(latent), exactly +-1 in the latent dtype.

    References
    ----------
    Bengio, Leonard & Courville (2013), the straight-through estimator: the gradient at
    sign(latent) is applied to the latent weights (by Adam, Kingma & Ba 2015, Algorithm 1),
    which are clipped to [-1, 1]; Meng, Bachmann & Khan (2020), section 5 ("STE Adam" baseline).
    """

    def __init__(self, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, clip_value=None, clip_norm=None,
                 backend="numba"):
        self.lr = float(check_range("lr", lr, 0.0))
        self.betas = check_betas(betas)
        self.eps = float(check_range("eps", eps, 0.0, lo_open=True))
        self.clip_value = None if clip_value is None else float(
            check_range("clip_value", clip_value, 0.0, lo_open=True))
        self.clip_norm = None if clip_norm is None else float(
            check_range("clip_norm", clip_norm, 0.0, lo_open=True))
        self.backend = check_backend(backend)

    def init(self, params, rng=None):
        latent = {k: clip_latent(v) for k, v in float_params(params, "STEAdam").items()}   # new arrays
        return STEState(latent, {k: np.zeros_like(v) for k, v in latent.items()},
                        {k: np.zeros_like(v) for k, v in latent.items()}, 0)

    def update(self, grads, state, noise=None, *, lr=None, weights=None):
        check_state_type(state, STEState, "STEAdam")
        grads = as_grad_list(grads, noise)
        check_finite(grads)
        check_state_like("STEAdam", "latent", state.latent, {"m": state.m, "v": state.v})
        g = mean_grads(grads, state.latent, "STEAdam")
        lr = self.lr if lr is None else float(check_range("lr", lr, 0.0))
        if self.clip_value is not None:
            g = clip_by_value(g, self.clip_value)
        if self.clip_norm is not None:
            g = clip_by_global_norm(g, self.clip_norm)
        b1, b2 = self.betas
        t = state.step + 1
        latent, m, v = {}, {}, {}
        for k, w in state.latent.items():
            delta, m[k], v[k] = adam_step(self.backend, g[k], state.m[k], state.v[k], t, lr, b1, b2,
                                          self.eps)
            latent[k] = clip_latent(w - delta)
        return checked_state(STEState(latent, m, v, t), "STEAdam")

    def params(self, state):
        return {k: sign(v) for k, v in check_state_type(state, STEState, "STEAdam").latent.items()}

    def config(self):
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps,
                "clip_value": self.clip_value, "clip_norm": self.clip_norm, "backend": self.backend}
