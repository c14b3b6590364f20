"""Golden traces: every tensor of K training steps, saved so that a port can replay and compare.

A trace is one ``.npz``: a ``meta`` JSON entry (format version, model and its
layers, optimizer and hyperparameters, dtype) and, per step, the inputs a port
needs (data batch, dropout keep masks, BayesBiNN uniforms u) and the results it
should reproduce (forward weights, logits, loss, gradients, Lemma 1 scale,
optimizer state, BatchNorm state, evaluation weights). ``step0000/`` holds the
state before the first update; ``step{t:04d}/`` holds update t = 1..K::

    step0003/x                         (B, ...) the minibatch      step0003/y  (B,) labels
    step0003/sample0/u/fc1.weight      uniforms of Monte Carlo pass 0
    step0003/sample0/mask/drop1        keep mask (bool) of dropout layer drop1, pass 0
    step0003/sample0/grad/fc1.weight   d loss / d w at that pass's weights
    step0003/lam/fc1.weight            optimizer state after update 3
    step0003/bn/bn1.running_var        BatchNorm state after update 3

docs/trace_format.md lists every key with its shape, dtype and the order of
operations in one step. ``compare_traces`` finds the first entry where two
traces differ, in step order, then in that order of operations.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from ..models import build_model
from ..nn import (BatchNorm, Conv2d, Dense, Dropout, Flatten, MaxPool2d, ReLU, Tanh,
                 softmax_cross_entropy)
from ..checks import check_choice, check_int, check_range
from ..errors import reads_file
from ..io import atomic_savez
from ..noise import SampleKey
from ..optim.bayesbinn import OFFICIAL, concrete_scale
from ..optim.registry import make
from .step import train_step

FORMAT, VERSION = "refbinn-trace", 1


# -- what can be traced ---------------------------------------------------------------
class ModelSpec(NamedTuple):
    """A model a trace can be written for, and the synthetic data it is trained on.

    Attributes
    ----------
    build : callable () -> Sequential
        Builds the model (a fresh one on every call).
    in_shape : tuple of int
        One example's shape, e.g. (20,) or (1, 8, 8).
    classes : int >= 2
        Number of classes; labels are drawn uniformly from [0, classes).
    batch : int >= 1
        B, the minibatch size.
    n_data : int >= batch
        Synthetic data-set size (standard normal x); batches cycle through it in order,
        and BayesBiNN's N is this size.
    """
    build: object
    in_shape: tuple
    classes: int
    batch: int
    n_data: int


MODELS = {
    # mlp_mnist at a small size: dropout 0.2 on the input and after each hidden ReLU,
    # BN (no affine, momentum 0.15, eps 1e-4) after every Linear, logits = last BN output
    "mlp": ModelSpec(lambda: build_model("mlp_mnist", dict(in_features=20, hidden=(16, 16, 16),
                                                           classes=4)), (20,), 4, 16, 64),
    # the same MLP at toy size (2 hidden layers of 6): small enough to keep traces as test fixtures
    "tiny": ModelSpec(lambda: build_model("mlp_mnist", dict(in_features=6, hidden=(6, 6), classes=3)),
                      (6,), 3, 4, 8),
    # the VGG-like CNN at width 1/64 on 1x8x8 inputs: conv 2-2-pool-4-4-pool-8-8-pool-fc 16-16-3
    "cnn": ModelSpec(lambda: build_model("vgg_cifar", dict(num_classes=3, width=1 / 64, in_channels=1,
                                                         image_size=8)),
                     (1, 8, 8), 3, 16, 64),
    # the paper's MNIST MLP (784-2048-2048-2048-10): ~80 MB per tensor per step in float64
    "mlp_mnist": ModelSpec(lambda: build_model("mlp_mnist"), (784,), 10, 100, 200),
}

# trace name -> (optimizer registry key, default hyperparameters); BayesBiNN's N is the data-set size
OPTIMIZERS = {
    "bayesbinn-exact": ("bayesbinn", dict(tau=1.0, lr=0.05, beta=0.9, samples=1, lam_init=1.0,
                                          lam_init_std=0.5, numerics="exact", backend="numpy")),
    # the authors' MNIST settings (spec section 9) under their numerics (spec section 7)
    "bayesbinn-official": ("bayesbinn", dict(tau=1e-10, lr=1e-4, beta=0.0, samples=1, lam_init=10.0,
                                             numerics="official", backend="numpy")),
    "ste": ("ste", dict(lr=1e-2)),
    "bop": ("bop", dict(threshold=1e-3, gamma=0.05)),
    "adam": ("adam", dict(lr=1e-2)),
    "pmf": ("pmf", dict(lr=1e-2, rho=1.2, anneal_every=2)),
    # VISPA's noise r (one (K,) vector per layer) is stored under sample{j}/u
    "vispa": ("vispa", dict(lr=0.1, rank=4, scale=10.0, backend="numpy")),
}


def _float_dtype(dtype):
    """float32 or float64 from a dtype or its name; ValueError naming ``dtype`` for anything else."""
    try:
        name = np.dtype(dtype).name
    except TypeError:                        # 'bogus', [1]: not a dtype at all
        name = dtype
    return np.dtype(check_choice("dtype", name, ("float32", "float64")))


def make_optimizer(optimizer_name, n_data, dtype, hparams=None):
    """The optimizer of ``optimizer_name`` with its trace defaults, updated by ``hparams``.

    Parameters
    ----------
    optimizer_name : str
        A key of ``OPTIMIZERS`` ('bayesbinn-exact', 'bayesbinn-official', 'ste', 'bop',
        'adam', 'pmf', 'vispa'); ValueError for another.
    n_data : int >= 1
        The data-set size, BayesBiNN's N.
    dtype : numpy float dtype or its name
        BayesBiNN's state dtype (the trace's dtype); other optimizers take the parameters'.
    hparams : dict, optional
        Constructor arguments overriding the defaults (checked by the constructor).

    Returns
    -------
    Optimizer
    """
    key, hp = OPTIMIZERS[check_choice("optimizer", optimizer_name, tuple(OPTIMIZERS))]
    check_int("n_data", n_data, 1)
    if hparams is not None and not isinstance(hparams, Mapping):
        raise ValueError(f"hparams must be a dict of optimizer arguments, got {type(hparams).__name__}")
    if hparams and "dtype" in hparams:
        raise ValueError(f"hparams: 'dtype' is the trace's own setting (write_trace's dtype, refbinn trace "
                         f"--dtype), not an optimizer argument; got dtype={hparams['dtype']!r}")
    hp = dict(hp)
    if key == "bayesbinn":
        # backend 'numpy': the reference functions (exp/log/tanh of refbinn.elementary), the
        # same numbers on every CPU; the state dtype is the trace's dtype
        hp.update(N=float(n_data), dtype=_float_dtype(dtype).name)
    hp.update(hparams or {})
    return make(key, **hp)


def describe_layers(model):
    """One JSON-able dict per layer: name, type and what a port needs to rebuild it.

    Parameters
    ----------
    model : Sequential
        Of Dense, Conv2d, BatchNorm, Dropout, MaxPool2d, ReLU, Tanh and Flatten layers
        (ValueError naming any other layer).

    Returns
    -------
    list of dict
        In layer order: ``name``, ``type`` ('dense', 'conv2d', 'batchnorm', ...) and the
        layer's settings (features, kernel size, stride, padding, bias, eps, momentum,
        affine, dropout p).
    """
    out = []
    for L in model.layers:
        d = {"name": L.name}
        if isinstance(L, Dense):
            d.update(type="dense", in_features=L.in_features, out_features=L.out_features, bias=L.bias)
        elif isinstance(L, Conv2d):
            d.update(type="conv2d", in_channels=L.in_channels, out_channels=L.out_channels,
                     kernel_size=list(L.kernel_size), stride=list(L.stride),
                     padding=[list(p) for p in L.pads], bias=L.bias)
        elif isinstance(L, BatchNorm):
            d.update(type="batchnorm", num_features=L.num_features, eps=L.eps,
                     momentum=L.momentum, affine=L.affine)
        elif isinstance(L, Dropout):
            d.update(type="dropout", p=L.p)
        elif isinstance(L, MaxPool2d):
            d.update(type="maxpool2d", kernel_size=list(L.kernel_size), stride=list(L.stride))
        elif isinstance(L, (ReLU, Tanh, Flatten)):
            d.update(type=type(L).__name__.lower())
        else:
            raise ValueError(f"trace: layer '{L.name}' of type {type(L).__name__} is not supported")
        out.append(d)
    return out


# -- writing ---------------------------------------------------------------------------
def step_key(t):
    """'step0003' for update t = 3; 'step0000' is the state before the first update.

    Parameters
    ----------
    t : int >= 0
        The update number.

    Returns
    -------
    str
        ``f"step{t:04d}"``, the prefix of that step's entries.
    """
    return f"step{t:04d}"


def _put_state(arrays, prefix, state):
    """Every field of an optimizer state NamedTuple: dicts per parameter, scalars as 0-d arrays."""
    for f in state._fields:
        v = getattr(state, f)
        if isinstance(v, dict):
            arrays.update({f"{prefix}/{f}/{k}": np.asarray(a) for k, a in v.items()})
        else:
            arrays[f"{prefix}/{f}"] = np.asarray(v)


def _noise_arrays(noise, state):
    """The u arrays of one pass, name -> ndarray: materialised from BayesBiNN's SampleKey
    (``refbinn.noise.uniform``, what a port computes), None when the pass has no noise."""
    if noise is None:
        return None
    if isinstance(noise, SampleKey):
        return {k: noise.uniform(k, lam.shape, lam.dtype) for k, lam in state.lam.items()}
    return {k: np.asarray(v) for k, v in noise.items()}


def write_trace(path, *, model_name, optimizer_name, steps, seed=0, dtype="float64", hparams=None):
    """Train ``model_name`` with ``optimizer_name`` for ``steps`` steps on synthetic data; save every tensor.

    One step is ``refbinn.train.train_step``, recording every pass (``on_pass``)::

        noise = opt.sample(state, rng_noise)                 # S dicts of u (BayesBiNN) or [None]
        for j, n in enumerate(noise):
            w = opt.forward_params(state, n)                 # sample{j}/w
            out, cache, bn = model.forward(w, x, bn, train=True, rng=rng_drop)
            loss, dout = softmax_cross_entropy(out, y)       # sample{j}/out, sample{j}/loss
            grad = model.backward(w, cache, dout)[1]         # sample{j}/grad
        state = opt.update(grads, state, noise)              # state fields, bn, eval_w

    Parameters
    ----------
    path : str or PathLike
        The .npz to write (atomically).
    model_name : {'mlp', 'tiny', 'cnn', 'mlp_mnist'}
    optimizer_name : {'bayesbinn-exact', 'bayesbinn-official', 'ste', 'bop', 'adam', 'pmf', 'vispa'}
    steps : int >= 1
        K, the number of updates.
    seed : int
        Seeds the Generator whose four spawned streams give init, data, noise u and dropout.
    dtype : {'float64', 'float32'}
    hparams : dict, optional
        Optimizer keyword arguments overriding the defaults in ``OPTIMIZERS``.

    Returns
    -------
    dict
        The ``meta`` entry written.
    """
    spec = MODELS[check_choice("model", model_name, tuple(MODELS))]
    check_choice("optimizer", optimizer_name, OPTIMIZERS)
    check_int("steps", steps, 1)
    check_int("seed", seed, 0)
    dt = _float_dtype(dtype)
    model = spec.build()
    root = np.random.default_rng(seed)
    r_init, r_data, r_noise, r_drop = root.spawn(4)
    params, bn = model.init(r_init, dt)
    x_all = r_data.standard_normal((spec.n_data,) + spec.in_shape).astype(dt)   # (n_data, ...)
    y_all = r_data.integers(0, spec.classes, spec.n_data)
    opt = make_optimizer(optimizer_name, spec.n_data, dt, hparams)
    state = opt.init(params, r_init)
    drops = [i for i, L in enumerate(model.layers) if isinstance(L, Dropout)]
    bayes = OPTIMIZERS[optimizer_name][0] == "bayesbinn"

    arrays = {}
    p0 = step_key(0)
    arrays.update({f"{p0}/init_params/{k}": v for k, v in params.items()})
    _put_state(arrays, p0, state)
    arrays.update({f"{p0}/bn/{k}": v for k, v in bn.items()})
    arrays.update({f"{p0}/eval_w/{k}": v for k, v in opt.params(state).items()})
    n_batches = spec.n_data // spec.batch
    samples = set()
    for t in range(1, int(steps) + 1):
        pre = step_key(t)
        i = ((t - 1) % n_batches) * spec.batch
        x, y = x_all[i:i + spec.batch], y_all[i:i + spec.batch]
        arrays[f"{pre}/x"], arrays[f"{pre}/y"] = x, y

        def record(state, ps, sp=f"{pre}/sample"):
            sp = f"{sp}{ps.index}"
            u = _noise_arrays(ps.noise, state)
            if u is not None:
                arrays.update({f"{sp}/u/{k}": v for k, v in u.items()})
            arrays.update({f"{sp}/mask/{model.layers[li].name}": ps.cache[li]
                           for li in drops if ps.cache[li] is not None})   # the masks the layers used
            arrays.update({f"{sp}/w/{k}": v for k, v in ps.weights.items()})
            arrays[f"{sp}/out"] = ps.out
            arrays[f"{sp}/loss"] = np.float64(ps.loss)
            arrays.update({f"{sp}/grad/{k}": v for k, v in ps.grads.items()})
            if bayes and ps.noise is not None:
                mu = state.mu if opt.numerics == OFFICIAL else {}
                arrays.update({f"{sp}/scale/{k}": concrete_scale(lam, u[k], opt.tau, opt.N,
                                                                 opt.numerics, mu.get(k))
                               for k, lam in state.lam.items()})
            samples.add(ps.index)

        state, bn, _, _ = train_step(model, opt, state, bn, x, y, softmax_cross_entropy,
                                     rng_noise=r_noise, rng_drop=r_drop, on_pass=record)
        _put_state(arrays, pre, state)
        arrays.update({f"{pre}/bn/{k}": v for k, v in bn.items()})
        arrays.update({f"{pre}/eval_w/{k}": v for k, v in opt.params(state).items()})

    meta = {
        "format": FORMAT, "version": VERSION, "writer": "refbinn",
        "model": model_name, "layers": describe_layers(model),
        "optimizer": optimizer_name, "optimizer_class": type(opt).__name__, "hparams": opt.config(),
        "dtype": dt.name, "steps": int(steps), "seed": int(seed),
        "samples": len(samples), "batch_size": spec.batch, "n_data": spec.n_data,
        "in_shape": list(spec.in_shape), "classes": spec.classes, "loss": "softmax_cross_entropy",
        "param_names": list(params), "param_shapes": {k: list(v.shape) for k, v in params.items()},
        "bn_names": list(bn), "dropout_layers": [model.layers[i].name for i in drops],
        "state_fields": list(state._fields),
    }
    save_trace(path, meta, arrays)
    return meta


def save_trace(path, meta, arrays):
    """Write ``arrays`` and ``meta`` (a JSON-able dict) as one .npz, atomically.

    Parameters
    ----------
    path : str or PathLike
        The file to write (no suffix is added).
    meta : dict
        Stored as the JSON entry ``meta`` (NumPy arrays and scalars are converted).
    arrays : dict str -> array_like
        The trace's entries, ``step{t:04d}/...`` (numbers or booleans, for ``load_trace``).
    """
    out = {"meta": np.array(json.dumps(meta, default=_json_default))}
    out.update({k: np.asarray(v) for k, v in arrays.items()})
    atomic_savez(path, out)


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


@reads_file("trace")
def load_trace(path):
    """Return ``(meta, arrays)``: the parsed meta dict and a dict key -> ndarray.

    Raises FileFormatError (naming the file) for anything that is not a readable trace.

    Parameters
    ----------
    path : str or PathLike
        A trace written by ``write_trace`` / ``save_trace`` (or a port's, in the same format).

    Returns
    -------
    meta : dict
        The parsed ``meta`` entry (its ``format`` is ``FORMAT``).
    arrays : dict str -> ndarray
        Every other entry, each of a numeric or boolean dtype.
    """
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if "meta" not in arrays:
        raise ValueError(f"{path}: not a refbinn trace (no 'meta' entry)")
    meta = json.loads(str(arrays.pop("meta")))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a refbinn trace (its meta has format "
                         f"{meta.get('format') if isinstance(meta, dict) else None!r}, not {FORMAT!r})")
    odd = [k for k, v in arrays.items() if v.dtype.kind not in "biuf"]
    if odd:
        raise ValueError(f"{path}: entry {odd[0]!r} has dtype {arrays[odd[0]].dtype}, not a number or bool")
    return meta, arrays


# -- comparing ---------------------------------------------------------------------------
def as_trace(t):
    """``(meta, arrays)`` of ``t``: a path (``load_trace``), or such a pair, checked like a file.

    Parameters
    ----------
    t : str or PathLike, or a ``(meta, arrays)`` pair
        ``meta`` a dict; ``arrays`` a dict str -> ndarray of a number or bool dtype.

    Returns
    -------
    meta : dict
    arrays : dict str -> ndarray

    Raises
    ------
    ValueError
        For a pair of another kind, naming the first entry that is not a number or bool array
        (a complex or object array would be compared wrongly).
    """
    if not isinstance(t, tuple):
        return load_trace(t)
    if len(t) != 2 or not isinstance(t[0], dict) or not isinstance(t[1], dict):
        raise ValueError(f"a trace must be a path or a (meta dict, arrays dict) pair, got a tuple of "
                         f"{', '.join(type(x).__name__ for x in t) or 'nothing'}")
    for k, v in t[1].items():
        if not isinstance(v, (np.ndarray, np.generic)) or v.dtype.kind not in "biuf":
            what = v.dtype if isinstance(v, (np.ndarray, np.generic)) else type(v).__name__
            raise ValueError(f"trace entry {k!r} is {what}, not an array of numbers or bools")
    return t


class Divergence(NamedTuple):
    """The first entry where two traces differ.

    Attributes
    ----------
    step : int
        t (0: the state before the first update).
    tensor : str
        The key without the step prefix, e.g. 'lam/fc1.weight'.
    index : int or None
        Flat (C-order) index of the first differing entry; None for a shape mismatch.
    mine : object
        The value in the first trace (a number; the shape for a shape mismatch).
    theirs : object
        The same in the second trace.
    tol : float
        The allowed ``abs(mine - theirs)`` for this tensor (0 for a shape mismatch and for
        booleans and integers).
    reason : {'value', 'shape'}
        What differs.
    """
    step: int
    tensor: str
    index: int | None
    mine: object
    theirs: object
    tol: float
    reason: str

    @property
    def key(self):
        """The full key of the tensor in the trace, ``step{t:04d}/<tensor>``."""
        return f"{step_key(self.step)}/{self.tensor}"

    def __str__(self):
        if self.reason == "shape":
            return (f"step {self.step}, tensor {self.tensor}: shape {self.mine} in mine, "
                    f"{self.theirs} in theirs")
        return (f"step {self.step}, tensor {self.tensor}, index {self.index}: mine {self.mine!r}, "
                f"theirs {self.theirs!r} (|diff| {abs_diff(self.mine, self.theirs):.3e} > "
                f"tol {self.tol:.3e})")


def abs_diff(a, b):
    """``abs(a - b)`` as a float; NaN when either is not a number (a shape, for a shape mismatch).

    Parameters
    ----------
    a, b : object
        Two values, usually a ``Divergence``'s ``mine`` and ``theirs``.

    Returns
    -------
    float
    """
    try:
        return abs(float(a) - float(b))
    except (TypeError, ValueError):
        return float("nan")


# order of the entries within one step: the order in which a step computes them
_SAMPLE_ORDER = ("u", "w", "mask", "out", "loss", "grad", "scale")
_TAIL_ORDER = ("bn", "eval_w")


def _meta_list(meta, field):
    """``meta[field]`` if it is a list, else [] (a port's trace may hold null there: order only)."""
    v = meta.get(field)
    return v if isinstance(v, list) else []


def _sort_key(key, meta):
    """(step, section, sample, group, name) for a key 'stepNNNN/...'; None for other keys."""
    head, _, rest = key.partition("/")
    if not head.startswith("step") or not head[4:].isdigit():
        return None
    names = _meta_list(meta, "param_names") + _meta_list(meta, "bn_names") + _meta_list(meta, "dropout_layers")
    fields = _meta_list(meta, "state_fields")

    def name_rank(n):
        return names.index(n) if n in names else len(names)

    parts = rest.split("/")
    if parts[0] in ("x", "y"):
        return (int(head[4:]), 0, 0, ("x", "y").index(parts[0]), 0, rest)
    if parts[0] == "init_params":
        return (int(head[4:]), 0, 0, 2, name_rank(parts[-1]), rest)
    if parts[0].startswith("sample") and parts[0][6:].isdigit() and len(parts) > 1:
        g = _SAMPLE_ORDER.index(parts[1]) if parts[1] in _SAMPLE_ORDER else len(_SAMPLE_ORDER)
        return (int(head[4:]), 1, int(parts[0][6:]), g, name_rank(parts[-1]), rest)
    if parts[0] in fields:
        return (int(head[4:]), 2, 0, fields.index(parts[0]), name_rank(parts[-1]), rest)
    g = _TAIL_ORDER.index(parts[0]) if parts[0] in _TAIL_ORDER else len(_TAIL_ORDER)
    return (int(head[4:]), 3, 0, g, name_rank(parts[-1]), rest)


def _first_bad(a, b, rtol, atol):
    """(flat index, tol) of the first entry where a and b differ, or (None, tol).

    Booleans and integers must be equal. Floats: |a - b| <= atol + rtol * scale with
    scale = the largest finite |value| of the tensor in either trace; NaN matches NaN
    and infinities match themselves.
    """
    a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    exact = lambda d: d.kind in "biu"
    if exact(a.dtype) and exact(b.dtype):
        bad = a != b
        tol = 0.0
    else:
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        fin = np.concatenate([np.abs(a64[np.isfinite(a64)]), np.abs(b64[np.isfinite(b64)])])
        tol = float(atol + rtol * (fin.max() if fin.size else 0.0))
        with np.errstate(invalid="ignore"):
            same = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
            bad = ~same & ~(np.abs(a64 - b64) <= tol)
    hit = np.flatnonzero(bad)
    return (int(hit[0]) if hit.size else None), tol


def default_rtol(meta_a, meta_b):
    """1e-9 when both traces are float64, else 1e-4 (a float32 step is ~10 roundings deep).

    Parameters
    ----------
    meta_a, meta_b : dict
        The two traces' meta entries (their ``dtype``).

    Returns
    -------
    float
        The relative tolerance ``compare_traces`` uses when none is given.
    """
    return 1e-9 if meta_a.get("dtype") == meta_b.get("dtype") == "float64" else 1e-4


def compare_traces(a, b, rtol=None, atol=0.0):
    """The first divergence between traces ``a`` (mine) and ``b`` (theirs), or None.

    Entries present in both are compared in step order, then in the order of
    operations of a step (x, y; per Monte Carlo pass u, w, mask, out, loss, grad,
    scale; the optimizer state fields; bn; eval_w), then in parameter order.
    Entry i of a tensor diverges when ``|a_i - b_i| > atol + rtol * scale``, scale =
    the largest finite magnitude in that tensor in either trace; booleans and
    integers must be equal.

    Parameters
    ----------
    a, b : str or PathLike, or a ``(meta, arrays)`` pair from ``load_trace``
    rtol : float >= 0, optional
        Default ``default_rtol``: 1e-9 for two float64 traces, else 1e-4.
    atol : float >= 0

    Returns
    -------
    Divergence or None
    """
    (ma, xa), (mb, xb) = as_trace(a), as_trace(b)
    rtol = default_rtol(ma, mb) if rtol is None else float(check_range("rtol", rtol, 0))
    atol = float(check_range("atol", atol, 0))
    keys = [k for k in xa if k in xb and _sort_key(k, ma) is not None]
    for k in sorted(keys, key=lambda k: _sort_key(k, ma)):
        t = int(k.partition("/")[0][4:])
        tensor = k.partition("/")[2]
        va, vb = xa[k], xb[k]
        if va.shape != vb.shape:
            return Divergence(t, tensor, None, tuple(va.shape), tuple(vb.shape), 0.0, "shape")
        i, tol = _first_bad(va, vb, rtol, atol)
        if i is not None:
            return Divergence(t, tensor, i, va.reshape(-1)[i].item(), vb.reshape(-1)[i].item(),
                              tol, "value")
    return None


def key_differences(a, b):
    """``(only_in_a, only_in_b)``: sorted keys that one trace has and the other lacks.

    Parameters
    ----------
    a, b : str or PathLike, or a ``(meta, arrays)`` pair from ``load_trace``
        The two traces.

    Returns
    -------
    only_in_a, only_in_b : list of str
        Keys (``meta`` excluded) held by one trace only; ``compare_traces`` skips them.
    """
    (_, xa), (_, xb) = as_trace(a), as_trace(b)
    return sorted(set(xa) - set(xb)), sorted(set(xb) - set(xa))


# -- command line (wired into refbinn/cli.py) -----------------------------------------------------
def cli_hparams(text, samples):
    """The ``hparams`` of ``refbinn trace --hparams TEXT --samples S``: TEXT's JSON object,
    with ``samples`` = S when S is given.

    Parameters
    ----------
    text : str or None
        A JSON object of optimizer constructor arguments, e.g. '{"tau": 0.7}'.
    samples : int or None
        BayesBiNN's S; ValueError when TEXT gives another value for it.

    Returns
    -------
    dict or None
        None when neither is given.
    """
    hp = None
    if text is not None:
        try:
            hp = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"--hparams must be a JSON object, e.g. '{{\"tau\": 0.7}}': {e}") from None
        if not isinstance(hp, dict):
            raise ValueError(f"--hparams must be a JSON object, got a {type(hp).__name__}: {text!r}")
    if samples is not None:
        hp = dict(hp or {})
        if hp.setdefault("samples", samples) != samples:
            raise ValueError(f"--samples {samples} and --hparams samples {hp['samples']!r} disagree")
    return hp


def cli_trace(args):
    """``refbinn trace``: args.model, args.optimizer, args.steps, args.out, args.seed, args.dtype,
    args.samples, args.hparams.

    ``write_trace`` with those settings, then one line naming the file and its size.

    Parameters
    ----------
    args : argparse.Namespace
        ``model`` (a key of ``MODELS``), ``optimizer`` (a key of ``OPTIMIZERS``), ``steps``
        (K >= 1), ``out`` (the .npz to write), ``seed`` (int), ``dtype`` ('float64' or
        'float32'), ``samples`` (S or None) and ``hparams`` (a JSON object's text or None:
        ``cli_hparams``; the constructor checks the values).

    Returns
    -------
    int
        0, the exit status.
    """
    hparams = cli_hparams(getattr(args, "hparams", None), getattr(args, "samples", None))
    meta = write_trace(args.out, model_name=args.model, optimizer_name=args.optimizer,
                       steps=args.steps, seed=args.seed, dtype=args.dtype, hparams=hparams)
    size = os.path.getsize(args.out)
    print(f"wrote {args.out}: model {meta['model']}, optimizer {meta['optimizer']} "
          f"{json.dumps(meta['hparams'], default=_json_default)}, {meta['steps']} steps, "
          f"{meta['dtype']}, seed {meta['seed']}, {size / 2**20:.1f} MiB")
    return 0

