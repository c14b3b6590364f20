"""The equations of BayesBiNN, one NumPy function each: the reference of ``bayesbinn.py``.

    delta  = 0.5*log(u/(1-u)),  u ~ U(0, 1)                  ``open_uniform``, ``logistic_noise``
    w_r    = tanh((lam + delta)/tau)                         ``relaxed_sample``
    s      = N*(1 - w_r**2)/(tau*(1 - mu**2))                ``concrete_scale`` (both numerics)
    m      = beta*m + (1-beta)*(g_hat + reweight*(lam - lam0))
    lam    = lam - lr*m/(1 - beta**t)                        ``natural_update``
    the above, for one parameter and S samples               ``step_numpy``

Symbols, the authors' names, the two numerics and the conventions (open-interval
noise) are in the docstring of ``refbinn/optim/bayesbinn.py``, which re-exports every
function here (import them from there). exp, log and tanh are ``_elementary.py``'s, and the
fused Numba twins in ``_bayesbinn_kernels.py`` compute the same bits, float32 and float64.

References: Meng, Bachmann & Khan, "Training Binary Neural Networks using the
Bayesian Learning Rule", ICML 2020 (Lemma 1 and the BayesBiNN update); refbinn
spec sections 2-7.
"""
from __future__ import annotations

import math

import numpy as np

from ._elementary import exp_, log_, tanh_

EXACT, OFFICIAL = "exact", "official"
EXACT_CLIPPED = "exact-clipped"     # a variant, not the paper's estimator: see concrete_scale
NUMERICS = (EXACT, OFFICIAL, EXACT_CLIPPED)
CODE_EPS = 1e-10          # the constant the authors add to 1 - w_r**2 and to 1 - mu**2
LOG2 = math.log(2.0)


# -- the math, one function per equation (NumPy reference) ----------------------
def rounded(fn, x):
    """fn(x) evaluated in float64 and rounded to x's dtype.

    For float32 this is the correctly rounded transcendental (up to rare double-rounding
    ties), the same on every CPU; NumPy's own float32 log/tanh are SIMD approximations
    (up to ~3.4 ulp here) that differ between CPUs, and in the official numerics one
    ulp of tanh near +-1 changes 1 - w_r**2 + 1e-10 by up to 1200x.

    Parameters
    ----------
    fn : callable
        A NumPy ufunc such as ``np.tanh``, ``np.log``, ``np.exp``.
    x : array_like, float dtype
        The argument; its dtype is the result's.

    Returns
    -------
    ndarray, shape and dtype of ``x``
    """
    x = np.asarray(x)
    return fn(x.astype(np.float64)).astype(x.dtype, copy=False)


def open_uniform(rng, shape, dtype=np.float32):
    """u = (2k + 1) / 2**(p+1), k ~ uniform{0, ..., 2**p - 1}, p = mantissa bits (23 or 52).

    The midpoints of 2**p equal bins of (0, 1): never 0 or 1 (so log(u/(1-u)) is
    finite), exactly representable in ``dtype``, and symmetric (u and 1-u are
    equally likely, so delta is symmetric about 0). Extremes: 2**-24 and 1 - 2**-24
    in float32 (|delta| <= 8.3), 2**-53 and 1 - 2**-53 in float64 (|delta| <= 18.4).

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of int
    dtype : float32 or float64

    Returns
    -------
    ndarray, ``shape``, ``dtype``
    """
    dt = np.dtype(dtype)
    p = np.finfo(dt).nmant
    k = rng.integers(0, 2 ** p, size=shape, dtype=np.uint32 if p < 32 else np.uint64)
    u = k.astype(dt)                 # exact: k < 2**p
    u *= 2
    u += 1                           # odd, < 2**(p+1): still exact
    u *= dt.type(2.0 ** -(p + 1))
    return u


def scale_cap(dtype):
    """The cap on the exact scale's exponent: log(dtype max) - 2 log 2 - 0.01, so that
    s <= exp(cap) * 4 stays finite (((1 + a)/(1 + b))**2 <= 4).

    Parameters
    ----------
    dtype : float32 or float64

    Returns
    -------
    float
    """
    return float(np.log(np.finfo(dtype).max)) - 2 * LOG2 - 0.01


def log_ratio(N, tau):
    """log(N/tau) in float64; as log(N) - log(tau) where N/tau over- or underflows float64
    (e.g. tau = 1e-304), where log(inf) would make the exact scale's exponent inf (and s wrong:
    capped instead of 0) and log(0) would raise.

    Parameters
    ----------
    N, tau : float > 0

    Returns
    -------
    float
    """
    r = N / tau
    return math.log(r) if 0 < r < math.inf else math.log(N) - math.log(tau)


