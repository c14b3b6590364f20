"""Out-of-distribution (OOD) inputs that need no download, normalised like the in-distribution data.

The sets::

    uniform:   pixel u ~ U{0, ..., 255}, then x = (u / 255 - mean) / std
    gaussian:  v ~ N(mean, std^2) per pixel (the data set's normalisation constants, per
               channel), u = round(255 clip(v, 0, 1)), then x = (u / 255 - mean) / std:
               noise with the data's first two moments (before the clip), so only its
               structure is missing
    permuted:  the test images with one fixed random permutation of the pixel positions
               (the same for every image and every channel): the pixel histogram kept,
               the spatial structure destroyed
    <name>:    the test images of another image data set refbinn loads ("mnist",
               "fashion-mnist", "cifar10", "cifar100") when it is present under the data
               root, normalised with the in-distribution set's constants (what the trained
               network's input pipeline would do to them)

``kind`` is the in-distribution data set, whose constants (``transforms.STATS``) are used.
"""
from __future__ import annotations

import numpy as np

from ..checks import check_choice, check_generator, check_int
from .cifar import load_cifar
from .mnist import load_mnist
from .transforms import STATS, normalize_with

NOISE_SETS = ("uniform", "gaussian", "permuted")
NAMED_SETS = ("mnist", "fashion-mnist", "cifar10", "cifar100")
OOD_SETS = NOISE_SETS + NAMED_SETS


def _channels(kind, shape):
    """(mean, std) of ``kind`` shaped to broadcast over one image of ``shape``."""
    mean, std = (np.asarray(v, np.float64) for v in STATS[check_choice("kind", kind, tuple(STATS))])
    if mean.ndim:                                                  # per channel: (C, 1, 1)
        if len(shape) != 3 or shape[0] != mean.size:
            raise ValueError(f"images of {kind} have shape ({mean.size}, H, W), got {tuple(shape)}")
        mean, std = mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)
    return mean, std


def _shape(shape):
    """One image's shape as a tuple of ints >= 1; ValueError naming ``shape`` otherwise."""
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if not dims or not all(isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) and d >= 1
                           for d in dims):
        raise ValueError(f"shape must be a tuple of integers >= 1 (one image's), got {shape!r}")
    return tuple(int(d) for d in dims)


def uniform_noise(n, shape, kind, rng):
    """n images of i.i.d. uniform pixels u ~ U{0..255}, normalised with ``kind``'s constants.

    u = ``rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)`` (the uint8 draw: the
    default int64 one gives another stream), then ``normalize_with``.

    Parameters
    ----------
    n : int >= 1
    shape : tuple, one input's shape, e.g. (784,) for the MNIST MLP or (3, 32, 32)
    kind : a key of ``transforms.STATS``
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, float32, shape ``(n, *shape)``
    """
    n, shape, _ = check_int("n", n, 1), _shape(shape), check_generator("uniform_noise: rng", rng)
    _channels(kind, shape)                                         # the constants fit the shape
    u = rng.integers(0, 256, size=(n,) + shape, dtype=np.uint8)
    return normalize_with(u, *STATS[kind])


def gaussian_noise(n, shape, kind, rng):
    """n images of u = round(255 clip(v, 0, 1)), v ~ N(mean, std^2) per pixel, normalised.

    Parameters
    ----------
    n : int >= 1
        Number of images.
    shape : tuple of int
        Shape of one image, e.g. (784,) or (3, 32, 32).
    kind : str
        Data set whose normalisation constants (mean, std per channel) are used.
    rng : numpy.random.Generator
        Source of the Gaussian draws.

    Returns
    -------
    ndarray, shape ``(n, *shape)``, float32
        The normalised noise images.
    """
    n, shape, _ = check_int("n", n, 1), _shape(shape), check_generator("gaussian_noise: rng", rng)
    mean, std = _channels(kind, shape)
    v = mean + std * rng.standard_normal((n,) + shape)             # (n, *shape), float64
    u = np.round(255 * np.clip(v, 0.0, 1.0)).astype(np.uint8)
    return normalize_with(u, *STATS[kind])


def permuted_images(x, rng):
    """x with one permutation of the pixel positions, drawn from ``rng``, applied to every image.

    Parameters
    ----------
    x : ndarray, (n, D) flattened grey images, or (n, C, H, W) (the same permutation of
        the H*W positions in every channel)
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, the shape and dtype of x (a copy)
    """
    x, _ = np.asarray(x), check_generator("permuted_images: rng", rng)
    if x.ndim == 2:
        return x[:, rng.permutation(x.shape[1])]
    if x.ndim == 4:
        n, c, h, w = x.shape
        perm = rng.permutation(h * w)
        return x.reshape(n, c, h * w)[:, :, perm].reshape(x.shape)  # (n, C, H*W) gathered, then back
    raise ValueError(f"permuted_images: x must have shape (n, D) or (n, C, H, W), got {x.shape}")


def named_test_images(name, shape, kind, root=None):
    """The test images of data set ``name``, normalised with ``kind``'s constants, shaped ``(n, *shape)``.

    Parameters
    ----------
    name : str
        One of ``NAMED_SETS`` (e.g. 'fashion-mnist').
    shape : tuple of int
        The network's input shape for one image.
    kind : str
        The in-distribution data set whose normalisation constants are applied.
    root : str or path, optional
        Data root (default: the usual search order).

    Returns
    -------
    ndarray, shape ``(n, *shape)``, float32
        The normalised test images.

    Raises
    ------
    DatasetNotFound
        ``name`` is not present under the data root (the caller reports and skips it).
    ValueError
        Its images do not fit the network's input ``shape`` (e.g. CIFAR for an MNIST MLP).
    """
    check_choice("OOD data set", name, NAMED_SETS)
    shape = tuple(shape)
    ds = load_mnist(root, kind=name) if name in ("mnist", "fashion-mnist") else load_cifar(root, kind=name)
    img = ds.x_test.shape[1:]                                      # (28, 28) or (3, 32, 32)
    grey_flat = len(img) == 2 and len(shape) == 1 and img[0] * img[1] == shape[0]
    if not (grey_flat or img == shape):
        raise ValueError(f"OOD data set {name!r} has images of shape {img}; the network takes {shape}")
    _channels(kind, shape)
    return normalize_with(ds.x_test.reshape((len(ds.x_test),) + shape), *STATS[kind])


def ood_set(name, x_test, kind, rng, root=None):
    """One OOD set of len(x_test) inputs (or all test images of a named data set).

    Parameters
    ----------
    name : one of ``OOD_SETS``
    x_test : ndarray, (n, ...) the normalised in-distribution test inputs
    kind : the in-distribution data set (its normalisation)
    rng : numpy.random.Generator, draws the noise or the permutation
    root : data root for named sets

    Returns
    -------
    ndarray, float32, (m, ...) with the shape of one test input
    """
    check_choice("OOD set", name, OOD_SETS)
    n, shape = len(x_test), tuple(np.shape(x_test)[1:])
    if name == "uniform":
        return uniform_noise(n, shape, kind, rng)
    if name == "gaussian":
        return gaussian_noise(n, shape, kind, rng)
    if name == "permuted":
        return permuted_images(x_test, rng)
    return named_test_images(name, shape, kind, root)
