"""Gradient estimators for E_q[loss(w)] over a mean-field Bernoulli q, and exact references.

The objective is F(mu) = E_q[loss(w)], w in {-1,+1}^d, q(w_i = +1) = sigmoid(2*lam_i),
mu = tanh(lam) = E_q[w] (spec sections 2, 3 and 11). Every function works on a
BATCH of weight vectors, so the loss is given as callables over rows::

    loss_fn(W)   -> losses (B,)                 W: (B, d), one weight vector per row
    loss_grad(W) -> (losses (B,), grads (B, d)) grads[b] = d loss / d w at W[b]

Nothing loops over samples in Python. The estimators return PER-SAMPLE estimates
(S, d); the caller averages them (``mean_and_se`` also gives the standard error).

=========================  ==============================  =======================
code                       paper (Meng et al. 2020)        authors' code
=========================  ==============================  =======================
``lam``                    lambda, natural parameter       ``lamda``
``mu``                     mu = tanh(lambda)               ``mu``
``u``                      u ~ U(0, 1)                     ``uniform``
``delta``                  delta = 0.5 log(u / (1 - u))    ``epsilon``
``w_r``                    relaxed weight, Lemma 1         ``relaxed_w``
``s``                      N (1 - w_r^2)/(tau (1 - mu^2))  ``s``
``tau``                    temperature tau                 ``temperature``
=========================  ==============================  =======================

Estimators and references:

- ``lemma1``: Gumbel-softmax (concrete) pathwise estimate s * g; unbiased for the
  gradient of the RELAXED objective F_tau, biased for dF/dmu (the bias vanishes as
  tau -> 0 while the variance grows).
- ``reinforce``: score-function estimate with hard samples; unbiased for dF/dmu.
- ``exact_gradient`` / ``exact_expected_loss``: enumeration of all 2^d sign vectors.
- ``relaxed_objective_grad`` / ``relaxed_objective``: F_tau and dF_tau/dmu by
  adaptive cubature, d in {1, 2}.
- ``tanh_mlp`` / ``teacher_problem``: a tiny vectorized test problem (a 2-layer tanh
  network on a fixed minibatch) used by tests/test_lemma1.py and scripts/lemma1_table.py.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import integrate

from ..checks import check_int, check_range

MAX_ENUM_DIM = 16       # 2^16 = 65536 sign vectors: the largest exact enumeration offered
_DELTA_LIM = 20.0       # logistic noise beyond |delta| = 20 has mass 2*sigmoid(-40) ~ 8e-18


# -- small helpers ----------------------------------------------------------------
def _float_or_float64(x):
    """lam's dtype when it is floating, else float64 (so float32 stays float32)."""
    return x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)


def _check_lam(lam):
    lam = np.asarray(lam)
    if lam.ndim != 1 or lam.size == 0:
        raise ValueError(f"lam must be a non-empty 1-D array (d,), got shape {lam.shape}")
    if not np.all(np.isfinite(lam)):
        raise ValueError("lam must be finite")
    return lam.astype(_float_or_float64(lam), copy=False)


def _uniform(u, rng, samples, d, lo=1):
    """The (S, d) uniform noise: ``u`` as given (checked) or drawn from ``rng``."""
    if u is None:
        if rng is None:
            raise ValueError("give either u (the noise, shape (S, d)) or rng (a numpy Generator)")
        return rng.random((check_int("samples", 1 if samples is None else samples, lo), d))
    u = np.asarray(u, dtype=np.float64)
    if u.ndim != 2 or u.shape[1] != d:
        raise ValueError(f"u must have shape (S, {d}) to match lam (d,) = ({d},), got {u.shape}")
    check_int("samples", u.shape[0], lo)
    if samples is not None and samples != u.shape[0]:
        raise ValueError(f"samples={samples!r} does not match u with {u.shape[0]} rows")
    if not np.all((u >= 0) & (u <= 1)):
        raise ValueError("u must be in [0, 1]")
    return u


