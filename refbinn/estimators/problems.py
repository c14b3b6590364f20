"""A tiny vectorised binary network for checking gradient estimators.

``tanh_mlp`` evaluates a 2-layer tanh network for a BATCH of weight vectors at once
(losses and analytic gradients), and ``teacher_problem`` builds one with a fixed
minibatch labelled by a random teacher. The Lemma 1 tests and
``scripts/lemma1_table.py`` share it.
"""
from __future__ import annotations

import numpy as np

from ..checks import check_int


def tanh_mlp(x, y):
    r"""A 2-layer tanh network with binary-able weights, as a vectorized loss over weights.

        f(x) = v . tanh(W1 x / sqrt(n_in)) / sqrt(h),    loss = mean_n log(1 + exp(-y_n f(x_n)))

    The weight vector is [W1 (h, n_in) row-major, v (h,)], so d = h * (n_in + 1).
    No biases, one output, logistic loss on labels y in {-1, +1}. The 1/sqrt fan-in
    factors keep the loss O(1) with +-1 weights.

    Parameters
    ----------
    x : ndarray (n, n_in), the fixed minibatch.
    y : ndarray (n,), labels in {-1, +1}.

    Returns
    -------
    loss_fn : W (B, d) -> losses (B,)
    loss_grad : W (B, d) -> (losses (B,), grads (B, d)), analytic backward pass; grads in W's dtype.
        The hidden width h is read from W: d = h * (n_in + 1).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.shape != (len(x),):
        raise ValueError(f"tanh_mlp: x must have shape (n, n_in) and y shape (n,), got {x.shape} and {y.shape}")
    if 0 in x.shape:                                        # an empty mean or 1/sqrt(0): a NaN loss
        raise ValueError(f"tanh_mlp: x must have n >= 1 rows and n_in >= 1 columns, got shape {x.shape}")
    if not np.all(np.abs(y) == 1):                          # 0/1 labels would make the loss constant
        raise ValueError(f"tanh_mlp: labels y must be -1 or +1, got values {np.unique(y)[:5].tolist()}")
    n, n_in = x.shape

    def _forward(W):
        B, d = W.shape
        if d == 0 or d % (n_in + 1):                          # h = 0 hidden units: 1/sqrt(0), a NaN loss
            raise ValueError(f"tanh_mlp: weight width {d} is not a positive multiple of n_in + 1 = {n_in + 1}")
        h = d // (n_in + 1)
        W1 = W[:, :h * n_in].reshape(B * h, n_in)                         # (B*h, n_in)
        v = W[:, h * n_in:]                                               # (B, h)
        # one matrix product for all B networks: rows of W1 are hidden units
        z = np.tanh((W1 @ x.T) / np.sqrt(n_in)).reshape(B, h, n)          # (B, h, n)
        f = np.matmul(v[:, None, :], z)[:, 0] / np.sqrt(h)                # (B, n)
        m = -y * f
        losses = np.logaddexp(0.0, m).mean(axis=1)
        return losses, (h, v, z, m)

    def loss_fn(W):
        return _forward(np.asarray(W))[0]

    def loss_grad(W):
        W = np.asarray(W)
        B = W.shape[0]
        losses, (h, v, z, m) = _forward(W)
        df = -y * (0.5 * (1 + np.tanh(0.5 * m))) / n                      # (B, n): dloss/df = -y sigmoid(m)/n
        dv = np.matmul(z, df[:, :, None])[:, :, 0] / np.sqrt(h)           # (B, h)
        da = (v / np.sqrt(h))[:, :, None] * df[:, None, :] * (1 - z ** 2)  # (B, h, n)
        dW1 = da.reshape(B * h, n) @ x / np.sqrt(n_in)                     # (B*h, n_in)
        return losses, np.concatenate([dW1.reshape(B, -1), dv], axis=1).astype(W.dtype, copy=False)

    return loss_fn, loss_grad


def teacher_problem(n_in, hidden, n=16, seed=0):
    """A fixed minibatch for ``tanh_mlp``: x ~ N(0, I), y = sign(teacher f(x) + 0.5 noise).

    The teacher is a random +-1 network of the same shape, so the loss surface over
    binary weights is informative; the label noise leaves no weight vector at zero loss.

    Parameters
    ----------
    n_in, hidden : int >= 1, network shape; d = hidden * (n_in + 1).
    n : int >= 1, minibatch size.
    seed : int, seeds ``r = default_rng(seed)``, which draws in this order
        x = r.normal(size=(n, n_in)), the teacher sign(r.normal(size=d)) (its first
        hidden * n_in entries W1 row by row, then v) and the label noise r.normal(size=n);
        f = tanh(x @ W1.T / sqrt(n_in)) @ v / sqrt(hidden), y = +1 where f + 0.5 noise >= 0, else -1.

    Returns
    -------
    loss_fn, loss_grad : as returned by ``tanh_mlp``.
    """
    n_in, hidden, n = check_int("n_in", n_in, 1), check_int("hidden", hidden, 1), check_int("n", n, 1)
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, n_in))                                          # (n, n_in)
    teacher = np.sign(r.normal(size=(1, hidden * (n_in + 1))))           # (1, d)
    W1, v = teacher[0, :hidden * n_in].reshape(hidden, n_in), teacher[0, hidden * n_in:]
    f = np.tanh(x @ W1.T / np.sqrt(n_in)) @ v / np.sqrt(hidden)          # (n,)
    y = np.where(f + 0.5 * r.normal(size=n) >= 0, 1.0, -1.0)
    return tanh_mlp(x, y)
