"""2-D convolution (NCHW input, OIHW weight, as in torch) by im2col and BLAS.

    y[n, o, p, q] = b[o] + sum_{c, i, j} W[o, c, i, j] * xpad[n, c, p*sh + i, q*sw + j]

The input patches are copied once into a column matrix ``cols`` of shape
(C*kh*kw, N*Ho*Wo), so the convolution is the matrix product
``W.reshape(O, C*kh*kw) @ cols``. The column order (C, kh, kw) matches the
flattening of an OIHW weight; the row order (N, Ho, Wo) with N outermost is
chosen so that every sample's block ``cols[:, n]`` is an ordinary BLAS operand
(leading dimension N*Ho*Wo). One ``np.matmul`` over those blocks writes y
directly in NCHW, with no transposing copy of the output.

The helpers ``pair``, ``conv_padding``, ``conv_output_size``, ``im2col`` and
``col2im`` are module-level so other convolution kernels can share the
size formula and the patch layout.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .base import BINARY, REAL, Layer


def pair(value, name, minimum=1):
    """Return ``(a, b)`` from an int or a pair of ints, each ``>= minimum``.

    Parameters
    ----------
    value : int or (int, int)
    name : str
        The argument's name, for the error message.
    minimum : int

    Returns
    -------
    (int, int)

    Raises
    ------
    ValueError
        Naming ``name`` and the allowed range.
    """
    vals = (value, value) if np.ndim(value) == 0 else tuple(value)
    if (len(vals) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                  for v in vals) or min(vals) < minimum):
        raise ValueError(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return int(vals[0]), int(vals[1])


def conv_padding(padding, kernel, stride):
    """Padding ``((top, bottom), (left, right))`` from an int, a pair, 'valid' or 'same'.

    'same' follows torch: it needs stride 1, the total padding per axis is
    ``k - 1``, and for an even kernel the extra row/column goes at the
    bottom/right (``before = (k - 1) // 2``).

    Parameters
    ----------
    padding : int, (int, int), 'valid' or 'same'
    kernel : (int, int)
        (kh, kw).
    stride : (int, int)
        (sh, sw).

    Returns
    -------
    ((int, int), (int, int))
        ((top, bottom), (left, right)).
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding != "same":
            raise ValueError(f"padding must be an int >= 0, a pair, 'valid' or 'same', got {padding!r}")
        if stride != (1, 1):
            raise ValueError(f"padding='same' needs stride 1 (as in torch), got stride {stride}")
        return tuple(((k - 1) // 2, (k - 1) - (k - 1) // 2) for k in kernel)
    ph, pw = pair(padding, "padding", minimum=0)
    return (ph, ph), (pw, pw)


def conv_output_size(size, kernel, stride, pad_before=0, pad_after=0):
    """Output length along one axis: floor((size + pads - kernel) / stride) + 1.

    Rows left over at the end when the stride does not divide evenly are
    dropped, as in torch.

    Parameters
    ----------
    size, kernel, stride : int
        Input length, kernel length and stride along the axis.
    pad_before, pad_after : int
        Zero padding at each end.

    Returns
    -------
    int
        The output length; < 1 when the padded input is shorter than the kernel.
    """
    return (size + pad_before + pad_after - kernel) // stride + 1


def im2col(xp, kernel, stride):
    """Copy the patches of a padded input into a column matrix.

        cols[(c, i, j), (n, p, q)] = xp[n, c, p*sh + i, q*sw + j]

    Parameters
    ----------
    xp : ndarray, shape (N, C, Hp, Wp)
        Input, already padded.
    kernel, stride : (int, int)

    Returns
    -------
    cols : ndarray, shape (C*kh*kw, N*Ho*Wo), C-contiguous, dtype of ``xp``
    """
    (kh, kw), (sh, sw) = kernel, stride
    n, c = xp.shape[:2]
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]  # (N, C, Ho, Wo, kh, kw), a view
    ho, wo = win.shape[2:4]
    cols = np.ascontiguousarray(win.transpose(1, 4, 5, 0, 2, 3))     # (C, kh, kw, N, Ho, Wo), the one copy
    return cols.reshape(c * kh * kw, n * ho * wo)                      # (C*kh*kw, N*Ho*Wo)


def col2im(cols, padded_shape, kernel, stride):
    """Adjoint of ``im2col``: add every column entry back to the pixel it came from.

        dxp[n, c, p*sh + i, q*sw + j] += cols[(c, i, j), (n, p, q)]

    One vectorised strided add per kernel offset (i, j); overlapping patches
    accumulate.

    Parameters
    ----------
    cols : ndarray, shape (C*kh*kw, N*Ho*Wo)
    padded_shape : tuple (N, C, Hp, Wp)
    kernel, stride : (int, int)

    Returns
    -------
    dxp : ndarray, shape (N, C, Hp, Wp), dtype of ``cols``
    """
    (kh, kw), (sh, sw) = kernel, stride
    n, c, hp, wp = padded_shape
    ho, wo = conv_output_size(hp, kh, sh), conv_output_size(wp, kw, sw)
    blocks = cols.reshape(c, kh, kw, n, ho, wo)                        # (C, kh, kw, N, Ho, Wo)
    dxp = np.zeros(padded_shape, dtype=cols.dtype)
    dxp_cn = dxp.transpose(1, 0, 2, 3)                                 # (C, N, Hp, Wp), a view
    for i in range(kh):
        for j in range(kw):
            dxp_cn[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw] += blocks[:, i, j]
    return dxp


class Conv2d(Layer):
    """y = conv2d(x, W) + b, cross-correlation as in torch, by im2col and one matmul.

        y[n, o, p, q] = b[o] + sum_{c, i, j} W[o, c, i, j] * xpad[n, c, p*sh + i, q*sw + j]

    Backward (the VJP for dy of shape (N, O, Ho, Wo)), with dy2 = dy as (O, N*Ho*Wo):

        dW = dy2 @ cols.T            (one matmul)
        db = sum_{n, p, q} dy
        dx = col2im(W.T @ dy2)       (one matmul, then kh*kw strided adds)

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride : int or (int, int)
    padding : int, (int, int), 'valid' or 'same'
        Zero padding on each side. 'same' (stride 1 only, as in torch) keeps
        H and W; for even kernels the extra row/column is at the bottom/right.
    bias : bool
        Add a bias per output channel (tagged ``"real"``). The weight, of shape
        (out_channels, in_channels, kh, kw), is tagged ``"binary"``.
    name : str, optional

    Notes
    -----
    ``init`` draws torch's default: weight, then bias, each ~ U(-1/sqrt(fan_in),
    1/sqrt(fan_in)), fan_in = in_channels * kh * kw, by ``rng.uniform`` in float64, then
    cast to the dtype.

    The forward cache holds ``cols`` (C*kh*kw x N*Ho*Wo values): for the
    second VGG layer at batch 50 that is 59M floats. Keeping it makes the
    backward pass two matmuls and a col2im, with no second im2col.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=0,
                 bias=False, name=None):
        super().__init__(name or "conv")
        for arg, val in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < 1:
                raise ValueError(f"Conv2d: {arg} must be an int >= 1, got {val!r}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = padding
        self.pads = conv_padding(padding, self.kernel_size, self.stride)   # ((top, bottom), (left, right))
        self.bias = bool(bias)
        self.kinds = {"weight": BINARY, **({"bias": REAL} if self.bias else {})}

    def init(self, rng, dtype=np.float32):
        dtype = self._init_args(rng, dtype)
        # torch's default (Kaiming-uniform with a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        kh, kw = self.kernel_size
        bound = 1.0 / np.sqrt(self.in_channels * kh * kw)
        shape = (self.out_channels, self.in_channels, kh, kw)
        params = {"weight": rng.uniform(-bound, bound, shape).astype(dtype)}
        if self.bias:
            params["bias"] = rng.uniform(-bound, bound, self.out_channels).astype(dtype)
        return params, {}

    def output_shape(self, input_shape):
        """(N, O, Ho, Wo) for an input of shape (N, C, H, W).

        Parameters
        ----------
        input_shape : tuple of 4 ints
            (N, C, H, W).

        Returns
        -------
        tuple of 4 ints
        """
        n, _, h, w = input_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.pads
        return (n, self.out_channels, conv_output_size(h, kh, sh, *ph), conv_output_size(w, kw, sw, *pw))

    def _pad(self, x):
        (top, bottom), (left, right) = self.pads
        if top == bottom == left == right == 0:
            return x
        n, c, h, w = x.shape
        xp = np.zeros((n, c, h + top + bottom, w + left + right), dtype=x.dtype)  # (N, C, Hp, Wp)
        xp[:, :, top:top + h, left:left + w] = x
        return xp

    def forward(self, params, x, state, *, train=False, rng=None):
        x = self._check_input(x, (None, self.in_channels, None, None))
        n, o, ho, wo = self.output_shape(x.shape)
        if ho < 1 or wo < 1:
            (kh, kw), (ph, pw) = self.kernel_size, self.pads
            raise ValueError(
                f"layer '{self.name}': input has shape {x.shape}, expected "
                f"(N, {self.in_channels}, H >= {kh - sum(ph)}, W >= {kw - sum(pw)}) "
                f"for kernel {self.kernel_size} and padding {self.padding!r}")
        w = self._param(params, "weight", (o, self.in_channels, *self.kernel_size))   # OIHW
        xp = self._pad(x)                                                    # (N, C, Hp, Wp)
        cols = im2col(xp, self.kernel_size, self.stride)                     # (C*kh*kw, N*Ho*Wo)
        w2 = w.reshape(o, -1)                                                # (O, C*kh*kw)
        # Per-sample blocks of cols, a view: BLAS reads them with leading dim N*Ho*Wo,
        # so the product lands in (N, O, Ho*Wo) = NCHW order without a transpose.
        blocks = cols.reshape(cols.shape[0], n, ho * wo).transpose(1, 0, 2)  # (N, C*kh*kw, Ho*Wo)
        y = np.matmul(w2, blocks).reshape(n, o, ho, wo)                      # (N, O, Ho, Wo)
        if self.bias:
            y += self._param(params, "bias", (o,))[:, None, None]
        return y, (cols, x.shape, xp.shape), state

    def backward(self, params, cache, dy):
        cols, x_shape, xp_shape = cache
        (kh, kw), (sh, sw), (hp, wp) = self.kernel_size, self.stride, xp_shape[2:]
        # output_shape(x_shape) from the padded shape: half the cost of the per-step check
        dy = self._check_dy(dy, (x_shape[0], self.out_channels, (hp - kh) // sh + 1, (wp - kw) // sw + 1))
        n, o, ho, wo = dy.shape
        w = self._param(params, "weight", (o, self.in_channels, *self.kernel_size))    # OIHW
        # One transposing copy of dy (output-sized, small next to cols) makes both
        # products plain 2-D matmuls.
        dy2 = np.ascontiguousarray(dy.reshape(n, o, ho * wo).transpose(1, 0, 2))  # (O, N, Ho*Wo)
        dy2 = dy2.reshape(o, n * ho * wo)                                         # (O, N*Ho*Wo)
        grads = {"weight": (dy2 @ cols.T).reshape(w.shape)}                       # (O, C*kh*kw) -> OIHW
        if self.bias:
            grads["bias"] = dy2.sum(axis=1)                                       # (O,)
        dcols = w.reshape(o, -1).T @ dy2                                          # (C*kh*kw, N*Ho*Wo)
        dxp = col2im(dcols, xp_shape, self.kernel_size, self.stride)              # (N, C, Hp, Wp)
        (top, _), (left, _) = self.pads
        dx = dxp[:, :, top:top + x_shape[2], left:left + x_shape[3]]              # (N, C, H, W), drop the padding
        return dx, grads

    def __repr__(self):
        return (f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding!r}, bias={self.bias}, name={self.name!r})")
