"""The optimizer protocol, hyperparameter checks and exact state save/load.

Every refbinn optimizer is a pure state transition (jax.example_libraries.optimizers,
optax). One training step, for any optimizer::

    noise = opt.sample(state, rng)              # list: one entry per forward/backward pass
    grads = []
    for n in noise:                             # BayesBiNN: S Monte Carlo samples; others: [None]
        p = opt.forward_params(state, n)        # the weights this pass uses
        ... forward/backward of the model at p -> g (dict like p)
        grads.append(g)
    state = opt.update(grads, state, noise, lr=lr)
    p_eval = opt.params(state)                  # evaluation weights (binary: exactly +-1)

``sample`` is the only place randomness enters; it draws from the Generator it
is given and nothing else. ``update`` is deterministic given the noise, so a port
fed the same noise reproduces refbinn exactly. ``lr`` (optional) overrides the
constructor's step size for this step (for Bop it is gamma); a learning-rate
schedule lives in the training loop, not in the state.

State is a NamedTuple of dicts of arrays (keyed by parameter name) and scalars.
``save_state``/``load_state`` write and read it, with the optimizer's
hyperparameters, as one .npz; the round trip is exact.
"""
from __future__ import annotations

import importlib
import os
import tempfile

import numpy as np


class Optimizer:
    """Base class. Subclasses implement ``init``, ``update``, ``params``, ``config``
    and, when they differ from the defaults below, ``sample`` and ``forward_params``."""

    def init(self, params, rng=None):
        raise NotImplementedError

    def sample(self, state, rng):
        """Noise for this step: a list with one entry per forward/backward pass."""
        return [None]

    def forward_params(self, state, noise=None):
        """Weights used by the training forward pass for this noise entry."""
        return self.params(state)

    def update(self, grads, state, noise=None, *, lr=None):
        raise NotImplementedError

    def params(self, state):
        raise NotImplementedError

    def config(self):
        """Constructor keyword arguments that rebuild this optimizer (for save/load)."""
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items()
                         if not isinstance(v, (np.ndarray, dict)))
        return f"{type(self).__name__}({args})"