def _check_baseline(baseline):
    if baseline is None or (isinstance(baseline, str) and baseline == "mean"):
        return baseline
    try:
        b = float(baseline)
    except (TypeError, ValueError):
        b = np.nan
    if isinstance(baseline, (bool, np.bool_, str, bytes)) or not np.isfinite(b):   # True is a slip, b'1' text
        raise ValueError(f"baseline must be None, 'mean' or a finite float, got {baseline!r}")
    return b


def _check_losses(losses, B, where):
    losses = np.asarray(losses)
    if losses.shape != (B,):
        raise ValueError(f"{where} must return losses of shape ({B},), got {losses.shape}")
    return losses


def logcosh(x):
    """log cosh(x) = abs(x) + log1p(exp(-2 abs(x))) - log 2, without overflow for large abs(x).

    Parameters
    ----------
    x : array_like
        A float dtype is kept; anything else (integers, Python numbers) is computed in float64.

    Returns
    -------
    ndarray
        Same shape as ``x``; ``x``'s dtype when it is a float, else float64.
    """
    x = np.asarray(x)
    a = np.abs(x if x.dtype.kind == "f" else x.astype(np.float64))
    return a + np.log1p(np.exp(-2 * a)) - np.log(2).astype(a.dtype)


def logistic_noise(u):
    """delta = 0.5 * log(u / (1 - u)): logistic noise with scale 1/2 (spec section 3).

    Parameters
    ----------
    u : ndarray (S, d), uniform in [0, 1]; 0 and 1 give -inf and +inf.

    Returns
    -------
    delta : ndarray (S, d), u's dtype.
    """
    with np.errstate(divide="ignore"):
        return 0.5 * (np.log(u) - np.log1p(-u))


def mean_and_se(est):
    """Sample mean and its standard error, sqrt(var / S), var with ddof = 1, over axis 0.

    Parameters
    ----------
    est : ndarray (S, d), per-sample estimates (S >= 2).

    Returns
    -------
    mean, se : ndarray (d,)
    """
    est = np.asarray(est)
    S = est.shape[0] if est.ndim else 0                                  # a scalar holds no samples axis
    if S < 2:
        raise ValueError(f"mean_and_se needs at least 2 samples, got {S}")
    return est.mean(axis=0), est.std(axis=0, ddof=1) / np.sqrt(S)


# -- Lemma 1 -----------------------------------------------------------------------
def lemma1(loss_grad, lam, tau, N=1.0, samples=None, rng=None, u=None):
    r"""Per-sample Gumbel-softmax (concrete) estimates of dF/dmu: s * g, with::

        delta = 0.5 log(u / (1 - u)),   u ~ U(0, 1)
        w_r   = tanh((lam + delta) / tau)
        g     = d loss / d w at w = w_r
        s     = N (1 - w_r^2) / (tau (1 - mu^2))
              = N exp(2 (logcosh(lam) - logcosh((lam + delta) / tau))) / tau

    s * g is exactly d/dmu loss(tanh((atanh(mu) + delta) / tau)) with delta held
    fixed (times N), so its mean is unbiased for dF_tau/dmu, the gradient of the
    relaxed objective F_tau(mu) = E_delta[loss(w_r)]. The log-cosh form has no 0/0
    when tanh saturates. Computed in lam's dtype; u enters in float64 so that a port
    fed the same float64 u reproduces these numbers.

    Parameters
    ----------
    loss_grad : callable, W (S, d) -> (losses (S,), grads (S, d)).
    lam : ndarray (d,), natural parameters.
    tau : float > 0, temperature.
    N : float > 0, training-set size (the loss is a minibatch mean); default 1.
    samples : int >= 1, number of samples S; default 1, or u's row count.
    rng : numpy.random.Generator, draws u = rng.random((samples, d)) when u is None.
    u : ndarray (S, d), optional uniform noise (the deterministic core).

    Returns
    -------
    est : ndarray (S, d), one estimate per sample; average over axis 0.

    References
    ----------
    Meng, Bachmann & Khan (2020), "Training Binary Neural Networks using the
    Bayesian Learning Rule", ICML, Lemma 1.
    """
    lam = _check_lam(lam)
    tau = float(check_range("tau", tau, 0, math.inf, lo_open=True, hi_open=True))
    N = float(check_range("N", N, 0, math.inf, lo_open=True, hi_open=True))
    dt = lam.dtype
    u = _uniform(u, rng, samples, lam.size)
    delta = logistic_noise(u).astype(dt)                                  # (S, d)
    z = (lam + delta) / tau
    w_r = np.tanh(z)
    losses, grads = loss_grad(w_r)
    _check_losses(losses, w_r.shape[0], "loss_grad")
    grads = np.asarray(grads)
    if grads.shape != w_r.shape:
        raise ValueError(f"loss_grad must return grads of shape {w_r.shape}, got {grads.shape}")
    s = (N / tau) * np.exp(2 * (logcosh(lam) - logcosh(z)))               # (S, d)
    return (s * grads).astype(dt, copy=False)


