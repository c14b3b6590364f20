"""Input normalisation, the train/validation split, CIFAR augmentation, minibatches.

Normalisation follows torchvision's ``ToTensor`` then ``Normalize`` in float32:
x = (u8 / 255 - mean) / std, with the constants of spec section 9. Augmentation
(pad 4, random 32x32 crop, horizontal flip) works on uint8 or normalised
batches; torchvision pads before normalising, so the padding is black (0 on
uint8, ``normalized_black(kind)`` on normalised images).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..checks import check_generator, check_int, check_range

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN, CIFAR100_STD = (0.507, 0.487, 0.441), (0.267, 0.256, 0.276)
# kind -> (mean, std). The spec gives no Fashion-MNIST constants; it reuses MNIST's
# so the same MLP pipeline runs on it unchanged.
STATS = {"mnist": (MNIST_MEAN, MNIST_STD), "fashion-mnist": (MNIST_MEAN, MNIST_STD),
         "cifar10": (CIFAR10_MEAN, CIFAR10_STD), "cifar100": (CIFAR100_MEAN, CIFAR100_STD)}


def normalize_with(x, mean, std):
    """x = (u / 255 - mean) / std, each step in float32 (u, 255, mean and std as float32: two
    roundings); per-channel constants act on axis 1 (NCHW).

    Parameters
    ----------
    x : ndarray, uint8, (N, ...) ; (N, C, H, W) when mean/std have C entries
    mean, std : float or sequence of C floats

    Returns
    -------
    ndarray, float32, same shape as x
    """
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise ValueError(f"normalize: x must be uint8 pixel values in [0, 255], got {x.dtype}")
    try:
        mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"normalize: mean and std must be real numbers, got {mean!r}, {std!r}") from None
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise ValueError(f"normalize: mean must be finite and std finite and > 0, got {mean}, {std}")
    if mean.ndim:
        if x.ndim < 2 or x.shape[1] != mean.size or std.shape != mean.shape:
            raise ValueError(f"normalize: per-channel mean/std of {mean.size} entries need "
                             f"x of shape (N, {mean.size}, ...), got {x.shape}")
        bshape = (1, mean.size) + (1,) * (x.ndim - 2)
        mean, std = mean.reshape(bshape), std.reshape(bshape)  # (1, C, 1, 1)
    return (x.astype(np.float32) / np.float32(255) - mean) / std


def normalize(x, kind):
    """x = (u / 255 - mean) / std in float32 with the constants of data set ``kind``.

    MNIST: mean 0.1307, std 0.3081; CIFAR-10/100: per channel (spec section 9).

    Parameters
    ----------
    x : ndarray, uint8; (N, 28, 28) or (N, 784) for MNIST, (N, 3, 32, 32) for CIFAR
    kind : {"mnist", "fashion-mnist", "cifar10", "cifar100"}

    Returns
    -------
    ndarray, float32, same shape as x
    """
    if not isinstance(kind, str) or kind not in STATS:
        raise ValueError(f"normalize: kind must be one of {tuple(STATS)}, got {kind!r}")
    return normalize_with(x, *STATS[kind])


def normalized_black(kind):
    """-mean / std: the value a black pixel (0) takes after ``normalize``.

    Pass it as ``fill`` to ``augment_cifar`` on normalised images so the padding
    equals torchvision's (which pads the raw image with black, then normalises).

    Parameters
    ----------
    kind : str
        A key of ``STATS`` ("cifar10", "cifar100", ...).

    Returns
    -------
    ndarray, float32, (C,)
    """
    return normalize(np.zeros((1, 3, 1, 1), np.uint8), kind)[0, :, 0, 0]   # (C,)


class Split(NamedTuple):
    """Training and validation parts: ``(x_train, y_train), (x_val, y_val) = split``.

    Attributes
    ----------
    train : (ndarray, ndarray)
        (x_train, y_train).
    val : (ndarray, ndarray)
        (x_val, y_val).
    """

    train: tuple
    val: tuple


def split_indices(n, val_fraction=0.1, *, seed):
    """Random disjoint train and validation indices, round(n * val_fraction) of them validation.

    p = default_rng(seed).permutation(n); validation = sorted(p[:round(n val_fraction)]),
    training = the sorted rest. ``refbinn train`` splits the first ``max_train`` images so,
    with the run's ``--seed`` (``experiments.load_data(..., seed=)``).

    Parameters
    ----------
    n : int
    val_fraction : float in [0, 1)
    seed : int or numpy.random.Generator

    Returns
    -------
    train_idx, val_idx : sorted int64 arrays whose union is range(n)
    """
    n = check_int("split_indices: n", n, 0)             # int(10.7) would drop a row silently
    check_range("val_fraction", val_fraction, 0, 1, hi_open=True)
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def train_val_split(x, y, val_fraction=0.1, *, seed):
    """Hold out a random ``val_fraction`` of (x, y) for validation (spec: 10%).

    Parameters
    ----------
    x : ndarray, (N, ...)
    y : ndarray, (N,)
    val_fraction : float in [0, 1)
    seed : int or numpy.random.Generator

    Returns
    -------
    Split
        ``((x_train, y_train), (x_val, y_val))``; MNIST: 54000 and 6000, CIFAR: 45000 and 5000.
    """
    x, y = np.asarray(x), np.asarray(y)                 # lists too (x[idx] needs an array)
    if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
        raise ValueError(f"train_val_split: x and y must be arrays of the same length, got shapes "
                         f"{x.shape}, {y.shape}")
    tr, va = split_indices(len(x), val_fraction, seed=seed)
    return Split((x[tr], y[tr]), (x[va], y[va]))


def crop_flip(x, dy, dx, flip, pad=4, fill=0):
    """out[i] = the (H, W) window at offset (dy[i], dx[i]) of x[i] padded by ``pad``,
    mirrored left-right where flip[i].

    The deterministic core of ``augment_cifar``: the batch is padded once and all
    crops are taken by one fancy-index gather, no per-image loop.

    Parameters
    ----------
    x : ndarray, (N, C, H, W)
    dy, dx : int arrays, (N,), values in [0, 2 * pad]
    flip : bool array, (N,)
    pad : int, >= 0
    fill : scalar or (C,) array, the padding value (per channel)

    Returns
    -------
    ndarray, (N, C, H, W), dtype of x
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"crop_flip: x must have shape (N, C, H, W), got {x.shape}")
    n, c, h, w = x.shape
    dy, dx, flip = np.asarray(dy), np.asarray(dx), np.asarray(flip, bool)
    if dy.shape != (n,) or dx.shape != (n,) or flip.shape != (n,):
        raise ValueError(f"crop_flip: dy, dx, flip must have shape ({n},), "
                         f"got {dy.shape}, {dx.shape}, {flip.shape}")
    pad = check_int("crop_flip: pad", pad, 0)
    if dy.dtype.kind not in "iu" or dx.dtype.kind not in "iu":
        raise ValueError(f"crop_flip: dy and dx must be integer offsets, got {dy.dtype}, {dx.dtype}")
    if (n and (min(dy.min(), dx.min()) < 0 or max(dy.max(), dx.max()) > 2 * pad)):
        raise ValueError(f"crop_flip: offsets dy, dx must be in [0, 2 * pad = {2 * pad}]")
    fill = np.asarray(fill, x.dtype)
    if fill.ndim and fill.shape != (c,):
        raise ValueError(f"crop_flip: fill must be a scalar or have shape ({c},), got {fill.shape}")
    padded = np.empty((n, c, h + 2 * pad, w + 2 * pad), x.dtype)  # (N, C, H + 2p, W + 2p)
    padded[...] = fill.reshape(-1, 1, 1)
    padded[:, :, pad:pad + h, pad:pad + w] = x
    rows = dy[:, None] + np.arange(h)                          # (N, H)
    cols = dx[:, None] + np.arange(w)                          # (N, W)
    cols = np.where(flip[:, None], cols[:, ::-1], cols)        # a flip reads columns backwards
    return padded[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]  # (N, C, H, W)


