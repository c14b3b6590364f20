"""Bop, the binary optimizer of Helwegen et al. (2019): flip a weight when its
gradient signal is strong and consistent.

    m <- (1 - gamma) * m + gamma * g
    w <- -w   where  w * m > threshold      (strict; elsewhere w is kept)

m is an exponential moving average of the gradient taken at the binary weights
w in {-1, +1}. A weight flips when the average gradient pushes against its
current sign by more than ``threshold``. There are no latent reals; real-valued
parameters (biases, BN affine) go to Adam through ``refbinn.optim.partition``.

=============== ================== ====================================
code            symbol             Helwegen et al. / larq ``Bop``
=============== ================== ====================================
``gamma``       gamma (adaptivity) ``gamma``
``threshold``   tau                ``threshold``
``m``           m                  ``m`` (moving average)
=============== ================== ====================================

Where the code is: this module (the optimizer) and ``_bop_math.py`` (the equations).

References: Helwegen et al., "Latent weights do not exist", NeurIPS 2019, Algorithm 1.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..checks import check_range
from ..nn.base import sign
from ._bop_math import bop_flip, bop_momentum  # noqa: F401  (re-exported)
from .base import (Optimizer, as_grad_list, check_finite, check_state_like, check_state_type, float_params,
                   mean_grads)
from .finite_state import checked_state


class BopState(NamedTuple):
    """Bop's state.

    Attributes
    ----------
    w : dict name -> ndarray
        The binary weights, exactly -1 or +1.
    m : dict name -> ndarray
        The gradient's moving average, like ``w``.
    """
    w: dict
    m: dict


class Bop(Optimizer):
    """Bop on binary weights; see the module docstring for the rule.

    Parameters
    ----------
    threshold : float, >= 0
    gamma : float, in (0, 1]
        Adaptivity rate. ``update(..., lr=g)`` uses g instead for that step
        (a schedule on gamma), in [0, 1] (ValueError otherwise); 0 (a schedule that
        decays to zero) keeps m and then applies the flip test.

    ``init(params)`` sets w = sign(params) (0 -> +1) and m = 0.

    References
    ----------
    Helwegen et al., "Latent weights do not exist", NeurIPS 2019, Algorithm 1
    (m = (1-gamma)*m + gamma*g; w = -w where w*m > threshold).
    """

    def __init__(self, threshold=1e-8, gamma=1e-5):
        self.threshold = float(check_range("threshold", threshold, 0.0))
        self.gamma = float(check_range("gamma", gamma, 0.0, 1.0, lo_open=True))

    def init(self, params, rng=None):
        w = {k: sign(v) for k, v in float_params(params, "Bop").items()}
        return BopState(w, {k: np.zeros_like(v) for k, v in w.items()})

    def update(self, grads, state, noise=None, *, lr=None, weights=None):
        check_state_type(state, BopState, "Bop")
        grads = as_grad_list(grads, noise)
        check_finite(grads)
        check_state_like("Bop", "w", state.w, {"m": state.m})
        g = mean_grads(grads, state.w, "Bop")
        gamma = self.gamma if lr is None else float(check_range("lr (gamma)", lr, 0.0, 1.0))
        w_new, m_new = {}, {}
        for k, w in state.w.items():
            m_new[k] = bop_momentum(state.m[k], g[k], gamma)
            w_new[k] = bop_flip(w, m_new[k], self.threshold)
        return checked_state(BopState(w_new, m_new), "Bop")

    def params(self, state):
        return dict(check_state_type(state, BopState, "Bop").w)

    def config(self):
        return {"threshold": self.threshold, "gamma": self.gamma}
