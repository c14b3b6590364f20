"""Float32 Numba twin of ``step_numpy`` for numerics='exact-clipped' (not the paper's estimator).

    s_c   = min(s_exact, N/tau)                       ``concrete_scale_clipped32``
    g_hat = (1/S) sum_j s_c,j * g_j                   ``accumulate_clipped_kernel``
    then the natural update with mu' = tanh(lam')     ``finish_step_kernel`` (shared)

Two passes per sample-plus-one (no single fused pass as for 'exact'): this variant is for
experiments. S = 0 has no scale and takes ``step_fused`` unchanged. The minimum of two
float32 numbers is exact, so this agrees with ``concrete_scale(..., 'exact-clipped')`` to
the same few ulp as the exact kernels do.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._bayesbinn_kernels import concrete_scale_exact32, finish_step_kernel, step_fused


@njit(cache=True, error_model="numpy", inline="always")
def concrete_scale_clipped32(lam, u, tau, log_n_tau, s_max):
    """min(N/tau * (cosh(lam)/cosh(z))**2, N/tau)."""
    return min(concrete_scale_exact32(lam, u, tau, log_n_tau), s_max)


@njit(parallel=True, cache=True, error_model="numpy")
def accumulate_clipped_kernel(lam, u, g, tau, log_n_tau, s_max, acc, first):
    """acc = s_c*g (first sample) or acc + s_c*g."""
    for i in prange(lam.size):
        sg = concrete_scale_clipped32(lam[i], u[i], tau, log_n_tau, s_max) * g[i]
        acc[i] = sg if first else acc[i] + sg


def step_clipped_fused(pool, lam, m, mu, gs, us, lam0, lr, beta, reweight, tau, N, numerics, t):
    """``step_numpy(..., numerics='exact-clipped')`` in float32 kernels; the arguments and
    return value of ``_bayesbinn_kernels.step_fused``.

        g_hat = (1/S) sum_j min(s_exact,j, N/tau) * g_j,  then the natural update and
        mu' = tanh(lam'); S = 0 (``us == [None]``) is ``step_fused``'s point estimate.

    Parameters
    ----------
    pool : ArrayPool
        Where the accumulator and the outputs come from.
    lam, m, mu : ndarray, same shape, float32, C-contiguous
        Natural parameter, momentum and stored mean (``mu`` is read only for S = 0).
    gs : list of S ndarrays, shape of ``lam``, float32, C-contiguous
        d loss/d w at each sample's relaxed weights (minibatch mean).
    us : list of S ndarrays of that shape, float32, C-contiguous, or [None] (S = 0)
        Each sample's uniform noise in (0, 1).
    lam0 : ndarray, scalar or shape of ``lam``, float32
        Prior natural parameter.
    lr, beta, reweight : float
        Learning rate (> 0), momentum in [0, 1) and weight of the prior term, as in
        ``natural_update``.
    tau, N : float > 0
        Temperature and training-set size (the clip is N/tau).
    numerics : str
        ``'exact-clipped'`` (passed on for uniformity; the kernels here are that numerics).
    t : int >= 1
        The step count (bias correction 1 - beta**t).

    Returns
    -------
    (lam', m', mu') : pooled arrays, shape of ``lam``; lam' is None if it came out non-finite
    """
    if us[0] is None:                                              # S = 0: no scale to clip
        return step_fused(pool, lam, m, mu, gs, us, lam0, lr, beta, reweight, tau, N, "exact", t)
    f = np.float32
    flat = lambda a: a.reshape(-1)                                 # views: all C-contiguous
    lam0 = flat(np.ascontiguousarray(lam0)) if lam0.ndim else f(lam0)
    m_in = flat(m) if beta != 0 else f(0)                          # beta = 0: m is not read
    bc = None if beta == 0 else f(1 - beta ** t)
    acc = pool.empty_like(lam)
    log_n_tau, s_max = f(math.log(N / tau)), f(N / tau)
    for j, (g, u) in enumerate(zip(gs, us)):
        accumulate_clipped_kernel(flat(lam), flat(u), flat(g), f(tau), log_n_tau, s_max, flat(acc), j == 0)
    lam_out, m_out, mu_out = (pool.empty_like(lam) for _ in range(3))
    bad = finish_step_kernel(flat(lam), m_in, flat(acc), f(1), f(len(gs)), lam0, f(lr), f(beta),
                             f(1 - beta), f(reweight), bc, "exact", flat(lam_out), flat(m_out),
                             flat(mu_out))
    return (None if bad else lam_out), m_out, mu_out