def augment_cifar(x, rng, pad=4, fill=0):
    """Pad by ``pad``, take a random (H, W) crop, flip left-right with probability 1/2.

    torchvision's ``RandomCrop(32, padding=4)`` then ``RandomHorizontalFlip()``,
    for a whole batch at once: draws dy, dx ~ U{0, ..., 2 pad} and
    flip ~ Bernoulli(1/2) per image from ``rng``, then calls ``crop_flip``.
    torchvision pads the raw image with black: on uint8 images keep fill=0, on
    normalised ones pass ``fill=normalized_black(kind)``.

    Parameters
    ----------
    x : ndarray, (N, C, H, W)
    rng : numpy.random.Generator
    pad : int
    fill : scalar or (C,) array

    Returns
    -------
    ndarray, (N, C, H, W), dtype of x
    """
    pad = check_int("augment_cifar: pad", pad, 0)
    check_generator("augment_cifar: rng", rng)
    n = len(x)
    dy = rng.integers(0, 2 * pad + 1, n)
    dx = rng.integers(0, 2 * pad + 1, n)
    flip = rng.random(n) < 0.5
    return crop_flip(x, dy, dx, flip, pad, fill)


def batches(x, y, batch_size, rng=None, shuffle=True, drop_last=False):
    """Minibatches (x[idx], y[idx]) covering every example once per pass.

    Parameters
    ----------
    x : ndarray, (N, ...)
    y : ndarray, (N, ...) or None (then None is yielded in its place)
    batch_size : int, >= 1
    rng : numpy.random.Generator, required when shuffle
    shuffle : bool
        Visit the examples in the order of ``rng.permutation(N)``.
    drop_last : bool
        Skip a final batch smaller than ``batch_size``.

    Returns
    -------
    iterator of (xb, yb)
        The permutation is drawn when ``batches`` is called.
    """
    batch_size = check_int("batches: batch_size", batch_size, 1)   # int(2.5) would be 2 silently
    if y is not None and len(x) != len(y):
        raise ValueError(f"batches: x and y must have the same length, got {len(x)}, {len(y)}")
    if shuffle:
        check_generator("batches: with shuffle=True, rng", rng)
    # Checked above, eagerly; the generator below starts only when iterated.
    order = rng.permutation(len(x)) if shuffle else None
    return _iter_batches(x, y, batch_size, order, drop_last)


def _iter_batches(x, y, b, order, drop_last):
    n = len(x)
    stop = n - n % b if drop_last else n
    for start in range(0, stop, b):
        idx = slice(start, start + b) if order is None else order[start:start + b]
        yield x[idx], (None if y is None else y[idx])