# -- argument checks ------------------------------------------------------------
def check_range(name, value, lo=None, hi=None, *, lo_open=False, hi_open=False):
    """Raise ValueError naming ``name`` and the allowed range unless lo <= value <= hi (< where open)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    bad = np.isnan(v)
    if lo is not None:
        bad |= v <= lo if lo_open else v < lo
    if hi is not None:
        bad |= v >= hi if hi_open else v > hi
    if bad:
        left = "-inf" if lo is None else f"{lo:g}"
        right = "inf" if hi is None else f"{hi:g}"
        rng = ("(" if lo_open or lo is None else "[") + f"{left}, {right}" + \
              (")" if hi_open or hi is None else "]")
        raise ValueError(f"{name} must be in {rng}, got {value!r}")
    return value


def check_finite(grads, where="gradient"):
    """Raise FloatingPointError naming the first parameter whose gradient has NaN or inf.

    Call before touching any state so that a failed step leaves the state as it was.
    """
    if isinstance(grads, dict):
        grads = [grads]
    for s, g in enumerate(grads):
        for k, v in g.items():
            if not np.all(np.isfinite(v)):
                n_bad = int(np.size(v) - np.count_nonzero(np.isfinite(v)))
                extra = f" (sample {s})" if len(grads) > 1 else ""
                raise FloatingPointError(f"{where} of parameter '{k}'{extra} contains "
                                         f"{n_bad} NaN/inf value(s); the step was not taken")


def as_grad_list(grads, noise):
    """Accept one dict or a list of dicts; check the count against the noise list."""
    if isinstance(grads, dict):
        grads = [grads]
    grads = list(grads)
    n = 1 if noise is None else len(noise)
    if len(grads) != n:
        raise ValueError(f"got {len(grads)} gradient dict(s) for {n} noise sample(s)")
    return grads


# -- exact save / load ---------------------------------------------------------
def _qualname(obj):
    t = obj if isinstance(obj, type) else type(obj)
    return f"{t.__module__}:{t.__qualname__}"


def _resolve(qual):
    mod, name = qual.split(":")
    obj = importlib.import_module(mod)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _pack(node, prefix, out):
    """Flatten a tree of NamedTuples, dicts, lists, Optimizers, arrays and scalars into npz entries."""
    if isinstance(node, Optimizer):
        out[f"{prefix}#optimizer"] = np.array(_qualname(node))
        _pack(node.config(), prefix + "/config", out)
    elif isinstance(node, tuple) and hasattr(node, "_fields"):
        out[f"{prefix}#namedtuple"] = np.array(_qualname(node))
        for f in node._fields:
            _pack(getattr(node, f), f"{prefix}/{f}", out)
    elif isinstance(node, dict):
        keys = list(node)
        out[f"{prefix}#dict"] = np.array(keys, dtype=str) if keys else np.zeros(0, dtype=str)
        for i, k in enumerate(keys):
            _pack(node[k], f"{prefix}/{i}", out)
    elif isinstance(node, (list, tuple)):
        out[f"{prefix}#{type(node).__name__}"] = np.array(len(node))
        for i, v in enumerate(node):
            _pack(v, f"{prefix}/{i}", out)
    elif node is None:
        out[f"{prefix}#none"] = np.array(0)
    elif isinstance(node, (bool, int, float, str)):
        out[f"{prefix}#{type(node).__name__}"] = np.array(node)
    elif isinstance(node, (np.ndarray, np.generic)):
        out[f"{prefix}#array"] = np.asarray(node)
    elif isinstance(node, np.random.Generator):
        out[f"{prefix}#generator"] = np.array(repr_generator_state(node))
    else:
        raise TypeError(f"cannot save a {type(node).__name__} at '{prefix}'")


def _unpack(data, prefix):
    for tag in ("optimizer", "namedtuple", "dict", "list", "tuple", "none", "bool", "int",
                "float", "str", "array", "generator"):
        key = f"{prefix}#{tag}"
        if key in data:
            break
    else:
        raise KeyError(f"saved state has no entry '{prefix}'")
    v = data[key]
    if tag == "optimizer":
        return _resolve(str(v))(**_unpack(data, prefix + "/config"))
    if tag == "namedtuple":
        cls = _resolve(str(v))
        return cls(*[_unpack(data, f"{prefix}/{f}") for f in cls._fields])
    if tag == "dict":
        return {str(k): _unpack(data, f"{prefix}/{i}") for i, k in enumerate(v)}
    if tag in ("list", "tuple"):
        items = [_unpack(data, f"{prefix}/{i}") for i in range(int(v))]
        return items if tag == "list" else tuple(items)
    if tag == "none":
        return None
    if tag in ("bool", "int", "float", "str"):
        return {"bool": bool, "int": int, "float": float, "str": str}[tag](v.item() if tag != "str" else v)
    if tag == "generator":
        return generator_from_state(str(v))
    return v


def repr_generator_state(gen):
    import json
    return json.dumps(gen.bit_generator.state)


def generator_from_state(text):
    import json
    st = json.loads(text)
    bg = getattr(np.random, st["bit_generator"])()
    bg.state = st
    return np.random.Generator(bg)


def tree_to_arrays(tree, prefix="root"):
    """The flat dict of arrays ``save_tree`` writes; useful for checkpoints that hold more."""
    out = {}
    _pack(tree, prefix, out)
    return out


def tree_from_arrays(data, prefix="root"):
    return _unpack(data, prefix)


def atomic_savez(path, arrays):
    """Write an .npz so that a crash never leaves a partial file under ``path``."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp.npz")
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)          # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_state(path, opt, state):
    """Save an optimizer (its hyperparameters) and its state as one .npz, atomically."""
    arrays = tree_to_arrays(opt, "optimizer")
    arrays.update(tree_to_arrays(state, "state"))
    atomic_savez(path, arrays)


def load_state(path):
    """Return ``(opt, state)`` exactly as saved by ``save_state``."""
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    return tree_from_arrays(data, "optimizer"), tree_from_arrays(data, "state")