# -- REINFORCE ---------------------------------------------------------------------
def reinforce(loss_fn, lam, samples=None, rng=None, baseline=None, u=None):
    r"""Per-sample score-function (REINFORCE) estimates of dF/dmu with hard samples.

        w_i ~ q,  P(w_i = +1) = sigmoid(2 lam_i) = (1 + mu_i) / 2
        g_i = (loss(w) - b) * d log q(w) / d mu_i = (loss(w) - b) * w_i / (1 + w_i mu_i)

    1 + w_i mu_i = 2 sigmoid(2 w_i lam_i) is computed in that form, so a saturated
    mu = +-1 gives no division by zero. Baselines: None (b = 0); a float b (any
    constant keeps the estimate unbiased since E[score] = 0); or 'mean', the
    leave-one-out mean b_s = (sum_j loss_j - loss_s) / (S - 1), independent of
    sample s, so each term stays unbiased (needs S >= 2).

    Parameters
    ----------
    loss_fn : callable, W (S, d) -> losses (S,).
    lam : ndarray (d,), natural parameters.
    samples : int >= 1, number of samples S (default 1, or u's row count).
    rng : numpy.random.Generator, draws u = rng.random((samples, d)) when u is None.
    baseline : None, float or 'mean'.
    u : ndarray (S, d), optional uniform noise; w_i = +1 where u_i < sigmoid(2 lam_i).

    Returns
    -------
    est : ndarray (S, d), one estimate per sample; average over axis 0.

    References
    ----------
    Williams (1992), "Simple statistical gradient-following algorithms for
    connectionist reinforcement learning", Machine Learning 8; the BayesBiNN setting
    is Meng, Bachmann & Khan (2020), Lemma 1 (spec section 11).
    """
    lam = _check_lam(lam)
    dt = lam.dtype
    baseline = _check_baseline(baseline)
    u = _uniform(u, rng, samples, lam.size, lo=2 if baseline == "mean" else 1)
    p_plus = 0.5 * (1 + np.tanh(lam.astype(np.float64)))                 # sigmoid(2 lam)
    w = np.where(u < p_plus, 1.0, -1.0).astype(dt)                        # (S, d)
    losses = _check_losses(loss_fn(w), w.shape[0], "loss_fn").astype(np.float64)
    if baseline == "mean":
        S = losses.shape[0]
        b = (losses.sum() - losses) / (S - 1)                             # leave-one-out
    else:
        b = 0.0 if baseline is None else float(baseline)
    # w / (1 + w mu) = w / (2 sigmoid(2 w lam)) = w (1 + exp(-2 w lam)) / 2
    score = w * 0.5 * (1 + np.exp(-2 * w * lam))                          # (S, d)
    return ((losses - b)[:, None] * score).astype(dt, copy=False)


