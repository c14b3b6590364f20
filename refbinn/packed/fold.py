"""Folding for packed inference: BatchNorm into scale and shift, BN -> sign into thresholds::

    BatchNorm:     y = x * scale + shift,   scale = gamma / sqrt(var + eps),
                                            shift = beta - mean * scale
    BN -> sign:    s = +1  <=>  dir * h >= t                          (per channel, dir = +-1)

``fit_threshold`` finds ``t`` by bisection on the float model's own layers, over
every integer ``|h| <= K`` (after a binary layer) or every float32 ``|h| <= 2**100``
(after a real layer, through ``float_keys`` / ``float_values``), so the packed signs
equal the float ones whenever ``h`` does. The overview is in ``refbinn.packed``.

References: Courbariaux et al. (2016), BinaryNet (sign activations, BN before sign).
"""
from __future__ import annotations

import numpy as np

from ..nn import BatchNorm

FLOAT_BOUND = 2.0 ** 100          # real pre-activations beyond it decide as at the bound


def float_keys(v):
    """Integer keys of float32 values, in the order of the values (-0.0 and +0.0 share key 0).

    key = bits for v >= +0.0, -(bits & 0x7FFFFFFF) for v < 0, where bits is the IEEE
    pattern read as int32: sign and magnitude, so consecutive floats get consecutive keys
    and key(-v) = -key(v).

    Parameters
    ----------
    v : array_like
        Values, converted to float32 (NaN has no meaningful key).

    Returns
    -------
    ndarray of int64, shape of ``v``
    """
    bits = np.asarray(v, np.float32).view(np.int32).astype(np.int64)
    return np.where(bits >= 0, bits, -(bits & 0x7FFFFFFF))


def float_values(k):
    """The float32 values of ``float_keys``; value(-k) = -value(k).

    Parameters
    ----------
    k : array_like of int
        Keys, ``|k| < 2**31`` (key 0 gives +0.0).

    Returns
    -------
    ndarray of float32, shape of ``k``
        The inverse of ``float_keys``: ``float_values(float_keys(v)) == v`` for non-NaN v.
    """
    k = np.asarray(k, np.int64)
    return np.where(k >= 0, k, -k | 0x80000000).astype(np.uint32).view(np.float32)


