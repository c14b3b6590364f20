"""Losses with their gradients, minibatch-mean reduction, and stable softmax/sigmoid helpers.

Every loss is ``f(pred, target) -> (loss, dpred)``: ``loss`` is a Python float
(the minibatch MEAN, as torch's default ``reduction='mean'``; the per-example terms are
in pred's dtype, their sum is accumulated in float64, then divided by N) and ``dpred`` is
d loss / d pred with the shape and dtype of ``pred``. Because the reduction is
a mean, BayesBiNN multiplies the gradient by the training-set size N
(spec section 3).
"""
from __future__ import annotations

import math

import numpy as np

from ..checks import check_real


# -- stable helpers ---------------------------------------------------------------
def log_softmax(x, axis=-1):
    """log softmax(x) = x - max(x) - log(sum(exp(x - max(x)))); no overflow at large abs(x).

    Parameters
    ----------
    x : ndarray
        Any shape, real: a float dtype is kept, integers and bools become float64
        (complex, text or objects: ValueError).
    axis : int
        The class axis.

    Returns
    -------
    ndarray
        Same shape as ``x``; its dtype if a float one, else float64.
    """
    x = _real("x", x, "log_softmax")
    z = x - x.max(axis=axis, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=axis, keepdims=True))
    return z


def softmax(x, axis=-1):
    """softmax(x)_k = exp(x_k - max(x)) / sum_j exp(x_j - max(x)).

    Parameters
    ----------
    x : ndarray
        Any shape, real: a float dtype is kept, integers and bools become float64
        (complex, text or objects: ValueError).
    axis : int
        The class axis.

    Returns
    -------
    ndarray
        Same shape as ``x`` (its dtype if a float one, else float64); sums to 1 along ``axis``.
    """
    x = _real("x", x, "softmax")
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def sigmoid(x):
    """sigmoid(x) = 1 / (1 + exp(-x)), via exp(-abs(x)) so nothing overflows.

    Parameters
    ----------
    x : ndarray
        Any shape, real: a float dtype is kept, integers and bools become float64
        (complex, text or objects: ValueError).

    Returns
    -------
    ndarray
        Same shape as ``x`` (its dtype if a float one, else float64), values in [0, 1].
    """
    x = _real("x", x, "sigmoid")
    e = np.exp(-np.abs(x))                     # in (0, 1]
    return np.where(x >= 0, 1, e) / (1 + e)


# -- input checks -------------------------------------------------------------------
def _real(name, a, fn):
    """``a`` as an array of a float dtype (integers and bools become float64); ValueError naming
    ``fn`` and ``name`` for complex, text or objects (a cast would drop the imaginary part)."""
    a = np.asarray(a)
    if a.dtype.kind != "f":                      # the usual case skips the call
        a = check_real(f"{fn}: {name}", a).astype(np.float64)
    return a


def _as_float(name, a, fn):
    a = _real(name, a, fn)
    if a.size == 0:
        raise ValueError(f"{fn}: {name} is empty (shape {a.shape})")
    if not np.isfinite(a).all():
        bad = a[~np.isfinite(a)].flat[0]
        raise ValueError(f"{fn}: {name} contains non-finite values (e.g. {bad}); "
                         f"all entries must be finite")
    return a


def _binary_targets(targets, shape, fn):
    t = np.asarray(targets)
    if t.shape != shape and not (len(shape) == 2 and t.shape == shape[:1]):
        raise ValueError(f"{fn}: targets have shape {t.shape}, logits have shape {shape}")
    ok = (t == 0) | (t == 1)
    if not ok.all():
        raise ValueError(f"{fn}: targets must be 0 or 1, got {t[~ok].flat[0]!r}")
    return t.reshape(shape)


