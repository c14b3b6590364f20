"""The layer protocol shared by every refbinn layer, and the sign function.

A layer is a small object with no hidden mutation (jax stax / autograd VJPs)::

    params, state = layer.init(rng, dtype)
    y, cache, new_state = layer.forward(params, x, state, train=True, rng=rng)
    dx, grads = layer.backward(params, cache, dy)

``params`` and ``state`` are plain dicts of arrays keyed by local names
(``"weight"``, ``"bias"``, ``"running_mean"``); ``grads`` has the same keys as
``params``. ``backward`` is a vector-Jacobian product: it maps one to one onto
``torch.autograd.grad(y, (x, *params), grad_outputs=dy)`` and ``jax.vjp``.
``layer.kinds`` tags each parameter ``"binary"`` (weights of Dense/Conv2d) or
``"real"`` (biases, BatchNorm affine), so binary and real parameters can be
sent to different optimizers.
"""
from __future__ import annotations

import numpy as np

from ..checks import check_generator, check_real
from ..noise import check_dtype

BINARY = "binary"
REAL = "real"


def sign(x):
    """Binarise: +1 where x >= 0, -1 elsewhere; exact zeros map to +1.

    This is the convention of STE code and larq (``ste_sign``). The authors'
    BayesBiNN code maps mu <= 0 to -1 instead; refbinn uses this one function
    everywhere (mode prediction, STE forward, packing) so there is a single
    convention to port. NaN maps to -1 (``nan >= 0`` is False).

    Parameters
    ----------
    x : ndarray
        Any shape, an integer or float dtype (a bool, complex or text one: ValueError).

    Returns
    -------
    ndarray
        Same shape and dtype as ``x`` (integers give integers), values in {-1, +1}.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "iuf":                 # a bool cannot hold -1; text, objects: no sign
        raise ValueError(f"sign: x has dtype {x.dtype}, expected real numbers")
    one = np.ones((), dtype=x.dtype)
    return np.where(x >= 0, one, -one)


class Layer:
    """Base class: a named layer with no parameters and no state.

    Subclasses override ``init``, ``forward``, ``backward`` and, if they have
    parameters, ``kinds``. ``name`` is used in error messages and as the
    prefix of parameter names inside a ``Sequential``.

    Parameters
    ----------
    name : str, optional
        Default: the class name in lower case.
    """

    kinds: dict = {}

    def __init__(self, name=None):
        if name is not None and not isinstance(name, str):
            raise ValueError(f"{type(self).__name__}: name must be a str, got {name!r}")
        self.name = name or type(self).__name__.lower()

    def init(self, rng, dtype=np.float32):
        """Fresh parameters and state.

        Parameters
        ----------
        rng : numpy.random.Generator
            Draws the initial weights (unused by layers without parameters).
        dtype : numpy dtype
            float32 or float64.

        Returns
        -------
        params, state : dict of str -> ndarray
            Two dicts of arrays of ``dtype`` (empty for this base class).
        """
        return {}, {}

    def forward(self, params, x, state, *, train=False, rng=None):
        """y = f(params, x): the layer's output, what ``backward`` needs, and the new state.

        Parameters
        ----------
        params : dict of str -> ndarray
            As returned by ``init`` (or the optimizer's weights).
        x : ndarray
            The input; its layout is given by the layer (NCHW for images).
        state : dict of str -> ndarray
            Non-trained state (BatchNorm running statistics); never mutated.
        train : bool
            Training mode (batch statistics, dropout) or evaluation mode.
        rng : numpy.random.Generator, optional
            Randomness of the forward pass (dropout masks).

        Returns
        -------
        y : ndarray
            The dtype NumPy's promotion gives x and params (float32 with float32; float32
            params and a float64 x give float64).
        cache : object
            Whatever ``backward`` needs; opaque to the caller.
        new_state : dict of str -> ndarray

        Raises
        ------
        ValueError
            Naming the layer: "layer 'fc1': input has shape (2, 5), expected (N, 4)", an
            input dtype that is not a float one, params of another shape or missing, and
            the layer's own conditions (Dropout training without a Generator, BatchNorm
            training on one value per channel, SignActivation on integers).
        """
        raise NotImplementedError

    def backward(self, params, cache, dy):
        """The vector-Jacobian product: dx = dy^T dy/dx, grads[k] = dy^T dy/dparams[k].

        Parameters
        ----------
        params : dict of str -> ndarray
            The parameters ``forward`` was called with.
        cache : object
            The ``cache`` returned by ``forward``.
        dy : ndarray
            d loss / d y, the shape of ``y``.

        Returns
        -------
        dx : ndarray
            d loss / d x, the shape of ``x``.
        grads : dict of str -> ndarray
            d loss / d params, the same keys and shapes as ``params``.

        Raises
        ------
        ValueError
            Naming the layer and both shapes when dy is not the shape of y, or its dtype
            is not a float one.
        """
        raise NotImplementedError

    # -- helpers for subclasses -------------------------------------------------
    def _check_input(self, x, expected, what="input"):
        """Raise ValueError naming this layer and both shapes.

        ``expected`` is a tuple whose entries are ints or None (any size).
        """
        x = np.asarray(x)
        ok = x.ndim == len(expected) and all(
            e is None or e == s for e, s in zip(expected, x.shape))
        if not ok:
            want = "(" + ", ".join("N" if i == 0 and e is None else ("*" if e is None else str(e))
                                   for i, e in enumerate(expected)) + ")"
            raise ValueError(f"layer '{self.name}': {what} has shape {tuple(x.shape)}, "
                             f"expected {want}")
        if x.dtype.kind != "f":                   # = not issubdtype(floating), at a tenth of its cost
            raise ValueError(f"layer '{self.name}': {what} has dtype {x.dtype}, expected a float dtype")
        return x

    def _param(self, params, key, shape):
        """``params[key]``; ValueError naming this layer, the key and both shapes if it is missing or
        has another shape (e.g. the parameters of another model)."""
        if key not in params:
            raise ValueError(f"layer '{self.name}': params lack {key!r}; pass the params from init()")
        p = np.asarray(params[key])
        if p.shape != shape:
            raise ValueError(f"layer '{self.name}': params[{key!r}] has shape {p.shape}, expected {shape}")
        if p.dtype.kind not in "fiub":                       # complex or object would pass on silently
            check_real(f"layer '{self.name}': params[{key!r}]", p)
        return p

    def _init_args(self, rng, dtype):
        """``np.dtype(dtype)``; ValueError naming this layer unless it is float32 or float64 and
        ``rng`` is a Generator (int weights would round to 0; rng=None failed as AttributeError, and a
        legacy RandomState drew the weights from another stream of the same seed)."""
        check_generator(f"layer '{self.name}': init: rng", rng)
        return check_dtype(f"layer '{self.name}': init", dtype)

    def _check_dy(self, dy, shape):
        """``dy`` as an array; ValueError naming this layer and both shapes unless it has the
        output's ``shape`` (a dy that broadcasts would otherwise give a wrong gradient silently)."""
        if np.shape(dy) != shape:
            raise ValueError(f"layer '{self.name}': dy has shape {np.shape(dy)}, "
                             f"the output has shape {shape}")
        dy = np.asarray(dy)
        if dy.dtype.kind != "f":                              # as forward's x: int, complex, object, str
            raise ValueError(f"layer '{self.name}': dy has dtype {dy.dtype}, expected a float dtype")
        return dy

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"
