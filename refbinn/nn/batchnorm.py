"""Batch normalisation over (N, C) and (N, C, H, W) inputs, torch's running-stat convention."""
from __future__ import annotations

import math

import numpy as np

from ..checks import check_int, check_range
from ..noise import check_dtype
from . import _fused
from .base import REAL, Layer

# per-channel sum of a product without the product's temporary: sum over N (and H, W)
_SUM = {2: "nc,nc->c", 4: "nchw,nchw->c"}


class BatchNorm(Layer):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, per channel.

    Training: ``mean`` and ``var`` are the batch statistics over N (2-D input)
    or N, H, W (4-D input), with the BIASED variance (divide by m, the number
    of values per channel). The running statistics are returned updated in
    ``new_state`` with the torch convention::

        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var  = (1 - momentum) * running_var  + momentum * var * m / (m - 1)

    i.e. the running variance tracks the UNBIASED batch variance. The input
    state is never modified. Evaluation: ``mean``, ``var`` are the running
    statistics. This is ``torch.nn.BatchNorm1d`` / ``BatchNorm2d`` with
    ``track_running_stats=True``.

    Parameters
    ----------
    num_features : int
        C, the channel count (features of a 2-D input).
    eps : float >= 0
        Added to the variance (torch default 1e-5).
    momentum : float in [0, 1]
        Weight of the new batch in the running statistics (torch default 0.1).
    affine : bool
        Learn ``weight`` (init 1) and ``bias`` (init 0), both shape (C,) and
        tagged ``"real"``. BayesBiNN's networks use ``affine=False``.
    name : str, optional

    State keys ``running_mean`` (init 0) and ``running_var`` (init 1), shape (C,).

    References
    ----------
    Ioffe & Szegedy (2015), Algorithm 1; running statistics as in PyTorch.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, name=None):
        super().__init__(name or "batchnorm")
        self.num_features = check_int("BatchNorm: num_features", num_features, 1)
        self.eps = float(check_range("BatchNorm: eps", eps, 0.0))
        self.momentum = float(check_range("BatchNorm: momentum", momentum, 0.0, 1.0))
        self.affine = bool(affine)
        self.kinds = {"weight": REAL, "bias": REAL} if self.affine else {}

    def init(self, rng, dtype=np.float32):
        dtype = check_dtype(f"layer '{self.name}': init", dtype)   # rng unused: None is fine
        c = self.num_features
        params = {"weight": np.ones(c, dtype), "bias": np.zeros(c, dtype)} if self.affine else {}
        state = {"running_mean": np.zeros(c, dtype), "running_var": np.ones(c, dtype)}
        return params, state

    def _check(self, x):
        x = np.asarray(x)
        if x.ndim not in (2, 4):
            raise ValueError(f"layer '{self.name}': input has shape {tuple(x.shape)}, "
                             f"expected (N, {self.num_features}) or (N, {self.num_features}, H, W)")
        return self._check_input(x, (None, self.num_features) + (None,) * (x.ndim - 2))

    def _normalise(self, x, state, train):
        """(x - mean, inv_std, new_state): the centred input (a fresh array) and 1 / sqrt(var + eps)."""
        missing = [k for k in ("running_mean", "running_var") if k not in state]
        if missing:
            raise ValueError(f"layer '{self.name}': state lacks {missing}; pass the state from init()")
        for k in ("running_mean", "running_var"):
            if np.shape(state[k]) != (self.num_features,):
                raise ValueError(f"layer '{self.name}': state {k!r} has shape {np.shape(state[k])}, "
                                 f"expected ({self.num_features},)")
        axes = (0,) if x.ndim == 2 else (0, 2, 3)
        shape = (1, -1) + (1,) * (x.ndim - 2)                      # broadcast (C,) over (N, C[, H, W])
        m = x.size // self.num_features                              # values per channel
        if train:
            if m < 2:
                raise ValueError(f"layer '{self.name}': training needs more than one value per "
                                 f"channel, got input shape {tuple(x.shape)}")
            if _fused.fusable(x, sums=True):
                xhat, mean, sq = _fused.center(x)                    # one Numba pass, same bits
            else:
                mean = x.mean(axis=axes)                             # (C,)
                xhat = x - mean.reshape(shape)                       # fresh array: normalise in place
                sq = np.einsum(_SUM[x.ndim], xhat, xhat)             # (C,)
            var = sq / m                                             # biased, (C,)
            if not math.isfinite(var.max()):                         # (x - mean)**2 overflowed (float32 > 1.8e19);
                                                                     # math: 0.5 us less than np.isfinite
                var = self._wide_var(xhat, m)
            mo = self.momentum
            new_state = {
                "running_mean": (1 - mo) * state["running_mean"] + mo * mean,
                # the running variance follows the unbiased batch variance (torch)
                "running_var": (1 - mo) * state["running_var"] + (mo * m / (m - 1)) * var,
            }
        else:
            mean, var = np.asarray(state["running_mean"]), np.asarray(state["running_var"])   # lists too
            xhat = x - mean.reshape(shape)
            new_state = state
        if self.eps == 0 and not np.all(var):                        # x - mean = 0 times 1/0: NaN
            c = int(np.argmin(var != 0))
            raise FloatingPointError(f"layer '{self.name}': channel {c} has variance 0 and eps = 0, so its "
                                     f"output would be 0/0 (NaN); use eps > 0")
        inv_std = 1.0 / np.sqrt(var + self.eps)                      # (C,)
        return xhat, inv_std, new_state

    def _wide_var(self, xhat, m):
        """The biased variance with the squares summed in float64, rounded to xhat's dtype;
        FloatingPointError if it does not fit there (the running variance could not hold it),
        or if the input holds NaN/inf (the variance is NaN in any dtype)."""
        var = np.einsum(_SUM[xhat.ndim], xhat, xhat, dtype=np.float64) / m      # (C,)
        with np.errstate(over="ignore"):
            out = var.astype(xhat.dtype)
        if not np.isfinite(out).all():
            c = int(np.argmin(np.isfinite(out)))
            if np.isnan(var[c]):                                  # NaN or inf - inf in x - mean
                raise FloatingPointError(f"layer '{self.name}': the input of channel {c} holds NaN/inf "
                                         f"values, so its batch variance is NaN")
            fix = "rescale the input" if xhat.dtype == np.float64 else "use float64 or rescale the input"
            raise FloatingPointError(f"layer '{self.name}': the batch variance of channel {c} is {var[c]:.4g}, "
                                     f"beyond {xhat.dtype}; {fix}")
        return out

    def forward(self, params, x, state, *, train=False, rng=None):
        x = self._check(x)
        xhat, inv_std, new_state = self._normalise(x, state, train)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        xhat *= inv_std.reshape(shape)
        if self.affine:
            c = (self.num_features,)
            y = xhat * self._param(params, "weight", c).reshape(shape)
            y += self._param(params, "bias", c).reshape(shape)
        else:
            y = xhat    # shared with the cache; layers never write into their inputs
        return y, (xhat, inv_std, train), new_state

    def fusable_with(self, x, train):
        """True if ``forward_relu`` / ``backward_relu`` apply: training, no affine, 2-D C-order float x.

        Parameters
        ----------
        x : ndarray
            This layer's input.
        train : bool
            Training mode.

        Returns
        -------
        bool
        """
        return train and not self.affine and _fused.fusable(np.asarray(x), sums=True)

    def forward_relu(self, params, x, state, relu, dropout=None, *, train=True, rng=None):
        """This layer, then ``relu``, then ``dropout`` (optional), in one fused pass.

        The same outputs, caches, state and random draws as the three ``forward`` calls in
        turn, bit for bit; only for ``fusable_with(x, train)``.

        Parameters
        ----------
        params, state : dict of str -> ndarray
            This layer's (as for ``forward``).
        x : ndarray, (N, C)
            The input.
        relu : ReLU
            The next layer.
        dropout : Dropout, optional
            The layer after it.
        train : bool
            Training mode (True: the fused pass is for training).
        rng : numpy.random.Generator, optional
            The dropout's stream.

        Returns
        -------
        y : ndarray, (N, C)
        caches : list
            This layer's cache, the ReLU's (its input), the Dropout's (the keep mask), if any.
        new_state : dict of str -> ndarray
        """
        x = self._check(x)
        xhat, inv_std, new_state = self._normalise(x, state, train)
        u = None
        if dropout is not None:
            u = dropout.uniforms(x.shape, train, rng)                # the draw Dropout.forward makes
        if u is None:
            y, _ = _fused.scale_relu(xhat, inv_std)                  # xhat scaled in place
            caches = [(xhat, inv_std, train), xhat] + ([None] if dropout is not None else [])
        else:
            y, keep = _fused.scale_relu(xhat, inv_std, u, dropout.p, 1.0 / (1.0 - dropout.p))
            caches = [(xhat, inv_std, train), xhat, keep]
        return y, caches, new_state

    def backward(self, params, cache, dy):
        """Train: dx = (g / sigma) * (dy - mean(dy) - xhat * mean(dy * xhat)); eval: dx = g * dy / sigma.

        g is the affine weight (1 without affine); means are per channel over N(, H, W).
        """
        xhat, inv_std, train = cache
        dy = self._check_dy(dy, xhat.shape)
        axes = (0,) if xhat.ndim == 2 else (0, 2, 3)
        shape = (1, -1) + (1,) * (xhat.ndim - 2)
        scale = inv_std * self._param(params, "weight", (self.num_features,)) if self.affine else inv_std  # (C,)
        grads = {}
        if train or self.affine:
            sum_dy_xhat = np.einsum(_SUM[xhat.ndim], dy, xhat)              # (C,)
        if train:
            m = xhat.size // self.num_features
            sum_dy = dy.sum(axis=axes)                                      # (C,)
            dx = xhat * (-sum_dy_xhat / m).reshape(shape)
            dx += dy
            dx -= (sum_dy / m).reshape(shape)
            dx *= scale.reshape(shape)
        else:
            dx = dy * scale.reshape(shape)
        if self.affine:
            grads["weight"] = sum_dy_xhat
            grads["bias"] = sum_dy if train else dy.sum(axis=axes)
        return dx, grads

    def backward_relu(self, params, caches, dy, relu, dropout=None):
        """The backward of ``forward_relu``: dx of this layer, the ReLU and the Dropout, fused.

        ``caches`` are the three (or two) layers' caches in forward order. Bit-identical to
        the layers' ``backward`` calls in reverse; only where ``fusable_with`` held in the
        forward and ``dy`` is 2-D C-order (else it runs those calls).

        Parameters
        ----------
        params : dict of str -> ndarray
            This layer's.
        caches : list
            From ``forward_relu``.
        dy : ndarray, (N, C)
            d loss / d output of the last fused layer.
        relu : ReLU
        dropout : Dropout, optional

        Returns
        -------
        dx : ndarray, (N, C)
        grads : dict of str -> ndarray
            This layer's (empty without affine).
        """
        (xhat, inv_std, train), relu_in = caches[0], caches[1]
        keep = caches[2] if dropout is not None else None
        dy = self._check_dy(dy, xhat.shape)        # the fused kernels read dy and xhat row by row
        if not (train and not self.affine and relu_in is xhat
                and _fused.fusable(dy, xhat, *([] if keep is None else [keep]), sums=True)):
            if dropout is not None:
                dy = dropout.backward({}, keep, dy)[0]
            dy = relu.backward({}, relu_in, dy)[0]
            return self.backward(params, caches[0], dy)
        m = xhat.shape[0]
        scale = 1.0 / (1.0 - dropout.p) if keep is not None else 1.0
        g, s_gx, s_g = _fused.relu_grad_sums(dy, xhat, keep, scale)   # d loss / d xhat, sums over N
        return _fused.bn_dx(xhat, -s_gx / m, s_g / m, inv_std, g), {}

    def __repr__(self):
        return (f"BatchNorm({self.num_features}, eps={self.eps:g}, momentum={self.momentum:g}, "
                f"affine={self.affine}, name={self.name!r})")
