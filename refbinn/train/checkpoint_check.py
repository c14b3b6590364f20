"""Is a loaded checkpoint whole, does it fit its model, and may a run resume from it? ::

    check_meta(path, config, datasets)       config['meta'] names a known data set and model (and seed)
    model_of(path, config)                   that model, built
    check_state(path, ck, model)             optimizer and BatchNorm state fit ``model``
    check_resume(path, ck, config, model)    the above for ``fit(resume=True)``, and the run's
                                             config equals the checkpoint's

``load_checkpoint`` turns an unreadable file into a FileFormatError; these catch a readable
file whose contents are wrong. The optimizer state is compared entry by entry with a fresh
``opt.init`` of the model's parameters: the same NamedTuple types, dict keys, list lengths,
array shapes and dtype kinds, and every float finite. Every error is a FileFormatError naming
the file and the entry, except a config that differs from the run's (a ValueError: the file is
fine, the command line is not).
"""
from __future__ import annotations

import json
import math

import numpy as np

from ..errors import FileFormatError
from ..models import MODELS, build_model
from ..optim.base import Optimizer

# config entries that change nothing a run computes or records (how often the files are
# written: a resumed run may change it, see refbinn.experiments.guard)
IGNORED = ("quiet", "checkpoint_every")
# entries older checkpoints lack: not compared when absent
RECENT = ("meta.max_train", "recalibrate_bn", "diagnostics", "diagnostics_every")


def _bad(path, msg):
    return FileFormatError(f"{path}: {msg}")


def check_meta(path, config, datasets, seed=False):
    """FileFormatError unless config['meta'] names a data set in ``datasets`` and a model in MODELS
    (and, with ``seed``, config['seed'] is an integer >= 0).

    Parameters
    ----------
    path : str or PathLike
        The checkpoint, for the message.
    config : object
        Its ``config`` entry (a dict when whole).
    datasets : tuple of str
        The known data sets (``refbinn.experiments.DATASETS``).
    seed : bool
        Also require ``config['seed']``.
    """
    meta = config.get("meta") if isinstance(config, dict) else None
    if not isinstance(meta, dict):
        raise _bad(path, "config has no 'meta' (data set and model); not a checkpoint of 'refbinn train'")
    if meta.get("dataset") not in datasets:
        raise _bad(path, f"config names data set {meta.get('dataset')!r}, not one of {', '.join(datasets)}")
    spec = meta.get("model")
    if not (isinstance(spec, list) and len(spec) == 2 and isinstance(spec[0], str) and spec[0] in MODELS
            and isinstance(spec[1], dict)):                 # a str first: a list is unhashable
        raise _bad(path, f"config names model {spec!r}; expected [name, kwargs] with name one of "
                         f"{', '.join(MODELS)}")
    value = config.get("seed")
    if seed and not (type(value) is int and value >= 0):           # not a bool (True is an int)
        raise _bad(path, f"config has seed {value!r}; expected an integer >= 0")


def model_of(path, config):
    """The model ``config['meta']['model']`` names (after ``check_meta``); FileFormatError if its
    arguments do not build one.

    Parameters
    ----------
    path : str or PathLike
        The checkpoint, for the message.
    config : dict
        Its ``config`` entry.

    Returns
    -------
    Sequential
    """
    name, kw = config["meta"]["model"]
    try:
        return build_model(name, kw, where=str(path))
    except (TypeError, ValueError) as e:
        raise _bad(path, f"its model {name}(**{kw!r:.80}) cannot be built: {e}") from e


