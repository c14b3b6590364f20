"""May a command write this file? Not a folder, not one of its inputs, not a training checkpoint::

    check_output_file(path, name, inputs=())   ValueError naming ``name`` (the option) and why
    same_file(a, b)                            the same file, existing or not (resolved paths)
    is_training_checkpoint(path)               an .npz holding 'epoch' and 'config'

A leaf (NumPy only), like the rest of ``refbinn.io``.
"""
from __future__ import annotations

import os

import numpy as np


def same_file(a, b):
    """True if paths ``a`` and ``b`` name the same file (existing or not).

    Parameters
    ----------
    a, b : str or PathLike

    Returns
    -------
    bool
        ``os.path.samefile`` when both exist, else equal resolved paths.
    """
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def is_training_checkpoint(path):
    """True if ``path`` is an .npz with the entries of a training checkpoint (epoch, config).

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    bool
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            return {"epoch", "config"} <= set(z.files)
    except Exception:                       # not an npz at all: not a checkpoint either
        return False


def check_output_file(path, name, inputs=()):
    """ValueError unless ``path`` may be written: not a folder, not an input, not a checkpoint.

    Parameters
    ----------
    path : str or PathLike
        The file a command is about to write.
    name : str
        What the user calls it (an option such as ``--out``), for the message.
    inputs : sequence of str or PathLike
        The files the command reads.
    """
    if os.path.isdir(path):
        raise ValueError(f"{name} {path} is a folder; give the file to write")
    for src in inputs:
        if same_file(path, src):
            raise ValueError(f"{name} {path} is the input {src}; refbinn does not write onto its inputs")
    if os.path.isfile(path) and is_training_checkpoint(path):
        raise ValueError(f"{name} {path} is a training checkpoint; it would be overwritten: "
                         "choose another file name")
