"""PMF, proximal mean-field (Ajanthan et al.): binary weights through an annealed softmax.

Each weight has two auxiliary reals u = (u[-1], u[+1]), stored as one array of
shape (2,) + w.shape with index 0 for the value -1 and index 1 for +1. The
forward pass uses the soft weight, the mean of the two values under
softmax(beta * u)::

    w_soft = softmax(beta*u)[+1] - softmax(beta*u)[-1] = tanh(beta * (u[+1] - u[-1]) / 2)

The gradient g at w_soft reaches u by the chain rule and Adam updates u::

    dL/du[+1] = g * beta/2 * (1 - w_soft**2),   dL/du[-1] = -dL/du[+1]
    u <- u - adam_step(dL/du + weight_decay * u)

After every ``anneal_every``-th update beta <- min(rho * beta, beta_max), so after
k updates beta = min(beta_init * rho**(k // anneal_every), beta_max) (computed by
repeated multiplication, as a training loop does). As beta grows w_soft tends to
the hard argmax; ``params(state)`` is that rounded model:
w = +1 where u[+1] >= u[-1] (ties -> +1, as ``refbinn.nn.sign``), else -1.

Initialisation: the soft weight starts at the given parameters, clipped to
[-INIT_CLIP, INIT_CLIP] (a soft weight of +-1 would need infinite u and has zero
gradient): u[+1] = -u[-1] = arctanh(clip(w0)) / beta_init.

=============== ======================= ==============================
code            symbol                  Ajanthan et al.
=============== ======================= ==============================
``u``           u-tilde (2 per weight)  u-tilde, the unnormalised logits
``beta``        beta (annealing)        beta, multiplied by rho
``rho``         rho                     rho (> 1)
=============== ======================= ==============================

The soft weight is computed once per training step: ``forward_params`` computes it,
and ``train_step`` hands it back to ``update(..., weights=)``, which needs it for the
chain rule (called without ``weights``, ``update`` recomputes it, bit for bit the same).

Where the code is: this module (the optimizer and its dispatch point ``PMF._step``),
``_pmf_math.py`` (the equations) and ``_pmf_kernels.py`` (their Numba twins).

References: Ajanthan, Dokania, Hartley, Torr, "Proximal Mean-field for Neural
Network Quantization", ICCV 2019; BayesBiNN paper section 5 (baseline settings).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..checks import check_int, check_range
from ..nn.base import sign
from ._backend import check_backend, use_kernels
from ._pmf_kernels import pmf_step_fused, soft_weight_fused
from ._pmf_math import pmf_step, soft_weight, soft_weight_vjp  # noqa: F401  (re-exported)
from .adam import check_betas
from .base import (Optimizer, as_grad_list, check_finite, check_state_like, check_state_type, float_params,
                   mean_grads)
from .finite_state import checked_state

KERNEL_DTYPES = (np.float32, np.float64)

INIT_CLIP = 0.99


class PMFState(NamedTuple):
    """PMF's state.

    Attributes
    ----------
    u : dict name -> ndarray
        Auxiliary reals, shape (2,) + weight shape: [0] for -1, [1] for +1.
    m, v : dict name -> ndarray
        Adam's first and second moments, like ``u``.
    beta : float
        The current softmax inverse temperature.
    step : int
        Updates taken.
    """
    u: dict
    m: dict
    v: dict
    beta: float
    step: int


class PMF(Optimizer):
    """Proximal mean-field with Adam on the auxiliary reals; see the module docstring.

    Parameters
    ----------
    lr : float, >= 0
    rho : float, >= 1
        Annealing factor for beta.
    beta_init : float, > 0
    beta_max : float, >= beta_init
    anneal_every : int, >= 1
        Updates between two multiplications of beta by rho.
    weight_decay : float, >= 0
        L2 penalty on u.
    betas : (float, float), each in [0, 1)
    eps : float, > 0
    backend : {'numba', 'numpy'}
        'numba' runs the soft weight and the step of large arrays in one Numba pass each
        (bit for bit the NumPy result); 'numpy' always uses ``_pmf_math``.

    References
    ----------
    Ajanthan, Dokania, Hartley & Torr, "Proximal Mean-field for Neural Network Quantization",
    ICCV 2019: the PMF algorithm (u = softmax(beta*u_tilde), w = u[+1] - u[-1], Adam on
    u_tilde, beta annealed by rho); Meng, Bachmann & Khan (2020), section 5 (the baseline's settings).
    """

    def __init__(self, lr=1e-3, rho=1.2, beta_init=1.0, beta_max=1e4, anneal_every=100,
                 weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8, backend="numba"):
        self.lr = float(check_range("lr", lr, 0.0))
        self.rho = float(check_range("rho", rho, 1.0))
        self.beta_init = float(check_range("beta_init", beta_init, 0.0, lo_open=True))
        self.beta_max = float(check_range("beta_max", beta_max, self.beta_init))
        self.anneal_every = check_int("anneal_every", anneal_every, 1)
        self.weight_decay = float(check_range("weight_decay", weight_decay, 0.0))
        self.betas = check_betas(betas)
        self.eps = float(check_range("eps", eps, 0.0, lo_open=True))
        self.backend = check_backend(backend)

    def init(self, params, rng=None):
        u = {}
        for k, w in float_params(params, "PMF").items():
            half = np.arctanh(np.clip(w, -INIT_CLIP, INIT_CLIP)) / self.beta_init
            u[k] = np.stack([-half, half])                   # (2,) + w.shape
        return PMFState(u, {k: np.zeros_like(v) for k, v in u.items()},
                        {k: np.zeros_like(v) for k, v in u.items()}, self.beta_init, 0)

    def forward_params(self, state, noise=None):
        check_state_type(state, PMFState, "PMF")
        return {k: self._soft_weight(u, state.beta) for k, u in state.u.items()}

    def _soft_weight(self, u, beta):
        if use_kernels(self.backend, u, dtypes=KERNEL_DTYPES):
            return soft_weight_fused(u, beta)
        return soft_weight(u, beta)

    def update(self, grads, state, noise=None, *, lr=None, weights=None):
        """Return the new state after one step (the given state is never modified).

        u' = u - adam_step(dL/du + weight_decay * u), dL/du from the mean gradient g at
        w_soft = tanh(beta (u[+1] - u[-1]) / 2); then beta is annealed.

        Parameters
        ----------
        grads : dict or list of one dict name -> ndarray (weight shape)
            d loss / d w_soft at ``forward_params(state)``.
        state : PMFState
            The current state.
        noise : list, optional
            What ``sample`` returned (``[None]``).
        lr : float, optional
            Overrides the constructor's lr for this step.
        weights : dict or list of one dict name -> ndarray (weight shape), optional
            ``forward_params(state)``, the soft weights the gradients were taken at (as
            ``train_step`` passes them): the step reuses them, so w_soft is computed once
            per training step, not twice. None: recomputed from ``state`` (the same bits).

        Returns
        -------
        PMFState
            The new state.
        """
        check_state_type(state, PMFState, "PMF")
        grads = as_grad_list(grads, noise)
        check_finite(grads)
        check_state_like("PMF", "u", state.u, {"m": state.m, "v": state.v})
        for k, u in state.u.items():
            if u.ndim < 1 or u.shape[0] != 2:
                raise ValueError(f"PMF: state.u['{k}'] has shape {u.shape}, expected (2,) + weight shape")
        like = {k: u[0] for k, u in state.u.items()}           # shapes and dtypes of the weights
        g = mean_grads(grads, like, "PMF")
        soft = self._given_soft_weights(weights, noise, like)
        lr = self.lr if lr is None else float(check_range("lr", lr, 0.0))
        b1, b2 = self.betas
        t = state.step + 1
        u_new, m_new, v_new = {}, {}, {}
        for k, u in state.u.items():
            w_soft = self._soft_weight(u, state.beta) if soft is None else soft[k]
            u_new[k], m_new[k], v_new[k] = self._step(g[k], w_soft, u, state.m[k], state.v[k], t, lr,
                                                      state.beta)
        beta = state.beta
        if t % self.anneal_every == 0:
            beta = min(beta * self.rho, self.beta_max)
        return checked_state(PMFState(u_new, m_new, v_new, beta, t), "PMF")

    @staticmethod
    def _given_soft_weights(weights, noise, like):
        """The soft weights of ``update(..., weights=)`` (None if not given), their shapes and
        dtypes checked against the state's (the values are trusted: they are
        ``forward_params(state)``)."""
        if weights is None:
            return None
        soft = as_grad_list(weights, noise, "weights")[0]
        for k, w in like.items():
            if k not in soft or np.shape(soft[k]) != w.shape or np.asarray(soft[k]).dtype != w.dtype:
                raise ValueError(f"PMF: weights['{k}'] must be forward_params(state)['{k}'] "
                                 f"(shape {w.shape}, {w.dtype})")
        return soft

    def _step(self, g, w_soft, u, m, v, t, lr, beta):
        """The one dispatch point: ``pmf_step_fused`` (``_pmf_kernels``) or ``pmf_step``
        (``_pmf_math``), bit for bit the same."""
        args = (g, w_soft, u, m, v, t, lr, beta, self.weight_decay, *self.betas, self.eps)
        if (use_kernels(self.backend, g, w_soft, u, m, v, dtypes=KERNEL_DTYPES)
                and g.dtype == w_soft.dtype == u.dtype == m.dtype == v.dtype):
            return pmf_step_fused(*args)
        with np.errstate(over="ignore", invalid="ignore"):          # checked_state reports a non-finite result
            return pmf_step(*args)

    def params(self, state):
        return {k: sign(u[1] - u[0]) for k, u in check_state_type(state, PMFState, "PMF").u.items()}

    def config(self):
        return {"lr": self.lr, "rho": self.rho, "beta_init": self.beta_init,
                "beta_max": self.beta_max, "anneal_every": self.anneal_every,
                "weight_decay": self.weight_decay, "betas": self.betas, "eps": self.eps,
                "backend": self.backend}