def fit_threshold(decide, channels, bound, value=None):
    """dirs, t with ``decide(value(k))[c] == (dirs[c] * k >= t[c])`` for every key ``|k| <= bound``.

    ``decide`` maps one value per channel, shape (C,), to booleans and must be
    monotone in the key, per channel. dirs = -1 where it is true at -bound and
    false at +bound; then ``g(k) = decide(value(dirs * k))`` is non-decreasing
    and t is its first true key, found by bisection (t = bound + 1: never true).

    Parameters
    ----------
    decide : callable, (C,) values -> (C,) bool
    channels : int, C
    bound : int, keys run over [-bound, bound]
    value : callable keys -> values (default: the integer itself); ``value(-k) = -value(k)``

    Returns
    -------
    dirs : int64 (C,) in {-1, +1};  t : int64 (C,) in [-bound, bound + 1]
    """
    value = (lambda k: k) if value is None else value
    lo, hi = np.full(channels, -bound, np.int64), np.full(channels, bound, np.int64)
    d_lo, d_hi = decide(value(lo)), decide(value(hi))
    dirs = np.where(d_lo & ~d_hi, -1, 1).astype(np.int64)
    a, b = lo - 1, hi + 1                        # g(a) false, g(b) true (virtual ends)
    while True:
        active = b - a > 1
        if not active.any():
            return dirs, b
        m = np.where(active, (a + b) // 2, 0)    # 0 lies in the domain; ignored when inactive
        g = np.asarray(decide(value(dirs * m)), bool)
        a = np.where(active & ~g, m, a)
        b = np.where(active & g, m, b)


def threshold_op(name, chain, bias, channels, dtype, integer_bound):
    """The threshold op of ``sign(chain(h + bias))``: integer keys ``|h| <= K``, else float32 keys.

    Per channel c: sign(chain(h + bias))[c] = +1  <=>  dirs[c] * h[c] >= t[c], with t found
    by ``fit_threshold`` on the float model's own layers in ``dtype``.

    Parameters
    ----------
    name : str
        The op's name (the layer where the chain starts).
    chain : list of (layer, params, state)
        The per-channel monotone layers between the linear layer and the sign
        (BatchNorm, ReLU, Tanh; Dropout and MaxPool are left out by ``export``), in order,
        each with its own parameters and BatchNorm state (keys without the layer prefix).
    bias : ndarray, shape (C,), or None
        The preceding Dense/Conv2d bias, not yet added to h.
    channels : int
        C; every BatchNorm of the chain must have C features (ValueError otherwise).
    dtype : numpy dtype
        The float model's dtype at this point (float32, or float64 for float64 weights).
    integer_bound : int or None
        K when h is the exact integer output of a binary layer (``|h| <= K``); None when h
        is real (float32 keys over ``|h| <= FLOAT_BOUND``).

    Returns
    -------
    spec : dict
        ``{"op": "threshold", "name": name, "pack": False}`` (``export`` sets ``pack``).
    arrays : dict
        ``dirs`` and ``t``, shape (C,): int32 for integer h; float32 for real h, with
        t = +-inf for a channel whose sign is the same for every h.
    """
    for layer, _, _ in chain:
        if isinstance(layer, BatchNorm) and layer.num_features != channels:
            raise ValueError(f"export: layer '{layer.name}' has {layer.num_features} channels, "
                             f"its input {channels}")

    def decide(v):                                            # the float model's own layers
        y = np.asarray(v, dtype).reshape(1, channels)         # (1, C)
        if bias is not None:
            y = y + bias.astype(dtype)
        for layer, p, s in chain:
            y = layer.forward(p, y, s, train=False)[0]
        return (y >= 0).reshape(-1)

    if integer_bound is not None:
        dirs, t = fit_threshold(decide, channels, integer_bound)
        arrays = {"dirs": dirs.astype(np.int32), "t": t.astype(np.int32)}
    else:
        bound = int(float_keys(np.float32(FLOAT_BOUND)))
        dirs, t = fit_threshold(decide, channels, bound, float_values)
        # constant channels: +-inf, so values past the bound decide as at the bound
        t = np.where(t > bound, np.inf, np.where(t <= -bound, -np.inf, float_values(t)))
        arrays = {"dirs": dirs.astype(np.float32), "t": t.astype(np.float32)}
    return {"op": "threshold", "name": name, "pack": False}, arrays


def bn_op(layer, p, s, exact):
    """BatchNorm in eval mode: the float model's order on exact inputs, else scale and shift.

    The op computes::

        exact:  y = ((x - mean) * inv_std) * gamma + beta,  inv_std = 1/sqrt(var + eps)
        else:   y = x * scale + shift,  scale = gamma/sqrt(var + eps),  shift = beta - mean*scale
                (computed in float64, stored as float32)

    Parameters
    ----------
    layer : BatchNorm
        The layer (its ``eps``, ``affine`` and ``name``).
    p : dict
        Its parameters ``weight`` (gamma) and ``bias`` (beta) when affine (keys without
        the layer prefix).
    s : dict
        Its running statistics ``running_mean`` and ``running_var``, shape (C,).
    exact : bool
        True when the input equals the float model's bit for bit (the network input, a
        sign value, or the integer output of a binary layer): then the float model's order
        of operations keeps the logits bit-identical.

    Returns
    -------
    spec : dict
        ``{"op": "batchnorm", ...}`` (exact) or ``{"op": "affine", ...}``.
    arrays : dict
        ``mean``, ``inv_std`` (and ``weight``, ``bias``), or float32 ``scale`` and ``shift``.
    """
    if exact:
        a = {"mean": s["running_mean"], "inv_std": 1.0 / np.sqrt(s["running_var"] + layer.eps)}
        if layer.affine:
            a.update(weight=p["weight"], bias=p["bias"])
        return {"op": "batchnorm", "name": layer.name}, a
    scale = 1.0 / np.sqrt(s["running_var"].astype(np.float64) + layer.eps)
    shift = -s["running_mean"] * scale
    if layer.affine:
        scale = scale * p["weight"]
        shift = p["bias"] + shift * p["weight"]
    return {"op": "affine", "name": layer.name}, {"scale": scale.astype(np.float32),
                                                  "shift": shift.astype(np.float32)}
