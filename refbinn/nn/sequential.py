"""A chain of layers with one flat, ordered parameter mapping."""
from __future__ import annotations

import numpy as np

from ..checks import check_array_dict, check_generator
from ..noise import check_dtype
from .activations import Dropout, ReLU
from .base import Layer
from .batchnorm import BatchNorm
from .dense import Dense


class Sequential:
    """Layers applied in order; parameters and state in flat ordered dicts.

    Parameter and state names are ``"<layer name>.<local name>"``
    (``"fc1.weight"``, ``"bn1.running_mean"``), in layer order: this is the
    order of ``flatten_params`` and of torch's ``model.parameters()`` for the
    same network. Layer names must be unique; a repeated name gets a numeric
    suffix.

    Usage::

        params, state = model.init(rng, np.float32)
        y, cache, state = model.forward(params, x, state, train=True, rng=rng)
        dx, grads = model.backward(params, cache, dy)   # grads: same keys as params

    Parameters
    ----------
    *layers : Layer
        In order; their names prefix the parameter names.
    """

    def __init__(self, *layers: Layer):
        taken, last = set(), {}                  # names given so far; last suffix tried per name
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: expected Layer objects, got {type(layer).__name__}")
            if any(layer is other for other in layers[:i]):
                raise ValueError(f"Sequential: layer {i} ({layer!r}) is the same object as an earlier "
                                 f"layer; pass a new instance (a layer's name is its own)")
            base = layer.name
            if base in taken:                    # relu, relu1, relu2, ...: skip names already given
                k = last.get(base, 0) + 1
                while f"{base}{k}" in taken:
                    k += 1
                last[base] = k
                layer.name = f"{base}{k}"
            taken.add(layer.name)
        self.layers = list(layers)

    # -- parameters -----------------------------------------------------------
    def init(self, rng, dtype=np.float32):
        """Every layer's ``init``, in order, under prefixed names.

        Parameters
        ----------
        rng : numpy.random.Generator
        dtype : numpy dtype
            float32 or float64.

        Returns
        -------
        params, state : dict of str -> ndarray
            Ordered dicts ``"<layer>.<name>"`` -> array of ``dtype``.
        """
        check_generator("Sequential.init: rng", rng)
        dtype = check_dtype("Sequential.init", dtype)
        params, state = {}, {}
        for layer in self.layers:
            p, s = layer.init(rng, dtype)
            params.update({f"{layer.name}.{k}": v for k, v in p.items()})
            state.update({f"{layer.name}.{k}": v for k, v in s.items()})
        return params, state

    @property
    def kinds(self):
        """dict parameter name -> ``"binary"`` or ``"real"``, in parameter order."""
        return {f"{layer.name}.{k}": v for layer in self.layers for k, v in layer.kinds.items()}

    def _split(self, layer, flat):
        prefix = layer.name + "."
        return {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}

    def _split_all(self, flat, what="params"):
        """{layer name: ``_split(layer, flat)``} for every layer. Which keys go to which layer is
        worked out once per (layer names, keys) and kept: a step splits the same dicts every
        time, and a per-layer scan over every key cost ~8 us of a small MLP's ~94 us forward."""
        if not isinstance(flat, dict):           # a dict skips the call: ~0.1 us less per forward
            check_array_dict(f"Sequential: {what}", flat, "from init()")
        names = tuple(layer.name for layer in self.layers)
        keys = tuple(flat)
        plans = self.__dict__.setdefault("_plans", {})
        plan = plans.get((names, keys))
        if plan is None:
            plan = {n: [(k, k[len(n) + 1:]) for k in keys if k.startswith(n + ".")] for n in names}
            if len(plans) >= 16:                 # a few dicts alternate (params, state, grads)
                plans.clear()
            plans[(names, keys)] = plan
        return {n: {local: flat[k] for k, local in ks} for n, ks in plan.items()}

    # -- forward / backward ---------------------------------------------------
    def forward(self, params, x, state, *, train=False, rng=None):
        """y = f_L(... f_1(x)): every layer's ``forward`` in order.

        Parameters
        ----------
        params, state : dict of str -> ndarray
            Prefixed names, as from ``init``.
        x : ndarray
            The first layer's input.
        train : bool
            Training mode (batch statistics, dropout).
        rng : numpy.random.Generator, optional
            Needed when training with dropout.

        Returns
        -------
        y : ndarray
        cache : list
            One cache per layer, for ``backward``.
        new_state : dict of str -> ndarray
        """
        caches, new_state = [], {}
        ps, ss = self._split_all(params), self._split_all(state, "state")
        for a, b in self._spans():
            layer = self.layers[a]
            if b - a > 1 and layer.fusable_with(x, train):
                # BatchNorm -> ReLU [-> Dropout] in one pass: the same numbers, caches and draws
                x, c, s_new = layer.forward_relu(ps[layer.name], x, ss[layer.name], *self.layers[a + 1:b],
                                                 train=train, rng=rng)
                caches += c
                new_state.update({f"{layer.name}.{k}": v for k, v in s_new.items()})
                continue
            for layer in self.layers[a:b]:
                x, c, s_new = layer.forward(ps[layer.name], x, ss[layer.name], train=train, rng=rng)
                caches.append(c)
                new_state.update({f"{layer.name}.{k}": v for k, v in s_new.items()})
        return x, caches, new_state

    def _spans(self):
        """[(a, b), ...]: layers a..b-1 are one BatchNorm -> ReLU [-> Dropout] group, or one layer."""
        spans, i, ls = [], 0, self.layers
        while i < len(ls):
            k = 1
            if type(ls[i]) is BatchNorm and i + 1 < len(ls) and type(ls[i + 1]) is ReLU:
                k = 3 if i + 2 < len(ls) and type(ls[i + 2]) is Dropout else 2
            spans.append((i, i + k))
            i += k
        return spans

    def backward(self, params, cache, dy, *, input_grad=True):
        """The chain rule backwards: every layer's ``backward`` in reverse order.

        Parameters
        ----------
        params : dict of str -> ndarray
        cache : list
            From ``forward``.
        dy : ndarray
            d loss / d y.
        input_grad : bool
            False: skip d loss / d x below the first layer with parameters (a training step
            discards it; torch's autograd does not compute it for an input without
            ``requires_grad``); ``dx`` is then None. The gradients are the same.

        Returns
        -------
        dx : ndarray or None
            d loss / d x (None if not ``input_grad``).
        grads : dict of str -> ndarray
            Keyed like ``params`` and in the same order.
        """
        if not isinstance(cache, list) or len(cache) != len(self.layers):
            got = f"{len(cache)} entries" if isinstance(cache, list) else type(cache).__name__
            raise ValueError(f"Sequential.backward: cache must be the list of {len(self.layers)} entries "
                             f"that forward() returned, got {got}")
        grads = {}
        # the lowest layer with parameters: below it nothing is needed if not input_grad
        first = next((k for k, l in enumerate(self.layers) if l.kinds), -1) if not input_grad else -1
        ps = self._split_all(params)
        for a, b in reversed(self._spans()):
            layer = self.layers[a]
            p = ps[layer.name]
            if b - a > 1:
                # BatchNorm -> ReLU [-> Dropout]: one fused backward (it falls back to the layers)
                dy, g = layer.backward_relu(p, cache[a:b], dy, *self.layers[a + 1:b])
            elif a == first and isinstance(layer, Dense):
                dy, g = layer.backward(p, cache[a], dy, input_grad=False)
            else:
                dy, g = layer.backward(p, cache[a], dy)
            grads.update({f"{layer.name}.{k}": v for k, v in g.items()})
            if a <= first < b:
                dy = None
                break
        return dy, {k: grads[k] for k in params if k in grads}

    def apply(self, params, x, state):
        """Evaluation-mode forward (running BN statistics, no dropout).

        Parameters
        ----------
        params, state : dict of str -> ndarray
        x : ndarray

        Returns
        -------
        y : ndarray
        """
        return self.forward(params, x, state, train=False)[0]

    def __repr__(self):
        inner = ",\n  ".join(repr(l) for l in self.layers)
        return f"Sequential(\n  {inner}\n)"


