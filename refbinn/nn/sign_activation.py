"""Sign activation with the straight-through estimator: y = sign(x), dx = dy * 1[abs(x) <= 1]."""
from __future__ import annotations

import numpy as np

from .base import Layer, sign


class SignActivation(Layer):
    """y = sign(x) (exact zeros -> +1); backward dx = dy * 1[abs(x) <= 1] (larq's ``ste_sign``).

    The true derivative of sign is zero almost everywhere; the straight-through
    estimator of BinaryNet (Courbariaux et al., 2016, Eq. 4) passes the
    gradient of the hard tanh ``clip(x, -1, 1)`` instead, so the gradient flows
    where ``|x| <= 1``, the bound included, and is exactly 0 outside.

    Parameters
    ----------
    name : str, optional

    Notes
    -----
    Input: any shape ``(N, ...)``, float dtype; output: same shape and dtype,
    values in {-1, +1}. NaN inputs give -1 and a zero gradient.
    """

    def __init__(self, name=None):
        super().__init__(name or "sign")

    def forward(self, params, x, state, *, train=False, rng=None):
        x = np.asarray(x)
        if x.ndim < 1:
            raise ValueError(f"layer '{self.name}': input has shape {tuple(x.shape)}, expected (N, ...)")
        if x.dtype.kind != "f":
            raise ValueError(f"layer '{self.name}': input has dtype {x.dtype}, expected a float dtype")
        pass_through = np.abs(x) <= 1                # cached as bool: 1 byte per element
        return sign(x), pass_through, state

    def backward(self, params, cache, dy):
        pass_through = cache
        return self._check_dy(dy, pass_through.shape) * pass_through, {}                 # bool factor keeps dy's dtype