# -- exact references by enumeration --------------------------------------------------
def sign_vectors(d):
    """All 2^d sign vectors: row k has w_i = +1 where bit i of k is set, else -1.

    Parameters
    ----------
    d : int, >= 0

    Returns
    -------
    ndarray, float64, (2^d, d)
    """
    d = check_int("d", d, 0)
    bits = (np.arange(2 ** d)[:, None] >> np.arange(d)) & 1              # (2^d, d)
    return (2 * bits - 1).astype(np.float64)


def _enumerate(loss_fn, lam, chunk):
    lam = _check_lam(lam)
    d = lam.size
    if d > MAX_ENUM_DIM:
        raise ValueError(f"exact enumeration needs d in [1, {MAX_ENUM_DIM}], got d={d}")
    chunk = check_int("chunk", chunk, 1)
    W = sign_vectors(d)
    # loss_fn once per chunk of rows: one call when 2^d <= chunk
    L = np.concatenate([_check_losses(loss_fn(W[i:i + chunk].astype(lam.dtype)),
                                      min(chunk, W.shape[0] - i), "loss_fn")
                        for i in range(0, W.shape[0], chunk)]).astype(np.float64)
    # log q_i(w_i) = log sigmoid(2 w_i lam_i), finite for any finite lam
    logq = -np.logaddexp(0.0, -2.0 * W * lam.astype(np.float64))          # (2^d, d)
    return lam, W, L, logq


def exact_expected_loss(loss_fn, lam, chunk=8192):
    """F(mu) = E_q[loss(w)] = sum_w prod_i q_i(w_i) loss(w), over all 2^d sign vectors.

    Parameters
    ----------
    loss_fn : callable, W (B, d) -> losses (B,).
    lam : ndarray (d,), d in [1, 16].
    chunk : int, rows of the (2^d, d) sign matrix per loss_fn call.

    Returns
    -------
    F : scalar of lam's dtype.

    References
    ----------
    Meng, Bachmann & Khan (2020), the expected loss that Lemma 1 differentiates;
    spec section 11.
    """
    lam, W, L, logq = _enumerate(loss_fn, lam, chunk)
    return lam.dtype.type(np.exp(logq.sum(axis=1)) @ L)


def exact_gradient(loss_fn, lam, chunk=8192):
    """dF/dmu_i = 0.5 * (E[loss | w_i = +1] - E[loss | w_i = -1]), by enumeration.

    F is multilinear in mu: F = sum_w loss(w) prod_j (1 + w_j mu_j)/2, so
    dF/dmu_i = sum_w loss(w) (w_i / 2) prod_{j != i} q_j(w_j), which is the formula
    above. prod_{j != i} q_j(w_j) is exp(log q(w) - log q_i(w_i)) with no division
    by a probability that may be 0.

    Parameters
    ----------
    loss_fn : callable, W (B, d) -> losses (B,).
    lam : ndarray (d,), d in [1, 16] (ValueError otherwise).
    chunk : int, rows of the (2^d, d) sign matrix per loss_fn call.

    Returns
    -------
    grad : ndarray (d,), lam's dtype.

    References
    ----------
    Meng, Bachmann & Khan (2020), Lemma 1 (the quantity it approximates); spec section 11.
    """
    lam, W, L, logq = _enumerate(loss_fn, lam, chunk)
    q_others = np.exp(logq.sum(axis=1, keepdims=True) - logq)            # (2^d, d)
    return (0.5 * ((L[:, None] * W) * q_others).sum(axis=0)).astype(lam.dtype)


