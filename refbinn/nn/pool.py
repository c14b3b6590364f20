"""2-D max pooling (NCHW), with the gradient routed to the first maximum as in torch."""
from __future__ import annotations

import numpy as np

from .base import Layer
from .conv import conv_output_size, pair


class MaxPool2d(Layer):
    """y[n, c, p, q] = max_{i < kh, j < kw} x[n, c, p*sh + i, q*sw + j]

    Windows are scanned in row-major order (i, then j) and the first maximum
    wins ties, as in torch; a window containing NaN gives NaN and its last NaN
    takes the gradient (torch's ``val > max or isnan(val)`` scan). Rows and
    columns left over when the stride does not divide the size are dropped
    (floor, torch's default ``ceil_mode=False``, no padding).

    Backward: dx[n, c, p*sh + i*, q*sw + j*] += dy[n, c, p, q] at the argmax
    (i*, j*) of each window; overlapping windows (stride < kernel) accumulate.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    name : str, optional
    """

    def __init__(self, kernel_size=2, stride=None, name=None):
        super().__init__(name or "pool")
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        if self.kernel_size[0] * self.kernel_size[1] > 255:
            raise ValueError(f"MaxPool2d: kernel_size must have at most 255 elements, got {kernel_size}")

    def output_shape(self, input_shape):
        """(N, C, Ho, Wo) for an input of shape (N, C, H, W).

        Parameters
        ----------
        input_shape : tuple of 4 ints
            (N, C, H, W).

        Returns
        -------
        tuple of 4 ints
        """
        n, c, h, w = input_shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        return n, c, conv_output_size(h, kh, sh), conv_output_size(w, kw, sw)

    def _offsets(self):
        kh, kw = self.kernel_size
        return [(i, j) for i in range(kh) for j in range(kw)]          # torch's scan order

    def _window(self, a, i, j, ho, wo):
        """The (N, C, Ho, Wo) view of ``a`` holding element (i, j) of every window."""
        sh, sw = self.stride
        return a[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]

    def forward(self, params, x, state, *, train=False, rng=None):
        x = self._check_input(x, (None, None, None, None))
        n, c, ho, wo = self.output_shape(x.shape)
        if ho < 1 or wo < 1:
            kh, kw = self.kernel_size
            raise ValueError(f"layer '{self.name}': input has shape {x.shape}, "
                             f"expected (N, C, H >= {kh}, W >= {kw})")
        views = [self._window(x, i, j, ho, wo) for i, j in self._offsets()]  # each (N, C, Ho, Wo)
        y = views[0].copy()
        for v in views[1:]:
            np.maximum(y, v, out=y)                                   # propagates NaN
        # argmax as an offset index; scanning backwards lets the first equal element win
        last = len(views) - 1
        idx = np.full(y.shape, last, dtype=np.uint8)                   # (N, C, Ho, Wo)
        for k in range(last - 1, -1, -1):
            idx = np.where(views[k] == y, np.uint8(k), idx)
        nan = np.isnan(y)
        if nan.any():                                                  # torch: the last NaN wins
            for k, v in enumerate(views):
                idx = np.where(nan & np.isnan(v), np.uint8(k), idx)
        return y, (idx, x.shape), state

    def backward(self, params, cache, dy):
        idx, x_shape = cache
        dy = self._check_dy(dy, idx.shape)
        n, c, h, w = x_shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        ho, wo = dy.shape[2:]
        if (sh, sw) == (kh, kw) and (h, w) == (ho * kh, wo * kw):
            # Windows tile the input exactly (e.g. 2x2 stride 2 on even sizes):
            # every input element is written once, so no zero fill is needed.
            dx6 = np.empty((n, c, ho, kh, wo, kw), dtype=dy.dtype)     # (N, C, Ho, kh, Wo, kw)
            for k, (i, j) in enumerate(self._offsets()):
                np.multiply(dy, idx == k, out=dx6[:, :, :, i, :, j])
            return dx6.reshape(x_shape), {}                            # (N, C, H, W)
        dx = np.zeros(x_shape, dtype=dy.dtype)                         # (N, C, H, W)
        for k, (i, j) in enumerate(self._offsets()):
            view = self._window(dx, i, j, ho, wo)
            if sh >= kh and sw >= kw:                                  # windows do not overlap
                np.multiply(dy, idx == k, out=view)
            else:
                view += dy * (idx == k)
        return dx, {}

    def __repr__(self):
        return f"MaxPool2d(kernel_size={self.kernel_size}, stride={self.stride}, name={self.name!r})"
