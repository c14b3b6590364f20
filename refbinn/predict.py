"""Predictions from a posterior over binary weights: mode, mean and predictive entropy::

    mode:    p(y|x) = link(f_{w*}(x)),  w* = opt.params(state)   (BayesBiNN: sign(lam) 'exact',
             sign(stored mu) 'official'; 0 -> +1)
    mean:    p(y|x) ~= (1/C) sum_c link(f_{w_c}(x)),  w_c = opt.sample_params(state, rng)
             (BayesBiNN: hard samples, P(w = +1) = sigmoid(2*lam))
    entropy: H[p] = -sum_k p_k log p_k  (nats)

``average='logits'`` instead returns link((1/C) sum_c f_{w_c}(x)): the average of
logits that the authors' image and continual-learning scripts use (a deviation;
their two-moons notebook averages probabilities, which is the predictive above).

Works with any ``Sequential`` model and any optimizer with ``params(state)`` and,
for the mean, ``sample_params(state, rng)``. The forward pass is in evaluation
mode (BatchNorm running statistics, no dropout). ``bn_state_for`` (optional, a
callable weights -> BatchNorm state, e.g. ``refbinn.bn_recalibration.recalibrator``)
gives each evaluated network its own running statistics instead of ``bn_state``.

References: Meng et al. (ICML 2020), section 4 (mode and mean predictions); spec section 5.
"""
from __future__ import annotations

import numpy as np

from .checks import check_choice, check_generator, check_int, check_real
from .nn.losses import sigmoid, softmax

LINKS = ("softmax", "sigmoid", "classes")
AVERAGES = ("prob", "logits")


def class_probs(logits):
    """Class probabilities (n, K) in float64 (so that the NLL of a confident miss stays finite):
    softmax of (n, K) logits, K > 1; for one logit per row, the two classes [1 - p, p], p = sigmoid.

    Parameters
    ----------
    logits : array_like, (n, K), (n, 1) or (n,)
        Network outputs f_w(x); one column (or a vector) is the logit of class 1.

    Returns
    -------
    numpy.ndarray, float64, (n, K) or (n, 2)
        p_ik = exp(f_ik) / sum_j exp(f_ij), or [1 - sigmoid(f_i), sigmoid(f_i)] for one logit.
    """
    logits = np.asarray(logits)
    if logits.ndim not in (1, 2) or logits.shape[1:] == (0,) or logits.dtype.kind not in "biuf":
        raise ValueError(f"class_probs: logits must be real numbers of shape (n, K), (n, 1) or (n,), "
                         f"got {logits.dtype} {logits.shape}")
    logits = logits.astype(np.float64)
    if logits.ndim == 1 or logits.shape[1] == 1:
        p1 = sigmoid(logits.reshape(-1))
        return np.stack([1 - p1, p1], axis=1)                           # (n, 2)
    return softmax(logits, axis=-1)


def apply_link(logits, link="softmax"):
    """softmax over the last axis, elementwise sigmoid (P(y = 1) per output), or
    ``class_probs`` ('classes': float64, a single logit read as two classes).

    Parameters
    ----------
    logits : array_like, (n, outputs)
        Network outputs f_w(x).
    link : {'softmax', 'sigmoid', 'classes'}
        'softmax': p_k = exp(f_k) / sum_j exp(f_j) over the last axis; 'sigmoid':
        1 / (1 + exp(-f)) per output; 'classes': ``class_probs``. Default 'softmax'.

    Returns
    -------
    numpy.ndarray
        (n, outputs) for 'softmax' and 'sigmoid' (the dtype of ``logits``); (n, K) float64
        for 'classes' ((n, 2) from a single logit).
    """
    check_choice("link", link, LINKS)
    if link == "classes":
        return class_probs(logits)
    return softmax(logits, axis=-1) if link == "softmax" else sigmoid(logits)


def predict_logits(model, params, bn_state, x, batch_size=1000):
    """f_w(x) in evaluation mode, ``batch_size`` rows at a time.

    Parameters
    ----------
    model : Sequential
    params : dict name -> ndarray
        The weights to use (e.g. ``opt.params(state)``).
    bn_state : dict
        BatchNorm running statistics (``{}`` when the model has none).
    x : ndarray, (n, ...)
    batch_size : int >= 1

    Returns
    -------
    ndarray, (n, outputs)
    """
    batch_size = check_int("batch_size", batch_size, 1)
    if not callable(getattr(model, "apply", None)):
        raise ValueError(f"predict_logits: model must be a Sequential (with apply), got {type(model).__name__}")
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError(f"predict_logits: x must have shape (n, ...), got {x.shape}")
    outs = [model.apply(params, x[i:i + batch_size], bn_state) for i in range(0, len(x), batch_size)]
    if not outs:
        raise ValueError("predict_logits: x has no rows")
    return np.concatenate(outs, axis=0)                                   # (n, outputs)