# -- relaxed objective by quadrature --------------------------------------------------
def _relaxed_moments(loss_fn, lam, tau, rtol, atol):
    """Integrals of [loss, loss * 2 tanh(delta_1), ..., loss * 2 tanh(delta_d)] under p(delta)."""
    lam = _check_lam(lam).astype(np.float64)
    tau = float(check_range("tau", tau, 0, math.inf, lo_open=True, hi_open=True))
    d = lam.size
    if d > 2:
        raise ValueError(f"relaxed objective by quadrature needs d in [1, 2], got d={d}")

    def integrand(x):                                                     # x: (P, d) deltas
        w_r = np.tanh((lam + x) / tau)
        L = _check_losses(loss_fn(w_r), x.shape[0], "loss_fn")
        dens = np.prod(0.5 / np.cosh(x) ** 2, axis=1)                     # p(delta) = sech^2/2
        return (L * dens)[:, None] * np.concatenate([np.ones((x.shape[0], 1)), 2 * np.tanh(x)], axis=1)

    # split each axis where w_r switches sign (delta_i = -lam_i, a step of width ~tau)
    edges = [np.unique(np.clip([-_DELTA_LIM, -li, _DELTA_LIM], -_DELTA_LIM, _DELTA_LIM))
             for li in lam]
    total = np.zeros(d + 1)
    for idx in np.ndindex(*[len(e) - 1 for e in edges]):
        a = [e[k] for e, k in zip(edges, idx)]
        b = [e[k + 1] for e, k in zip(edges, idx)]
        res = integrate.cubature(integrand, a, b, rtol=rtol, atol=atol)
        if res.status != "converged":
            raise RuntimeError(f"cubature did not converge on box {a}..{b}: error {res.error}")
        total += res.estimate
    return lam, total


def relaxed_objective(loss_fn, lam, tau, rtol=1e-10, atol=1e-13):
    """F_tau(mu) = E_delta[loss(tanh((lam + delta) / tau))], delta ~ logistic(0, 1/2), d <= 2.

    Adaptive Gauss-Kronrod cubature (scipy.integrate.cubature) over delta in
    [-20, 20]^d with the density p(delta) = sech(delta)^2 / 2, each axis split at
    delta_i = -lam_i where w_r jumps within a width ~tau.

    Parameters
    ----------
    loss_fn : callable, W (B, d) -> losses (B,).
    lam : ndarray (d,), d in {1, 2}.
    tau : float > 0.
    rtol, atol : cubature tolerances.

    Returns
    -------
    F_tau : float.

    References
    ----------
    Meng, Bachmann & Khan (2020), Lemma 1 (the relaxed objective).
    """
    return float(_relaxed_moments(loss_fn, lam, tau, rtol, atol)[1][0])


def relaxed_objective_grad(loss_fn, lam, tau, rtol=1e-10, atol=1e-13):
    r"""dF_tau/dmu_i = cosh(lam_i)^2 * E_delta[loss(w_r) * 2 tanh(delta_i)], by cubature, d <= 2.

    Derivation (differentiate under the integral, analytically): substitute
    t = lam + delta, so F_tau = \int loss(tanh(t / tau)) p(t - lam) dt and lam enters
    only through the density; d/dlam_i gives E[loss(w_r) * (-d log p / d delta_i)],
    and for p(delta) = sech(delta)^2 / 2, -d log p / d delta = 2 tanh(delta). The chain
    rule through lam(mu) = atanh(mu) multiplies by d lam / d mu = 1 / (1 - mu^2) =
    cosh(lam)^2. This needs only loss values, and its integrand is smooth and bounded,
    so adaptive cubature reaches ~1e-10 relative accuracy; it is also independent of
    the pathwise derivation behind ``lemma1``, which is what makes it a check.
    Quadrature as in ``relaxed_objective``.

    Parameters
    ----------
    loss_fn : callable, W (B, d) -> losses (B,).
    lam : ndarray (d,), d in {1, 2}.
    tau : float > 0.
    rtol, atol : cubature tolerances.

    Returns
    -------
    grad : ndarray (d,), float64.

    References
    ----------
    Meng, Bachmann & Khan (2020), Lemma 1 (the quantity s * g is unbiased for).
    """
    lam, m = _relaxed_moments(loss_fn, lam, tau, rtol, atol)
    return np.cosh(lam) ** 2 * m[1:]