# -- losses -------------------------------------------------------------------------
def softmax_cross_entropy(logits, labels):
    """L = -(1/N) sum_n log softmax(z_n)[y_n];  dL/dz_n = (softmax(z_n) - onehot(y_n)) / N.

    Computed through log-sum-exp, so logits of +-1e4 give a finite loss and
    gradient. Matches ``torch.nn.functional.cross_entropy(z, y)``.

    Parameters
    ----------
    logits : ndarray, shape (N, K), float
    labels : ndarray, shape (N,), integer in [0, K)

    Returns
    -------
    loss : float
    dlogits : ndarray, shape (N, K), dtype of ``logits``
    """
    fn = "softmax_cross_entropy"
    z = _as_float("logits", logits, fn)
    y = np.asarray(labels)
    if z.ndim != 2 or y.shape != z.shape[:1]:
        raise ValueError(f"{fn}: logits have shape {z.shape} and labels {y.shape}; "
                         f"expected (N, K) and (N,)")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{fn}: labels must have an integer dtype, got {y.dtype}")
    k = z.shape[1]
    bad = (y < 0) | (y >= k)
    if bad.any():
        raise ValueError(f"{fn}: label {y[bad][0]} is outside [0, {k})")
    n = z.shape[0]
    rows = np.arange(n)
    logp = log_softmax(z, axis=1)                                # (N, K)
    loss = -float(logp[rows, y].sum(dtype=np.float64)) / n
    if loss == math.inf and z.dtype != np.float64:               # max(z) - z_y beyond float32 (logits 3e38
        loss = -float(log_softmax(z.astype(np.float64), axis=1)[rows, y].sum()) / n   # and -3e38): float64
    dz = np.exp(logp, out=logp)                                  # softmax, reusing the buffer
    dz[rows, y] -= 1
    dz *= 1.0 / n
    return loss, dz


def logistic_loss(logits, targets):
    """L = (1/N) sum_n [softplus(z_n) - t_n z_n];  dL/dz_n = (sigmoid(z_n) - t_n) / N.

    softplus(z) = max(z, 0) + log1p(exp(-abs(z))) never overflows. This is binary
    cross-entropy on logits, ``torch.nn.functional.binary_cross_entropy_with_logits``.

    Parameters
    ----------
    logits : ndarray, shape (N,) or (N, 1), float
    targets : ndarray, shape (N,) or the shape of ``logits``, values in {0, 1}

    Returns
    -------
    loss : float
    dlogits : ndarray, shape and dtype of ``logits``
    """
    fn = "logistic_loss"
    z = _as_float("logits", logits, fn)
    if not (z.ndim == 1 or (z.ndim == 2 and z.shape[1] == 1)):
        raise ValueError(f"{fn}: logits have shape {z.shape}, expected (N,) or (N, 1)")
    t = _binary_targets(targets, z.shape, fn).astype(z.dtype)
    n = z.shape[0]
    per = np.maximum(z, 0) - t * z + np.log1p(np.exp(-np.abs(z)))
    loss = float(per.sum(dtype=np.float64)) / n
    dz = sigmoid(z)
    dz -= t
    dz *= 1.0 / n
    return loss, dz


def mse(pred, target):
    """L = (1/M) sum_i (pred_i - target_i)**2 over all M elements;  dL/dpred = 2 (pred - target) / M.

    Same as ``torch.nn.MSELoss()`` (mean over every element, not per sample).

    Parameters
    ----------
    pred : ndarray, any shape, float
    target : ndarray, the shape of ``pred``

    Returns
    -------
    loss : float
    dpred : ndarray, shape and dtype of ``pred``
    """
    fn = "mse"
    p = _as_float("pred", pred, fn)
    t = _as_float("target", target, fn)
    if p.shape != t.shape:
        raise ValueError(f"{fn}: pred has shape {p.shape}, target has shape {t.shape}")
    diff = p - t.astype(p.dtype, copy=False)
    m = diff.size
    d64 = diff.astype(np.float64, copy=False)                    # accumulate the loss in float64
    loss = float(np.vdot(d64, d64)) / m
    if not math.isfinite(loss) and p.dtype != np.float64:        # pred - target beyond float32 (3e38 - -3e38)
        d64 = p.astype(np.float64) - t.astype(np.float64)
        loss = float(np.vdot(d64, d64)) / m
        with np.errstate(over="ignore"):
            diff = (d64 * (2.0 / m)).astype(p.dtype)
        if not np.isfinite(diff).all():
            raise FloatingPointError(f"{fn}: the gradient 2 (pred - target) / {m} exceeds the range of "
                                     f"{p.dtype}; compute in float64")
        return loss, diff
    diff *= 2.0 / m
    return loss, diff
