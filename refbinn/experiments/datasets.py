"""The data sets by name (the registry the CLI and the experiments use) and their loading.

    DATASETS[name](D, name, root, rng) -> (x, y, x_test, y_test, augment) for image sets,
                                          (Data, extra) for the toy sets
    load_data(name, root, split=, seed=, max_train=) -> (Data, extra), with a seeded
                                          train/validation split of the image sets
"""
from __future__ import annotations

import functools

import numpy as np

from ..checks import check_choice, check_int
from ..train import Data


def _mnist(D, dataset, root, rng):
    ds = D.load_mnist(root, kind=dataset)
    x = D.normalize(ds.x_train, dataset).reshape(len(ds.x_train), -1)          # (N, 784)
    xt = D.normalize(ds.x_test, dataset).reshape(len(ds.x_test), -1)
    return x, ds.y_train.astype(np.int64), xt, ds.y_test.astype(np.int64), None


def _cifar(D, dataset, root, rng):
    ds = D.load_cifar(root, kind=dataset)
    x, xt = D.normalize(ds.x_train, dataset), D.normalize(ds.x_test, dataset)  # (N, 3, 32, 32)
    # pad with black (as torchvision pads the raw image), i.e. its normalised value
    augment = functools.partial(D.augment_cifar, fill=D.normalized_black(dataset))
    return x, ds.y_train.astype(np.int64), xt, ds.y_test.astype(np.int64), augment


def _two_moons(D, dataset, root, rng):
    x, y = D.two_moons(200, noise=0.1, rng=rng)
    xt, yt = D.two_moons(50, noise=0.1, rng=rng)
    mean, std = x.mean(0), x.std(0)
    x, xt = ((x - mean) / std).astype(np.float32), ((xt - mean) / std).astype(np.float32)
    return Data(x, y.astype(np.int64), None, None, xt, yt.astype(np.int64)), {"mean": mean, "std": std}


def _snelson(D, dataset, root, rng):
    sn = D.load_snelson(root)
    return Data(sn.x.astype(np.float32), sn.y.astype(np.float32)), sn


# the data sets by name: image sets return arrays (split and cut here), toy sets a ready Data
DATASETS = {"mnist": _mnist, "fashion-mnist": _mnist, "cifar10": _cifar, "cifar100": _cifar,
            "two-moons": _two_moons, "snelson": _snelson}
IMAGE_DATASETS = ("mnist", "fashion-mnist", "cifar10", "cifar100")


def load_data(dataset, root=None, *, split=0.1, seed=0, max_train=None):
    """Normalised arrays for ``dataset`` (a key of ``DATASETS``) with a seeded train/validation split.

    Image sets are normalised per channel (MNIST-like sets flattened to (N, 784), CIFAR kept
    as (N, 3, 32, 32) with random-crop/flip augmentation); the toy sets come as they are.

    Parameters
    ----------
    dataset : {'mnist', 'fashion-mnist', 'cifar10', 'cifar100', 'two-moons', 'snelson'}
        The data set.
    root : str or path, optional
        The data folder; None: ``$REFBINN_DATA``, then the per-user cache (Snelson also
        ships inside the package).
    split : float
        The fraction of the training images held out for validation, in [0, 1); image
        sets only. Default 0.1.
    seed : int
        Seeds the train/validation split (and draws the two-moons points), >= 0.
    max_train : int, optional
        Keep only the first ``max_train`` >= 0 training images before the split (image sets);
        None or 0 keeps all.

    Returns
    -------
    data : refbinn.train.Data
        Training, validation and test arrays (validation None for the toy sets, and where
        the split holds no image: ``split`` 0).
    extra : dict or None
        None for the image sets; the two-moons standardisation (``mean``, ``std``) or the
        Snelson data object (for its grid and standardisation).
    """
    from .. import data as D
    seed = check_int("seed", seed, 0)
    if max_train is not None:
        max_train = check_int("max_train", max_train, 0)
    rng = np.random.default_rng(seed)
    loaded = DATASETS[check_choice("dataset", dataset, tuple(DATASETS))](D, dataset, root, rng)
    if dataset not in IMAGE_DATASETS:
        return loaded
    x, y, xt, yt, augment = loaded
    if max_train:
        x, y = x[:max_train], y[:max_train]
    (xtr, ytr), (xva, yva) = D.train_val_split(x, y, val_fraction=split, seed=seed)
    if len(xva) == 0:                             # split 0 (or too few images): no validation split
        xva = yva = None
    return Data(xtr, ytr, xva, yva, xt, yt, augment=augment), None


