"""Fully connected layer."""
from __future__ import annotations

import numpy as np

from ..checks import check_int
from .base import BINARY, REAL, Layer


class Dense(Layer):
    """y = x @ W.T + b, W of shape (out_features, in_features) as in torch.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
        Add a bias vector (tagged ``"real"``). The weight is tagged ``"binary"``.
    name : str, optional

    Notes
    -----
    ``init`` draws torch's default: weight, then bias, each ~ U(-1/sqrt(in_features),
    1/sqrt(in_features)) by ``rng.uniform`` in float64, then cast to the dtype.
    """

    def __init__(self, in_features, out_features, bias=False, name=None):
        super().__init__(name or "dense")
        self.in_features = check_int("Dense: in_features", in_features, 1)
        self.out_features = check_int("Dense: out_features", out_features, 1)
        self.bias = bool(bias)
        self.kinds = {"weight": BINARY, **({"bias": REAL} if self.bias else {})}

    def init(self, rng, dtype=np.float32):
        dtype = self._init_args(rng, dtype)
        # torch's default (Kaiming-uniform with a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        bound = 1.0 / np.sqrt(self.in_features)
        params = {"weight": rng.uniform(-bound, bound, (self.out_features, self.in_features)).astype(dtype)}
        if self.bias:
            params["bias"] = rng.uniform(-bound, bound, self.out_features).astype(dtype)
        return params, {}

    def forward(self, params, x, state, *, train=False, rng=None):
        x = self._check_input(x, (None, self.in_features))
        w = self._param(params, "weight", (self.out_features, self.in_features))
        y = x @ w.T                                              # (N, out)
        if self.bias:
            y += self._param(params, "bias", (self.out_features,))
        return y, x, state

    def backward(self, params, cache, dy, *, input_grad=True):
        """dx = dy @ W, grads: weight = dy.T @ x, bias = sum_n dy; dx is None if not ``input_grad``.

        Parameters
        ----------
        params : dict of str -> ndarray
        cache : ndarray
            From ``forward`` (the input x).
        dy : ndarray, (N, out)
        input_grad : bool
            False: skip dx (a training step discards it below the first layer).

        Returns
        -------
        dx : ndarray (N, in) or None
        grads : dict of str -> ndarray
        """
        x = cache
        dy = self._check_dy(dy, (x.shape[0], self.out_features))
        grads = {"weight": dy.T @ x}                              # (out, in)
        if self.bias:
            grads["bias"] = dy.sum(axis=0)
        if not input_grad:
            return None, grads
        dx = dy @ self._param(params, "weight", (self.out_features, self.in_features))   # (N, in)
        return dx, grads

    def __repr__(self):
        return f"Dense({self.in_features}, {self.out_features}, bias={self.bias}, name={self.name!r})"