def _check_callers(fn, opt, method, bn_state_for):
    """ValueError naming ``fn`` unless ``opt`` has ``method`` and ``bn_state_for`` is None or callable."""
    if not callable(getattr(opt, method, None)):
        raise ValueError(f"{fn}: opt must be an optimizer with {method}(state), got {type(opt).__name__}")
    if bn_state_for is not None and not callable(bn_state_for):
        raise ValueError(f"{fn}: bn_state_for must be None or a function weights -> BatchNorm state, "
                         f"got {type(bn_state_for).__name__}")


def predict_mode(model, opt, opt_state, bn_state, x, *, link="softmax", batch_size=1000,
                 bn_state_for=None):
    """p(y|x) = link(f_{w*}(x)) at the evaluation weights w* = opt.params(opt_state).

    Parameters
    ----------
    model : Sequential
    opt : optimizer with ``params(state)``
    opt_state : its state
    bn_state : dict
    x : ndarray, (n, ...)
    link : {'softmax', 'sigmoid', 'classes'}
    batch_size : int >= 1
    bn_state_for : callable weights -> BatchNorm state, optional
        Replaces ``bn_state`` (BatchNorm recalibration).

    Returns
    -------
    ndarray, (n, outputs): class probabilities (softmax) or P(y = 1) per output (sigmoid)
    """
    check_choice("link", link, LINKS)
    _check_callers("predict_mode", opt, "params", bn_state_for)
    w = opt.params(opt_state)
    bn = bn_state if bn_state_for is None else bn_state_for(w)
    return apply_link(predict_logits(model, w, bn, x, batch_size), link)


def predict_mean(model, opt, opt_state, bn_state, x, samples=10, rng=None, *, average="prob",
                 link="softmax", batch_size=1000, bn_state_for=None):
    """Monte Carlo predictive over C = ``samples`` hard weight samples.

    average='prob':   (1/C) sum_c link(f_{w_c}(x))       (the Bayesian predictive)
    average='logits': link((1/C) sum_c f_{w_c}(x))        (the authors' image scripts)

    Parameters
    ----------
    model : Sequential
    opt : optimizer with ``sample_params(state, rng)``
    opt_state : its state
    bn_state : dict
    x : ndarray, (n, ...)
    samples : int >= 1
    rng : numpy.random.Generator
        Draws the C weight samples, in order.
    average : {'prob', 'logits'}
    link : {'softmax', 'sigmoid', 'classes'}
    batch_size : int >= 1
    bn_state_for : callable weights -> BatchNorm state, optional
        Replaces ``bn_state`` for each sampled network (BatchNorm recalibration).

    Returns
    -------
    ndarray, (n, outputs); (n, K) float64 for 'classes'
    """
    samples = check_int("samples", samples, 1)
    check_choice("average", average, AVERAGES)
    check_choice("link", link, LINKS)
    check_generator("predict_mean: rng", rng)
    _check_callers("predict_mean", opt, "sample_params", bn_state_for)
    total = None
    for _ in range(samples):
        w = opt.sample_params(opt_state, rng)
        bn = bn_state if bn_state_for is None else bn_state_for(w)
        lg = predict_logits(model, w, bn, x, batch_size)
        if link == "classes":
            lg = lg.astype(np.float64)                    # averaged in float64 too
        v = apply_link(lg, link) if average == "prob" else lg
        total = v if total is None else total + v
    mean = total / samples
    return mean if average == "prob" else apply_link(mean, link)


def predictive_entropy(probs):
    """H = -sum_k p_k log p_k in nats, with 0 log 0 = 0.

    Parameters
    ----------
    probs : ndarray
        (n, K) class probabilities (rows sum to 1), or P(y = 1) for a binary
        output: shape (n,) or (n, 1), entropy -p log p - (1-p) log(1-p).

    Returns
    -------
    ndarray, (n,)
        NaN where a row holds NaN (a diverged run's probabilities pass through).

    Raises
    ------
    ValueError
        On another number of dimensions, or a value outside [0, 1].
    """
    p = np.asarray(probs)
    if p.ndim not in (1, 2):
        raise ValueError(f"predictive_entropy: probs must have shape (n, K), (n, 1) or (n,), got {p.shape}")
    check_real("predictive_entropy: probs", p)                           # complex would give complex H
    if np.any((p < 0) | (p > 1)):                                         # NaN compares False: kept
        raise ValueError("predictive_entropy: probs must be in [0, 1] (or NaN)")
    if p.ndim == 1 or p.shape[-1] == 1:                                   # binary: P(y = 1)
        p = p.reshape(p.shape[0])
        p = np.stack([p, 1 - p], axis=-1)                                 # (n, 2)
    return row_entropy(p)


def row_entropy(p):
    """-sum_k p_k log p_k over the last axis, 0 log 0 = 0, in ``p``'s dtype; no checks (NaN passes).

    The one entropy formula behind ``predictive_entropy`` and ``refbinn.metrics.entropy``,
    which check their input each by its own policy.

    Parameters
    ----------
    p : ndarray, (..., K)
        Probabilities.

    Returns
    -------
    ndarray, (...)
    """
    return -np.sum(p * np.log(np.where(p > 0, p, 1)), axis=-1)
