"""Parameter-free layers: ReLU, Tanh, Flatten, Dropout."""
from __future__ import annotations

import math

import numpy as np

from ..checks import check_float_input
from . import _fused
from .base import Layer


class ReLU(Layer):
    """y = max(x, 0); dy/dx = 1 where x > 0, else 0 (torch's choice at x = 0).

    Parameters
    ----------
    name : str, optional
    """

    def __init__(self, name=None):
        super().__init__(name or "relu")

    def forward(self, params, x, state, *, train=False, rng=None):
        y = np.maximum(check_float_input(f"layer '{self.name}'", x), 0)
        return y, y, state

    def backward(self, params, cache, dy):
        y = cache
        return self._check_dy(dy, y.shape) * (y > 0), {}          # 10x faster than np.where(y > 0, dy, 0) on (100, 2048)


class Tanh(Layer):
    """y = tanh(x); dy/dx = 1 - y**2.

    Parameters
    ----------
    name : str, optional
    """

    def __init__(self, name=None):
        super().__init__(name or "tanh")

    def forward(self, params, x, state, *, train=False, rng=None):
        y = np.tanh(check_float_input(f"layer '{self.name}'", x))
        return y, y, state

    def backward(self, params, cache, dy):
        y = cache
        dy = self._check_dy(dy, y.shape)
        dx = y * y
        np.subtract(1, dx, out=dx)
        dx *= dy
        return dx, {}


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...), C-order like ``torch.nn.Flatten``.

    Parameters
    ----------
    name : str, optional
    """

    def __init__(self, name=None):
        super().__init__(name or "flatten")

    def forward(self, params, x, state, *, train=False, rng=None):
        x = check_float_input(f"layer '{self.name}'", x, 2)
        return x.reshape(x.shape[0], math.prod(x.shape[1:])), x.shape, state   # (N, C*H*W); N = 0 too

    def backward(self, params, cache, dy):
        return self._check_dy(dy, (cache[0], math.prod(cache[1:]))).reshape(cache), {}                                # (N, C, H, W)


_P_MAX = 1.0 - 2.0 ** -12          # Dropout's largest p: see its docstring


class Dropout(Layer):
    """Inverted dropout: y = (x * keep) * c, keep = (u >= p), c = 1/(1 - p), u ~ U(0, 1) per element.

    c is computed in float64 and rounded to x's dtype (x / (1 - p) would round differently,
    e.g. for p = 0.1); the backward pass is dx = (dy * keep) * c.

    Identity in evaluation mode or when p = 0. The uniforms are drawn as
    ``rng.random(x.shape, dtype=np.float32)`` from the Generator passed to
    ``forward`` (whatever the input dtype), so float32 and float64 runs with
    the same seed drop the same units. E[y] = x, as in ``torch.nn.Dropout``, up to the
    float32 grid of u: the kept fraction is within 2**-23 of 1 - p, a relative error of at
    most 2**-11 for the allowed p.

    Parameters
    ----------
    p : float in [0, 1 - 2**-12]
        Probability of zeroing an element (above 1 - 2**-12 = 0.99976 the float32 u could not
        keep 1 - p of the elements to 2**-11, and from 1 - 2**-25 on would keep none).
    name : str, optional

    References
    ----------
    Srivastava et al. (2014), JMLR 15, section 10 (scaling at training time).
    """

    def __init__(self, p, name=None):
        super().__init__(name or "dropout")
        try:
            if isinstance(p, (str, bytes, bool, np.bool_)):      # float('0.5') would take text, True be 1
                raise TypeError
            p = float(p)
        except (TypeError, ValueError):
            raise ValueError(f"Dropout: p must be a real number in [0, 1), got {p!r}") from None
        if not 0.0 <= p <= _P_MAX:
            raise ValueError(f"Dropout: p must be in [0, 1) and at most 1 - 2**-12 = {_P_MAX}, got {p}")
        self.p = p

    def uniforms(self, shape, train, rng):
        """The u ~ U(0, 1) that ``forward`` draws, float32 of ``shape``; None when it draws none.

        Parameters
        ----------
        shape : tuple of int
            The input's shape.
        train : bool
            Training mode (no draw otherwise).
        rng : numpy.random.Generator or None
            The stream; needed when training with p > 0.

        Returns
        -------
        ndarray of ``shape``, float32, or None
        """
        if not train or self.p == 0.0:
            return None
        if not hasattr(rng, "random"):                # None, a seed: not a Generator
            raise ValueError(f"layer '{self.name}': training with p={self.p} needs rng "
                             f"(a numpy.random.Generator), got {rng!r}")
        try:
            return rng.random(shape, dtype=np.float32)
        except TypeError:                             # a legacy RandomState: random() takes no dtype
            raise ValueError(f"layer '{self.name}': training with p={self.p} needs rng "
                             f"(a numpy.random.Generator), got {type(rng).__name__}") from None

    def forward(self, params, x, state, *, train=False, rng=None):
        x = check_float_input(f"layer '{self.name}'", x)
        u = self.uniforms(x.shape, train, rng)
        if u is None:
            return x, None, state
        if _fused.fusable(x):
            y, keep = _fused.dropout(x, u, self.p, 1.0 / (1.0 - self.p))   # one pass, same bits
            return y, keep, state
        keep = u >= self.p                                            # bool, u compared in float32
        y = x * keep
        y *= 1.0 / (1.0 - self.p)
        return y, keep, state

    def backward(self, params, cache, dy):
        keep = cache
        if keep is None:
            return dy, {}                # identity: any shape passes through, as in forward
        dx = self._check_dy(dy, keep.shape) * keep
        dx *= 1.0 / (1.0 - self.p)
        return dx, {}

    def __repr__(self):
        return f"Dropout(p={self.p:g}, name={self.name!r})"
