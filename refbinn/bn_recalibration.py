"""BatchNorm recalibration: running statistics recomputed for the network that is evaluated.

For every BatchNorm layer l and K calibration batches b = 1..K (rows of the training set)::

    running_mean_l = (1/K) sum_b mean_b(x_l)                       (per channel)
    running_var_l  = (1/K) sum_b var_b(x_l) * m_b/(m_b - 1)         (unbiased batch variance)

x_l is the input of layer l in a forward pass of the given weights in which every
BatchNorm layer is in training mode (it normalises by its own batch statistics, as in
training) and every other layer is in evaluation mode (dropout off: the network is then
the one evaluated). m_b is the number of values per channel in batch b (N, or N*H*W).

This is torch's cumulative average: ``bn.reset_running_stats(); bn.momentum = None``
followed by K training-mode forward passes gives running = the arithmetic mean over the
batches of the batch statistics (``torch.optim.swa_utils.update_bn`` does the same, with
dropout left on). It is the average of per-batch statistics, not the statistics of the
K*B pooled rows. Sums are taken in float64; the result has the dtype of the given state.

Why: BatchNorm's running statistics are collected during training on the networks the
optimizer trains with (BayesBiNN: relaxed samples tanh((lam + delta)/tau), whose weights
are not +-1 at tau > 0), while evaluation uses other networks (the mode sign(lam) or sign(mu), hard
samples). Recalibration gives each evaluated network the statistics of its own activations.

Usage (``refbinn evaluate --recalibrate-bn K``, ``refbinn train --recalibrate-bn K``)::

    batches = calibration_batches(x_train, K, 100, rng)
    bn = recalibrate_bn(model, opt.params(state), batches, bn_state)
"""
from __future__ import annotations

import numpy as np

from .checks import check_generator, check_int, check_real
from .nn import BatchNorm


def calibration_batches(x, k, batch_size, rng):
    """K batches of ``batch_size`` rows of ``x``, drawn without replacement (a fresh
    permutation whenever K*batch_size exceeds the rows); no augmentation.

    Parameters
    ----------
    x : ndarray, (n, ...)
        Training inputs.
    k : int >= 1
        K, the number of batches.
    batch_size : int >= 2
    rng : numpy.random.Generator

    Returns
    -------
    list of K ndarrays, (batch_size, ...) (every one of n rows when n < batch_size)
    """
    k = check_int("k", k, 1)
    batch_size = check_int("batch_size", batch_size, 2)
    check_generator("calibration_batches: rng", rng)
    x = np.asarray(x)
    n = len(x) if x.ndim else 0
    if n < 2:
        raise ValueError(f"calibration_batches: x must have at least 2 rows, got shape {x.shape}")
    b = min(batch_size, n)
    need = k * b
    idx = np.concatenate([rng.permutation(n) for _ in range(-(-need // n))])[:need]   # (K*b,)
    return [x[idx[i * b:(i + 1) * b]] for i in range(k)]


def _layer_part(layer, flat):
    prefix = layer.name + "."
    return {key[len(prefix):]: v for key, v in flat.items() if key.startswith(prefix)}


def batch_moments(x):
    """Per-channel mean and unbiased variance of a (N, C) or (N, C, H, W) batch, in float64.

    Parameters
    ----------
    x : ndarray, (N, C) or (N, C, H, W)

    Returns
    -------
    (mean, var) : ndarrays, (C,)

    Raises
    ------
    ValueError
        On another number of dimensions, no channel, a single value per channel, a
        non-real dtype, or NaN/inf values (NaN statistics).
    """
    x = check_real("batch_moments: x", x, "iuf").astype(np.float64, copy=False)
    if x.ndim not in (2, 4) or x.shape[1] == 0:
        raise ValueError(f"batch_moments: x must have shape (N, C) or (N, C, H, W) with C >= 1, got {x.shape}")
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    m = x.size // x.shape[1]                                     # values per channel
    if m < 2:
        raise ValueError(f"batch_moments: needs more than one value per channel, got shape {x.shape}")
    mean, var = x.mean(axis=axes), x.var(axis=axes) * (m / (m - 1))
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var))):
        raise ValueError("batch_moments: the batch has NaN/inf values (or overflows float64); "
                         "its statistics would be NaN")
    return mean, var


def recalibrate_bn(model, params, batches, bn_state):
    """New BatchNorm running statistics for ``params``: see the module docstring.

    Parameters
    ----------
    model : Sequential
    params : dict name -> ndarray
        The weights of the network to evaluate (e.g. ``opt.params(state)``).
    batches : list of ndarrays
        Calibration inputs (``calibration_batches``); the same list for every network
        of a comparison.
    bn_state : dict
        The current state (gives the keys and dtypes; entries other than BatchNorm
        running statistics are returned unchanged).

    Returns
    -------
    dict, the keys of ``bn_state``: running_mean/var of every BatchNorm layer replaced
    """
    bns = [layer for layer in model.layers if isinstance(layer, BatchNorm)]
    if not bns:
        return bn_state
    if not isinstance(batches, (list, tuple)):
        raise ValueError(f"recalibrate_bn: batches must be a list of input arrays, got {type(batches).__name__}")
    if not batches:
        raise ValueError("recalibrate_bn: batches is empty (need K >= 1 calibration batches)")
    sums = {layer.name: [0.0, 0.0] for layer in bns}
    for xb in batches:
        x = xb
        for layer in model.layers:
            is_bn = isinstance(layer, BatchNorm)
            if is_bn:
                mean, var = batch_moments(x)
                sums[layer.name][0] = sums[layer.name][0] + mean
                sums[layer.name][1] = sums[layer.name][1] + var
            # BatchNorm normalises by the batch (training mode); dropout and the rest: evaluation mode
            x, _, _ = layer.forward(_layer_part(layer, params), x, _layer_part(layer, bn_state),
                                    train=is_bn)
    out = dict(bn_state)
    for layer in bns:
        for j, key in enumerate(("running_mean", "running_var")):
            name = f"{layer.name}.{key}"
            out[name] = (sums[layer.name][j] / len(batches)).astype(np.asarray(bn_state[name]).dtype)
    return out


def recalibrator(model, batches, bn_state):
    """The callable ``params -> recalibrate_bn(model, params, batches, bn_state)`` that
    ``refbinn.predict`` takes as ``bn_state_for``.

    Parameters
    ----------
    model : Sequential
    batches : list of ndarrays
        Calibration inputs, the same for every network evaluated.
    bn_state : dict
        The training's state (keys and dtypes).

    Returns
    -------
    callable dict -> dict
    """
    return lambda params: recalibrate_bn(model, params, batches, bn_state)
