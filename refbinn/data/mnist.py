"""MNIST and Fashion-MNIST from the four standard IDX files.

Layout: ``<root>/mnist/`` or ``<root>/fashion-mnist/`` holding
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each gzipped (``.gz``
suffix) or raw.
"""
from __future__ import annotations

import numpy as np

from .dataset import ImageData
from .errors import DataFormatError, DatasetNotFound
from .idx import read_idx
from .root import ENV_VAR, find_dataset

KINDS = ("mnist", "fashion-mnist")
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
N_CLASSES = 10


def _idx_path(folder, stem, kind):
    """The gzipped file if present, else the raw one."""
    tried = [folder / f"{stem}.gz", folder / stem]
    for path in tried:
        if path.is_file():
            return path
    raise DatasetNotFound(kind, tried, f"The folder {folder} is incomplete: run "
                                       f"`refbinn download {kind}`, or set {ENV_VAR}.")


def _load_split(folder, split, kind):
    img_path, lbl_path = (_idx_path(folder, stem, kind) for stem in FILES[split])
    x, y = read_idx(img_path), read_idx(lbl_path)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise DataFormatError(f"{img_path}: expected uint8 images of shape (N, H, W), "
                              f"got {x.dtype} {x.shape}")
    if y.ndim != 1 or y.dtype != np.uint8:
        raise DataFormatError(f"{lbl_path}: expected uint8 labels of shape (N,), got {y.dtype} {y.shape}")
    if len(x) != len(y):
        raise DataFormatError(f"{kind} {split}: {len(x)} images in {img_path.name} but "
                              f"{len(y)} labels in {lbl_path.name} (folder {folder})")
    if y.size and y.max() >= N_CLASSES:
        raise DataFormatError(f"{lbl_path}: labels must be in [0, {N_CLASSES}), found {y.max()}")
    return x, y.astype(np.int64)


def load_mnist(root=None, kind="mnist"):
    """Load MNIST or Fashion-MNIST.

    Parameters
    ----------
    root : str or path-like, optional
        Data root; default: searched as in ``refbinn.data.root``.
    kind : {"mnist", "fashion-mnist"}

    Returns
    -------
    ImageData
        x_train (60000, 28, 28) uint8, y_train (60000,) int64, x_test (10000, 28, 28)
        uint8, y_test (10000,) int64, and the folder read.

    Raises
    ------
    DatasetNotFound
        No root holds the folder, or a file is missing.
    DataFormatError
        A malformed file, or image and label counts that differ.
    """
    if kind not in KINDS:
        raise ValueError(f"load_mnist: kind must be one of {KINDS}, got {kind!r}")
    folder = find_dataset(kind, root)
    x_train, y_train = _load_split(folder, "train", kind)
    x_test, y_test = _load_split(folder, "test", kind)
    return ImageData(x_train, y_train, x_test, y_test, folder)
