"""CIFAR-10 and CIFAR-100 from the official python pickle batches, and a fake writer.

Each batch file is a pickled dict (Python 2 era, so read with ``encoding="bytes"``)::

    b"data"         uint8 ndarray (N, 3072): 1024 red, 1024 green, 1024 blue
                    values per row, each plane row-major 32x32
    b"labels"       list of N ints in [0, 10)          (CIFAR-10)
    b"fine_labels"  list of N ints in [0, 100)         (CIFAR-100; also b"coarse_labels")

so ``data.reshape(N, 3, 32, 32)`` is already NCHW.

Pickles can run arbitrary code when loaded, so they are read with an unpickler
that only resolves the few globals a NumPy array needs; anything else is refused.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .dataset import ImageData
from .errors import DataFormatError, DatasetNotFound
from .root import DATASETS, ENV_VAR, find_dataset

# kind -> layout of the official archive's folder
LAYOUT = {
    "cifar10": dict(train=tuple(f"data_batch_{i}" for i in range(1, 6)), test=("test_batch",),
                    meta="batches.meta", label_key=b"labels", n_classes=10),
    "cifar100": dict(train=("train",), test=("test",), meta="meta",
                     label_key=b"fine_labels", n_classes=100),
}
# The only globals an unpickled batch may reference: an ndarray and its dtype.
# Python 3 pickles of bytes at protocol <= 2 also call _codecs.encode.
_SAFE_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype"),
                 ("numpy.core.multiarray", "_reconstruct"),
                 ("numpy._core.multiarray", "_reconstruct"),
                 ("_codecs", "encode")}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}: a CIFAR batch "
                                         f"holds only a dict, lists and NumPy arrays")
        return super().find_class(module, name)


def read_batch(path, label_key, n_classes):
    """Read one CIFAR batch file.

    Parameters
    ----------
    path : path-like
    label_key : bytes
        ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` (CIFAR-100).
    n_classes : int

    Returns
    -------
    x : ndarray, uint8, (N, 3, 32, 32)
    y : ndarray, int64, (N,)

    Raises
    ------
    DataFormatError
        Not a readable pickle, a refused global, or a structure other than the above.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            batch = _SafeUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            LookupError) as e:                                      # LookupError: an unknown codec too
        raise DataFormatError(f"{path}: not a readable CIFAR pickle: {e}") from e
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataFormatError(f"{path}: expected a dict with keys b'data' and {label_key!r}, got {keys}")
    data, labels = batch[b"data"], batch[label_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataFormatError(f"{path}: b'data' must be a uint8 array of shape (N, 3072), got {what}")
    try:
        raw = np.asarray(labels).reshape(-1)
        if raw.size and raw.dtype.kind not in "iu":                 # 1.7 would become class 1
            raise TypeError(f"got {raw.dtype} values such as {raw[0]!r}")
        y = raw.astype(np.int64)
    except (TypeError, ValueError, OverflowError) as e:
        raise DataFormatError(f"{path}: {label_key!r} must be a list of ints: {e}") from e
    if len(y) != len(data):
        raise DataFormatError(f"{path}: {len(data)} images but {len(y)} labels under {label_key!r}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise DataFormatError(f"{path}: labels must be in [0, {n_classes}), "
                              f"found {y.min()}..{y.max()}")
    return data.reshape(-1, 3, 32, 32), y                       # (N, C, H, W)


def _check_kind(kind):
    if not isinstance(kind, str) or kind not in LAYOUT:      # a list is unhashable
        raise ValueError(f"kind must be one of {tuple(LAYOUT)}, got {kind!r}")


def load_cifar(root=None, kind="cifar10"):
    """Load CIFAR-10 or CIFAR-100 (fine labels), images NCHW.

    Parameters
    ----------
    root : str or path-like, optional
        Data root; default: searched as in ``refbinn.data.root``.
    kind : {"cifar10", "cifar100"}

    Returns
    -------
    ImageData
        x_train (50000, 3, 32, 32) uint8, y_train (50000,) int64,
        x_test (10000, 3, 32, 32) uint8, y_test (10000,) int64, and the folder.
    """
    _check_kind(kind)
    folder, lay = find_dataset(kind, root), LAYOUT[kind]
    missing = [folder / f for f in lay["train"] + lay["test"] if not (folder / f).is_file()]
    if missing:
        raise DatasetNotFound(kind, missing, f"The folder {folder} is incomplete: run "
                                             f"`refbinn download {kind}`, or set {ENV_VAR}.")
    parts = {}
    for split in ("train", "test"):
        xs, ys = zip(*(read_batch(folder / f, lay["label_key"], lay["n_classes"])
                       for f in lay[split]))
        parts[split] = np.concatenate(xs), np.concatenate(ys)
    return ImageData(*parts["train"], *parts["test"], folder)


def _fake_batch(rng, n, n_classes, label_key, batch_label):
    """n images whose colour depends on the class (so a model can learn), as a batch dict."""
    y = rng.integers(0, n_classes, n)
    colours = np.random.default_rng(n_classes).integers(40, 216, (n_classes, 3))
    noise = rng.normal(0.0, 30.0, (n, 3, 32 * 32))
    data = np.clip(colours[y][:, :, None] + noise, 0, 255).astype(np.uint8).reshape(n, 3072)
    batch = {b"batch_label": batch_label.encode(), label_key: [int(v) for v in y], b"data": data,
             b"filenames": [f"fake_{i:06d}.png".encode() for i in range(n)]}
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = [int(v) // 5 for v in y]
    return batch


def write_fake_cifar(root, kind="cifar10", n_train=500, n_test=100, seed=0):
    """Write a small random data set in the official CIFAR pickle layout.

    CIFAR-10 gets ``data_batch_1..5`` (the training images split as evenly as
    possible), ``test_batch`` and ``batches.meta``; CIFAR-100 gets ``train``,
    ``test`` and ``meta``. ``load_cifar(root, kind)`` then reads it back.

    Parameters
    ----------
    root : str or path-like
        Data root; the folder ``<root>/cifar-10-batches-py`` (or
        ``cifar-100-python``) is created.
    kind : {"cifar10", "cifar100"}
    n_train, n_test : int
        Number of images, >= 1.
    seed : int
        Seed of the images and labels.

    Returns
    -------
    pathlib.Path
        The data set's folder.
    """
    _check_kind(kind)
    if int(n_train) < 1 or int(n_test) < 1:
        raise ValueError(f"write_fake_cifar: n_train and n_test must be >= 1, got {n_train}, {n_test}")
    lay, rng = LAYOUT[kind], np.random.default_rng(seed)
    folder = Path(root) / DATASETS[kind][0]
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"train": np.array_split(np.arange(int(n_train)), len(lay["train"])),
             "test": [np.arange(int(n_test))]}
    for split in ("train", "test"):
        for name, idx in zip(lay[split], sizes[split]):
            batch = _fake_batch(rng, len(idx), lay["n_classes"], lay["label_key"],
                                f"fake {kind} {name}")
            with open(folder / name, "wb") as f:
                pickle.dump(batch, f, protocol=2)  # protocol 2: readable by Python 2, like the originals
    names = [f"class_{i}".encode() for i in range(lay["n_classes"])]
    meta = ({b"label_names": names} if kind == "cifar10" else
            {b"fine_label_names": names, b"coarse_label_names": [f"super_{i}".encode() for i in range(20)]})
    with open(folder / lay["meta"], "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return folder