def logistic_noise(u):
    """delta = 0.5*log(u/(1-u)): logistic noise with scale 1/2 from u in (0, 1).

    Parameters
    ----------
    u : ndarray, any shape, float32 or float64; values in the open interval (0, 1)

    Returns
    -------
    ndarray, same shape and dtype as ``u``
    """
    u = np.asarray(u)
    return u.dtype.type(0.5) * log_(u / (1 - u))


def relaxed_sample(lam, u, tau):
    """w_r = tanh((lam + delta)/tau), delta = logistic_noise(u)  (Gumbel-softmax sample).

    Parameters
    ----------
    lam : ndarray, any shape, float32 or float64
        Natural parameters.
    u : ndarray, same shape as ``lam``
        Uniform noise in (0, 1).
    tau : float
        Temperature, > 0.

    Returns
    -------
    ndarray, shape and dtype of ``lam``, values in [-1, 1]
    """
    lam = np.asarray(lam)
    dt = lam.dtype
    return tanh_((lam + logistic_noise(np.asarray(u, dtype=dt))) / dt.type(tau))


def concrete_scale(lam, u, tau, N, numerics=EXACT, mu=None):
    """The Lemma 1 factor s with grad_mu E_q[loss] ~= s*g.

    exact:    s = N/tau * (1 - w_r**2)/(1 - mu**2) = N/tau * (cosh(lam)/cosh(z))**2,
              z = (lam + delta)/tau, with exps only (cosh x = e**|x| (1 + e**-2|x|)/2):
              s = exp(min(log(N/tau) + 2*(|lam| - |z|), cap)) * ((1 + e**-2|lam|)/(1 + e**-2|z|))**2,
              no 0/0 when tanh saturates; the cap (``scale_cap``) keeps s finite (reached
              only when tau > 1 and |lam| is large, or u is within exp(-2|lam|) of 0 or 1).
    official: s = (1 - w_r**2 + 1e-10)/tau/(1 - mu**2 + 1e-10) * N, evaluated in the
              dtype of ``lam`` left to right, N last, as the authors' code does (float32
              there; ``step_numpy`` passes N = 1 and multiplies by N/S after the sum over
              samples); ``mu`` is the stored (lagged) mean, default tanh(lam).
    exact-clipped: s = min(s_exact, N/tau) = N/tau * min(1, (1 - w_r**2)/(1 - mu**2)):
              bounded by the scale of an undecided weight (lam = 0, z = 0), so that a
              weight with large |lam| never takes a larger step than an undecided one
              (the heavy tail of 1/(1 - mu**2) = cosh(lam)**2 is cut). This CHANGES the
              estimator: it is no longer an unbiased estimate of the gradient of the
              relaxed objective (Lemma 1); it is a variant for experiments, not the paper.

    Every operation is in the dtype of ``lam``, with ``exp_``/``log_``/``tanh_``
    (``_elementary.py``): the fused kernels compute the same bits.

    Parameters
    ----------
    lam : ndarray, any shape, float32 or float64
    u : ndarray, same shape, in (0, 1)
    tau : float > 0
    N : float > 0
        Training-set size.
    numerics : {'exact', 'official', 'exact-clipped'}
    mu : ndarray, same shape, optional (official only)

    Returns
    -------
    ndarray, shape and dtype of ``lam``, >= 0 and finite

    References
    ----------
    Meng et al. (2020), Lemma 1; spec sections 3 and 7.1.
    """
    lam = np.asarray(lam)
    dt = lam.dtype
    t = dt.type
    u = np.asarray(u, dtype=dt)
    if numerics == EXACT_CLIPPED:
        return np.minimum(concrete_scale(lam, u, tau, N, EXACT), t(N / tau))
    if numerics == EXACT:
        z = (lam + logistic_noise(u)) / t(tau)
        al, az = np.abs(lam), np.abs(z)
        two, one = t(2), t(1)
        with np.errstate(under="ignore", over="ignore"):
            ratio = (one + exp_(-two * al)) / (one + exp_(-two * az))
            e = np.minimum(t(log_ratio(N, tau)) + two * (al - az), t(scale_cap(dt)))
            return exp_(e) * (ratio * ratio)
    if numerics == OFFICIAL:
        mu = tanh_(lam) if mu is None else np.asarray(mu, dtype=dt)
        w = relaxed_sample(lam, u, tau)
        one, eps = t(1), t(CODE_EPS)
        return (one - w * w + eps) / t(tau) / (one - mu * mu + eps) * t(N)
    raise ValueError(f"numerics must be one of {', '.join(map(repr, NUMERICS))}, got {numerics!r}")


