"""Calls from ``BayesBiNN`` into the fused float32 kernels of ``_fused.py``.

``relaxed_weights`` computes what ``relaxed_sample`` computes and ``step`` what
``step_numpy`` computes (``_bayesbinn_math.py``), each in one parallel pass over memory
per sample, to a few ulp (bit for bit where no transcendental is involved). This module
only prepares the kernels' arguments: flat views of the C-order arrays, hyperparameters
rounded to float32, output arrays from the optimizer's pool. Which arrays come here
(``FUSED_MIN_SIZE``) is decided in ``bayesbinn.py``.

References: Meng, Bachmann & Khan, "Training Binary Neural Networks using the
Bayesian Learning Rule", ICML 2020; refbinn spec section 7.
"""
from __future__ import annotations

import math

import numpy as np

from . import _fused


def relaxed_weights(pool, lam, u, tau):
    """w_r = tanh((lam + delta)/tau) in ``_fused.relaxed_weights``, the output from the pool.

    Parameters
    ----------
    pool : ArrayPool
    lam : ndarray, any shape, float32, C-contiguous
    u : ndarray, shape of ``lam``, float32
        Uniform noise in (0, 1).
    tau : float > 0

    Returns
    -------
    ndarray, shape of ``lam``, float32, values in [-1, 1]
    """
    w = pool.empty_like(lam)
    _fused.relaxed_weights(lam.reshape(-1), np.ascontiguousarray(u).reshape(-1),
                           np.float32(tau), w.reshape(-1))                   # (n,) views
    return w


def step(pool, lam, m, mu, gs, us, lam0, lr, beta, reweight, tau, N, official, t):
    """``step_numpy`` in the fused kernels: one pass for S <= 1; for S > 1 one
    accumulating pass per sample, then the step.

    Parameters
    ----------
    pool : ArrayPool
    lam, m, mu : ndarray, same shape, float32, C-contiguous
    gs : list of S ndarrays, shape of ``lam``, float32, C-contiguous
    us : list of S ndarrays of that shape, float32, C-contiguous, or [None] (S = 0)
    lam0 : ndarray, scalar or shape of ``lam``, float32
    lr, beta, reweight, tau, N : float
    official : bool
        The 'official' numerics (else 'exact').
    t : int >= 1
        The step count (bias correction 1 - beta**t).

    Returns
    -------
    (lam', m', mu') : pooled arrays, shape of ``lam``; lam' is None if it came out non-finite
    """
    f = np.float32
    flat = lambda a: a.reshape(-1)                                 # views: all C-contiguous
    lam0 = flat(np.ascontiguousarray(lam0)) if lam0.ndim else f(lam0)
    m_in = flat(m) if beta != 0 else f(0)                          # beta = 0: m is not read
    bc = None if beta == 0 else f(1 - beta ** t)                   # None: no division by 1
    hyper = (lam0, f(lr), f(beta), f(1 - beta), f(reweight), bc)
    lam_out, m_out, mu_out = (pool.empty_like(lam) for _ in range(3))
    outs = (flat(lam_out), flat(m_out), flat(mu_out))
    log_n_tau = f(math.log(N / tau))
    if us[0] is None:                                              # S = 0: g_hat = N*g
        bad = _fused.finish_step(flat(lam), m_in, flat(gs[0]), f(N), f(1), *hyper,
                                 official, *outs)
    elif len(gs) == 1 and official:
        bad = _fused.step_official(flat(lam), flat(mu), m_in, flat(us[0]), flat(gs[0]), *hyper,
                                   f(tau), f(N), *outs)
    elif len(gs) == 1:
        bad = _fused.step_exact(flat(lam), m_in, flat(us[0]), flat(gs[0]), *hyper, f(tau),
                                log_n_tau, *outs)
    else:                                                          # S > 1: accumulate, then step
        acc = pool.empty_like(lam)
        for j, (g, u) in enumerate(zip(gs, us)):
            if official:
                _fused.accumulate_official(flat(lam), flat(mu), flat(u), flat(g), f(tau),
                                           flat(acc), j == 0)
            else:
                _fused.accumulate_exact(flat(lam), flat(u), flat(g), f(tau), log_n_tau,
                                        flat(acc), j == 0)
        mul, div = (f(N / len(gs)), f(1)) if official else (f(1), f(len(gs)))
        bad = _fused.finish_step(flat(lam), m_in, flat(acc), mul, div, *hyper, official, *outs)
    return (None if bad else lam_out), m_out, mu_out
