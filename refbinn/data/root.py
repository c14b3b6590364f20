"""Where data sets live: the search order for data roots and the folder of each set.

A data root is a folder holding one sub-folder per data set::

    <root>/mnist/               train-images-idx3-ubyte[.gz], ... (IDX files)
    <root>/fashion-mnist/       same four names
    <root>/cifar-10-batches-py/ data_batch_1..5, test_batch (official python pickles)
    <root>/cifar-100-python/    train, test
    <root>/snelson/             snelson1d.npz (optional: refbinn ships a copy)

The CIFAR folders carry the names inside the official archives, so extracting
``cifar-10-python.tar.gz`` into a root gives this layout.

Roots are searched in this order:

1. an explicit ``root`` argument: then it is the only place searched (a typo in
   an explicit path must not silently fall back to other data);
2. the ``REFBINN_DATA`` environment variable;
3. the per-user cache, ``$XDG_CACHE_HOME/refbinn`` or ``~/.cache/refbinn``
   (where ``refbinn download`` writes when neither of the above is given).
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import DatasetNotFound
from .packaged import packaged_file

ENV_VAR = "REFBINN_DATA"

# name -> (folder under the root, how to get it)
DATASETS = {
    "mnist": ("mnist", "run `refbinn download mnist`"),
    "fashion-mnist": ("fashion-mnist", "run `refbinn download fashion-mnist`"),
    "cifar10": ("cifar-10-batches-py", "run `refbinn download cifar10`"),
    "cifar100": ("cifar-100-python", "run `refbinn download cifar100`"),
    "snelson": ("snelson", "run `refbinn download snelson`; refbinn also ships a copy, "
                           "which the loader reads when no root has one"),
}


def cache_root():
    """The per-user cache root: ``$XDG_CACHE_HOME/refbinn``, else ``~/.cache/refbinn``.

    XDG says a relative XDG_CACHE_HOME is invalid and must be ignored.

    Returns
    -------
    pathlib.Path
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "refbinn"


def _absolute(path):
    """Absolute, with ~ expanded and '..' collapsed, so messages show a plain path."""
    return Path(os.path.abspath(os.path.expanduser(path)))


def candidate_roots(root=None):
    """Data roots to search, in order, each with the reason it is on the list.

    Parameters
    ----------
    root : str or path-like, optional
        An explicit root; when given it is the only candidate.

    Returns
    -------
    list of (pathlib.Path, str)
    """
    if root is not None:
        if not isinstance(root, (str, os.PathLike)) or not os.fspath(root):   # '' would be the cwd
            raise ValueError(f"root must be a folder path (str or os.PathLike), got {root!r}")
        return [(_absolute(root), "root argument")]
    roots = []
    env = os.environ.get(ENV_VAR, "")
    if env:
        roots.append((_absolute(env), f"{ENV_VAR} environment variable"))
    roots.append((cache_root(), "per-user cache"))
    return roots


def default_root(root=None):
    """The root ``refbinn download`` writes to: the first candidate root.

    Parameters
    ----------
    root : str or path-like, optional
        An explicit root, returned as an absolute path.

    Returns
    -------
    pathlib.Path
    """
    return candidate_roots(root)[0][0]


def _check_name(name):
    if name not in DATASETS:
        raise ValueError(f"data set name must be one of {sorted(DATASETS)}, got {name!r}")


def find_dataset(name, root=None):
    """The folder of data set ``name`` in the first candidate root that has it.

    Parameters
    ----------
    name : str
        One of ``DATASETS``.
    root : str or path-like, optional
        An explicit data root (searched alone).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    DatasetNotFound
        Listing every folder looked at and how to get the data.
    """
    _check_name(name)
    folder, how = DATASETS[name]
    searched = [r / folder for r, _ in candidate_roots(root)]
    for path in searched:
        if path.is_dir():
            return path
    raise DatasetNotFound(name, searched, f"To get it: {how}, or set {ENV_VAR} to a "
                                          f"folder that holds {folder}/.")


def describe_data(root=None):
    """A few lines saying which roots are searched and where each data set was found.

    This is what ``refbinn`` prints to tell where its data came from.

    Parameters
    ----------
    root : str or path-like, optional
        An explicit data root, as the loaders take it.

    Returns
    -------
    str
    """
    lines = ["data roots, searched in order:"]
    for i, (r, why) in enumerate(candidate_roots(root), 1):
        lines.append(f"  {i}. {r}  ({why}{'' if r.is_dir() else '; does not exist'})")
    lines.append("data sets:")
    for name, (_, how) in DATASETS.items():
        try:
            where = str(find_dataset(name, root))
        except DatasetNotFound:
            packaged = packaged_file(name)
            where = f"packaged copy, {packaged}" if packaged else f"not found ({how})"
        lines.append(f"  {name:<14} {where}")
    return "\n".join(lines)