def flatten_params(params, keys=None):
    """Concatenate ``params[k].ravel()`` over ``keys`` (default: all, in order) into one vector.

    The authors' optimizer works on one flat vector in ``model.parameters()``
    order; this is that vector.

    Parameters
    ----------
    params : dict of str -> ndarray
    keys : sequence of str, optional
        The order of the pieces; default: the dict's order.

    Returns
    -------
    ndarray, (sum of sizes,)
        In the arrays' common dtype (NumPy's promotion); float64 zeros of shape (0,)
        when there are no keys.
    """
    keys = _keys("flatten_params", params, keys)
    if not keys:
        return np.zeros(0)
    return np.concatenate([np.ravel(params[k]) for k in keys])


def unflatten_params(vec, like, keys=None):
    """Inverse of ``flatten_params``: split ``vec`` into arrays shaped like ``like[k]``.

    Parameters
    ----------
    vec : ndarray, (sum of sizes,)
    like : dict of str -> ndarray
        Gives each piece's shape (its values are not used).
    keys : sequence of str, optional
        The order of the pieces; default: the order of ``like``.

    Returns
    -------
    dict of str -> ndarray
        Copies, in ``vec``'s dtype.
    """
    keys = _keys("unflatten_params", like, keys, "like")
    total = sum(int(np.size(like[k])) for k in keys)
    vec = np.asarray(vec)
    if vec.ndim != 1 or vec.size != total:
        raise ValueError(f"unflatten_params: vector has shape {vec.shape}, expected ({total},)")
    out, i = {}, 0
    for k in keys:
        n = int(np.size(like[k]))
        out[k] = vec[i:i + n].reshape(np.shape(like[k])).copy()
        i += n
    return out


def _keys(fn, params, keys, name="params"):
    """``keys`` (default: all of ``params``) as a list; ValueError unless ``params`` (the argument
    ``name`` of ``fn``) is a dict and each key is in it."""
    check_array_dict(f"{fn}: {name}", params)
    if isinstance(keys, str):                    # list("fc1.weight") would be its letters
        raise ValueError(f"{fn}: keys must be a sequence of names, got the str {keys!r}")
    keys = list(params) if keys is None else list(keys)
    missing = [k for k in keys if k not in params]
    if missing:
        raise ValueError(f"{fn}: keys {missing} are not in the dict (it has {list(params)})")
    return keys