def _same(path, where, got, want):
    """FileFormatError at the first place where ``got`` (from the file) differs in kind from ``want``."""
    if isinstance(want, tuple) and hasattr(want, "_fields"):
        if type(got) is not type(want):
            raise _bad(path, f"'{where}' is a {type(got).__name__}, expected a {type(want).__name__}")
        for f in want._fields:
            _same(path, f"{where}/{f}", getattr(got, f), getattr(want, f))
    elif isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            keys = sorted(got) if isinstance(got, dict) else type(got).__name__
            raise _bad(path, f"'{where}' holds {keys}, expected {sorted(want)}")
        for k in want:
            _same(path, f"{where}/{k}", got[k], want[k])
    elif isinstance(want, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(want):
            raise _bad(path, f"'{where}' is {got!r:.60}, expected {len(want)} entries")
        for i, (g, w) in enumerate(zip(got, want)):
            _same(path, f"{where}/{i}", g, w)
    elif isinstance(want, np.ndarray):
        if not isinstance(got, np.ndarray) or got.shape != want.shape or got.dtype.kind != want.dtype.kind:
            what = f"{got.dtype} {got.shape}" if isinstance(got, np.ndarray) else type(got).__name__
            raise _bad(path, f"'{where}' is {what}, expected {want.dtype} {want.shape}")
        if got.dtype.kind == "f" and not np.all(np.isfinite(got)):
            raise _bad(path, f"'{where}' holds NaN or inf")
    elif isinstance(want, (int, float, np.number)) and not isinstance(want, bool):
        if isinstance(got, bool) or not isinstance(got, (int, float, np.number)) or not math.isfinite(got):
            raise _bad(path, f"'{where}' is {got!r:.60}, expected a finite number")
    elif type(got) is not type(want):
        raise _bad(path, f"'{where}' is a {type(got).__name__}, expected a {type(want).__name__}")


def _first_float_dtype(tree):
    """The dtype of the first float array in a state (float32 if none)."""
    items = tree.values() if isinstance(tree, dict) else (tree if isinstance(tree, (list, tuple)) else [tree])
    for v in items:
        if isinstance(v, np.ndarray) and v.dtype in (np.float32, np.float64):
            return v.dtype
        if isinstance(v, (dict, list, tuple)):
            d = _first_float_dtype(v)
            if d is not None:
                return d
    return None


def check_state(path, ck, model):
    """FileFormatError unless ``ck['opt_state']`` and ``ck['bn_state']`` fit ``model`` (see module docstring).

    Parameters
    ----------
    path : str or PathLike
        The checkpoint, for the message.
    ck : dict
        What ``load_checkpoint`` returned.
    model : Sequential
        The model the checkpoint names.
    """
    if not isinstance(ck["opt"], Optimizer):
        raise _bad(path, f"'optimizer' is a {type(ck['opt']).__name__}, expected an optimizer")
    rng = np.random.default_rng(0)
    try:
        params, bn = model.init(rng, _first_float_dtype(ck["opt_state"]) or np.float32)
        ref = ck["opt"].init(params, rng)
    except (ValueError, TypeError, KeyError) as e:
        raise _bad(path, f"its optimizer {ck['opt']!r} does not fit the model: {e}") from e
    _same(path, "state", ck["opt_state"], ref)
    _same(path, "bn_state", ck["bn_state"], bn)


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:                    # an empty dict stays a value: {} is not None
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(saved, config):
    """['name value (checkpoint: value)', ...] for every entry of ``config`` that differs from ``saved``
    (compared as JSON, an entry one lacks counting as None; ``IGNORED`` entries skipped).

    Parameters
    ----------
    saved : dict
        A checkpoint's ``config``.
    config : dict
        The config of the run about to resume (JSON-able).

    Returns
    -------
    list of str
        Dotted entry names (``meta.settings.lr``) with both values; empty when equal.
    """
    a, b = _flat(saved), _flat(json.loads(json.dumps(config)))
    return [f"{k} {b.get(k)!r} (checkpoint: {a.get(k)!r})" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and k not in IGNORED and not (k in RECENT and k not in a)]


def check_resume(path, ck, config, model):
    """What ``fit(resume=True)`` needs from checkpoint ``ck``: the run's own ``config``, the three
    Generators, an epoch within the run and its history, and a state that fits ``model``.

    Parameters
    ----------
    path : str or PathLike
        The checkpoint, for the message.
    ck : dict
        What ``load_checkpoint`` returned.
    config : dict
        The config of the run about to resume.
    model : Sequential
    """
    diff = config_differences(ck["config"], config)
    if diff:
        raise ValueError(f"{path}: the run's settings differ from the checkpoint's, so it cannot resume: "
                         + ", ".join(diff))
    if set(ck["rngs"]) != {"data", "noise", "drop"}:
        raise _bad(path, f"holds random streams {sorted(ck['rngs'])}, expected ['data', 'drop', 'noise']")
    hist = ck["history"]
    if not (0 <= ck["epoch"] <= config["epochs"] and isinstance(hist, dict)
            and isinstance(hist.get("epochs"), list) and len(hist["epochs"]) == ck["epoch"]):
        raise _bad(path, f"epoch {ck['epoch']} does not fit the run ({config['epochs']} epochs) or its history")
    check_state(path, ck, model)
