"""Training checkpoints: optimizer, its state, BatchNorm state, Generator states, history; one .npz.

Classes are written as keys of ``refbinn.optim.registry.FILE_NAMES`` and looked up there on
loading; nothing a file names is imported or called.
"""
from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

from ..checks import check_int
from ..errors import reads_file
from ..io import (atomic_savez, generator_from_json, generator_state_json, json_dumps, tree_from_arrays,
                  tree_to_arrays)
from ..optim.base import Optimizer
from ..optim.registry import FILE_NAMES


def _json(name, value):
    try:
        json.dumps(value)                                  # a set, an array: refused, not converted
        return json_dumps(value)                           # strict: inf and NaN as null, as history.json
    except (TypeError, ValueError) as e:                   # a set, an array, a circular dict
        raise ValueError(f"save_checkpoint: {name} must be JSON-able, {e}") from None


def save_checkpoint(path, *, opt, opt_state, bn_state, rngs, epoch, history, config):
    """Write everything ``fit`` needs to resume exactly as one .npz, atomically.

    Entries: ``optimizer...`` and ``state...`` (as ``optim.files.save_state``), ``bn_state...``,
    ``rng/<name>`` (each Generator's state as JSON), ``epoch``, and ``history`` and
    ``config`` as strict JSON text (a non-finite float as null, as in ``history.json``; the
    history with its ``summary`` at that epoch).

    Parameters
    ----------
    path : str or PathLike
        The file to write (no suffix is added).
    opt : Optimizer
        The optimizer, saved as its registry key and ``config()``.
    opt_state : NamedTuple
        Its state after ``epoch`` epochs.
    bn_state : dict name -> ndarray
        BatchNorm running statistics.
    rngs : dict str -> numpy.random.Generator
        The loop's streams (``data``, ``noise``, ``drop``), saved with their full state.
    epoch : int >= 0
        Epochs completed.
    history : dict
        The JSON-able history so far (``fit``'s).
    config : dict
        The JSON-able run configuration (``TrainConfig`` as a dict, plus ``n_train``).

    Raises
    ------
    ValueError
        Naming the argument, before anything is written: ``opt`` not an Optimizer, ``bn_state``
        or ``rngs`` not a dict (of Generators), ``epoch`` not an integer >= 0, ``history`` or
        ``config`` not JSON-able.
    """
    if not isinstance(opt, Optimizer):                     # a file load_checkpoint could not use
        raise ValueError(f"save_checkpoint: opt must be an Optimizer, got {type(opt).__name__}")
    epoch = check_int("epoch", epoch)
    for name, d in (("bn_state", bn_state), ("rngs", rngs)):
        if not isinstance(d, Mapping):                    # a read-only view too, as before this check
            raise ValueError(f"save_checkpoint: {name} must be a dict, got {type(d).__name__}")
    if not all(isinstance(k, str) for k in rngs):
        raise ValueError(f"save_checkpoint: rngs must have str keys, got {sorted(map(repr, rngs))}")
    texts = {"history": _json("history", history), "config": _json("config", config)}
    arrays = tree_to_arrays(opt, "optimizer", FILE_NAMES)
    arrays.update(tree_to_arrays(opt_state, "state", FILE_NAMES))
    arrays.update(tree_to_arrays(dict(bn_state), "bn_state", FILE_NAMES))
    arrays.update({f"rng/{k}": np.array(generator_state_json(g)) for k, g in rngs.items()})
    arrays["epoch"] = np.array(epoch)
    arrays.update({k: np.array(v) for k, v in texts.items()})
    atomic_savez(path, arrays)


@reads_file("checkpoint")
def load_checkpoint(path):
    """Return a dict with opt, opt_state, bn_state, rngs, epoch, history, config.

    Parameters
    ----------
    path : str or PathLike
        A file ``save_checkpoint`` wrote.

    Returns
    -------
    dict
        The keyword arguments of ``save_checkpoint``, rebuilt exactly: the optimizer from
        its config, the Generators at their saved state, ``epoch`` an int, ``history`` and
        ``config`` parsed from JSON. A damaged file raises ``refbinn.errors.FileFormatError``
        naming it; classes are looked up in ``registry.FILE_NAMES``, nothing is imported.
    """
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    return {
        "opt": tree_from_arrays(data, "optimizer", FILE_NAMES, path),
        "opt_state": tree_from_arrays(data, "state", FILE_NAMES, path),
        "bn_state": tree_from_arrays(data, "bn_state", FILE_NAMES, path),
        "rngs": {k[4:]: generator_from_json(str(v), path) for k, v in data.items() if k.startswith("rng/")},
        "epoch": check_int("epoch", data["epoch"][()]),     # 1.5 is damage, not epoch 1
        "history": json.loads(str(data["history"])),
        "config": json.loads(str(data["config"])),
    }
