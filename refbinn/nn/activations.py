"""Parameter-free layers: ReLU, Tanh, Flatten, Dropout."""
from __future__ import annotations

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
        return dy * (y > 0), {}          # 10x faster than np.where(y > 0, dy, 0) on (100, 2048)


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
        return x.reshape(x.shape[0], -1), x.shape, state            # (N, C*H*W)

    def backward(self, params, cache, dy):
        return dy.reshape(cache), {}                                # (N, C, H, W)


class Dropout(Layer):
    """Inverted dropout: y = x * mask, mask = (u >= p) / (1 - p), u ~ U(0, 1) per element.

    Identity in evaluation mode or when p = 0. The uniforms are drawn as
    ``rng.random(x.shape, dtype=np.float32)`` from the Generator passed to
    ``forward`` (whatever the input dtype), so float32 and float64 runs with
    the same seed drop the same units. E[y] = x, as in ``torch.nn.Dropout``.

    Parameters
    ----------
    p : float in [0, 1)
        Probability of zeroing an element.
    name : str, optional

    References
    ----------
    Srivastava et al. (2014), JMLR 15, section 10 (scaling at training time).
    """

    def __init__(self, p, name=None):
        super().__init__(name or "dropout")
        try:
            p = float(p)
        except (TypeError, ValueError):
            raise ValueError(f"Dropout: p must be a real number in [0, 1), got {p!r}") from None
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
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
        if rng is None:
            raise ValueError(f"layer '{self.name}': training with p={self.p} needs rng "
                             f"(a numpy.random.Generator), got None")
        return rng.random(shape, dtype=np.float32)

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
            return dy, {}
        dx = dy * keep
        dx *= 1.0 / (1.0 - self.p)
        return dx, {}

    def __repr__(self):
        return f"Dropout(p={self.p:g}, name={self.name!r})"