def natural_update(lam, m, g_hat, lam0, lr, beta, reweight, step):
    """One Bayesian-learning-rule step on the natural parameter, with momentum:

        m'   = beta*m + (1-beta)*(g_hat + reweight*(lam - lam0))
        lam' = lam - lr*m'/(1 - beta**step)

    With beta = 0, reweight = 1: lam' = (1-lr)*lam - lr*(g_hat - lam0) (the paper's rule).
    The scalars beta, 1 - beta, reweight, lr and 1 - beta**step are each computed in float64
    and rounded once to the dtype of ``lam`` (as torch does for Python scalars on float32
    tensors); rounding beta first and subtracting in float32 gives other bits.

    Parameters
    ----------
    lam, m, g_hat : ndarray, same shape
    lam0 : float or ndarray of that shape
        Prior natural parameter.
    lr : float > 0
    beta : float in [0, 1)
    reweight : float
        Weight of the KL (prior) term.
    step : int >= 1
        The step count t of this update (bias correction 1 - beta**t).

    Returns
    -------
    (lam', m') : ndarrays, shape and dtype of ``lam``
    """
    lam = np.asarray(lam)
    t = lam.dtype.type
    lam0 = np.asarray(lam0, dtype=lam.dtype)
    m_new = t(beta) * m + t(1 - beta) * (g_hat + t(reweight) * (lam - lam0))
    return lam - t(lr) * m_new / t(1 - beta ** step), m_new


def step_numpy(lam, m, mu, gs, us, lam0, lr, beta, reweight, tau, N, numerics, step):
    """One BayesBiNN step of one parameter, in the authors' order of operations:

        g_hat = (1/S) * sum_j s_j*g_j   ('exact', s_j with the factor N)
              = (N/S) * sum_j s_j*g_j   ('official', s_j without it, N after the sum)
              = N*g                     (S = 0: the point estimate, no scale)
        (lam', m') = natural_update(lam, m, g_hat, ...)
        mu' = tanh(lam) ('official': the authors' one-step lag; 'exact' keeps no mu)

    Overflow is not checked here: lam' may come out non-finite (the caller reports it).

    Parameters
    ----------
    lam : ndarray, float32 or float64
        Natural parameter.
    m : ndarray of lam's shape and dtype, or 0 (beta = 0: the momentum is not used)
    mu : ndarray of lam's shape and dtype, or None ('exact')
        The stored (lagged) mean, 'official' only.
    gs : list of S ndarrays, shape and dtype of ``lam``
        d loss/d w at the relaxed weights of each sample (minibatch mean).
    us : list of S ndarrays of that shape, or [None]
        The uniform noise of each sample; [None] for S = 0.
    lam0 : ndarray, scalar or shape of ``lam``, dtype of ``lam``
        Prior natural parameter.
    lr, beta, reweight : float
        As in ``natural_update``.
    tau, N : float > 0
        Temperature and training-set size.
    numerics : {'exact', 'official', 'exact-clipped'}
        'exact-clipped' is 'exact' with the clipped scale of ``concrete_scale``.
    step : int >= 1
        The step count t of this update.

    Returns
    -------
    (lam', m', mu') : lam' and m' of lam's shape and dtype; mu' likewise for 'official', else None

    References
    ----------
    Meng et al. (2020), the BayesBiNN update; spec sections 4 and 7.
    """
    dt = lam.dtype
    if us[0] is None:                                             # S = 0: point estimate
        g_hat = gs[0] * dt.type(N)
    else:
        n = 1.0 if numerics == OFFICIAL else N                     # official: N after the sum
        acc = None
        for g, u in zip(gs, us):
            sg = concrete_scale(lam, u, tau, n, numerics, mu) * g
            acc = sg if acc is None else acc + sg
        if numerics == OFFICIAL:
            g_hat = acc * dt.type(N / len(gs))
        else:
            g_hat = acc / dt.type(len(gs))
    lam_new, m_new = natural_update(lam, m, g_hat, lam0, lr, beta, reweight, step)
    mu_new = tanh_(lam) if numerics == OFFICIAL else None
    return lam_new, m_new, mu_new
