"""An optimizer and its state as one .npz, exactly (classes named by their registry keys)."""
from __future__ import annotations

import numpy as np

from ..errors import reads_file
from ..io import atomic_savez, tree_from_arrays, tree_to_arrays
from .base import Optimizer
from .registry import FILE_NAMES


def save_state(path, opt, state):
    """Save an optimizer (its hyperparameters) and its state as one .npz, atomically.

    Entries ``optimizer...`` hold ``opt.config()`` and its class's key in
    ``registry.FILE_NAMES``; entries ``state...`` hold the state NamedTuple.

    Parameters
    ----------
    path : str or PathLike
        The file to write (no suffix is added).
    opt : Optimizer
        An optimizer of ``registry.FILE_NAMES`` (a Partition with its two optimizers too).
    state : NamedTuple
        Its state (``opt.init`` or ``opt.update``).

    Raises
    ------
    ValueError
        If ``opt`` is not an Optimizer or ``state`` is not of its state type (``opt.params``
        refuses it); nothing is written then.
    """
    if not isinstance(opt, Optimizer):
        raise ValueError(f"save_state: opt must be a refbinn Optimizer, got {type(opt).__name__}")
    opt.params(state)                          # ValueError for another optimizer's state, or None
    arrays = tree_to_arrays(opt, "optimizer", FILE_NAMES)
    arrays.update(tree_to_arrays(state, "state", FILE_NAMES))
    atomic_savez(path, arrays)


@reads_file("refbinn optimizer state")
def load_state(path):
    """Return ``(opt, state)`` exactly as saved by ``save_state``.

    Parameters
    ----------
    path : str or PathLike
        A file ``save_state`` wrote.

    Returns
    -------
    (Optimizer, NamedTuple)
        The optimizer rebuilt from its config, and the state with its arrays' dtypes.
        A damaged file or a class name not in ``registry.FILE_NAMES`` raises
        ``refbinn.errors.FileFormatError`` naming the file; nothing it names is imported.
    """
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    return (tree_from_arrays(data, "optimizer", FILE_NAMES, path),
            tree_from_arrays(data, "state", FILE_NAMES, path))
