"""An optimizer and its state as one .npz, exactly (classes named by their registry keys)."""
from __future__ import annotations

import numpy as np

from ..errors import reads_file
from ..io import atomic_savez, tree_from_arrays, tree_to_arrays
from .registry import FILE_NAMES


def save_state(path, opt, state):
    """Save an optimizer (its hyperparameters) and its state as one .npz, atomically."""
    arrays = tree_to_arrays(opt, "optimizer", FILE_NAMES)
    arrays.update(tree_to_arrays(state, "state", FILE_NAMES))
    atomic_savez(path, arrays)


@reads_file("optimizer state file")
def load_state(path):
    """Return ``(opt, state)`` exactly as saved by ``save_state``."""
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    return (tree_from_arrays(data, "optimizer", FILE_NAMES, path),
            tree_from_arrays(data, "state", FILE_NAMES, path))
