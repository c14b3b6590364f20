"""Small data sets of the paper: two moons, Snelson 1-D regression, permuted MNIST.

Two moons and Snelson are standardised (spec section 9): z = (v - mean) / std
with the training set's mean and population std (ddof=0); the statistics are
returned so test inputs can be mapped in and predictions mapped back out.
"""
from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..checks import check_generator, check_int, check_range
from .errors import DataFormatError, DatasetNotFound
from .packaged import packaged_file
from .root import ENV_VAR, find_dataset


class Standardization(NamedTuple):
    """z = (v - mean) / std, per column.

    Attributes
    ----------
    mean, std : ndarray, shape (D,) (or broadcastable to the data)
    """

    mean: np.ndarray
    std: np.ndarray

    def apply(self, v):
        """z = (v - mean) / std.

        Parameters
        ----------
        v : ndarray, (N, D)
            Values in data units.

        Returns
        -------
        ndarray, (N, D)
        """
        return (v - self.mean) / self.std

    def invert(self, z):
        """v = z * std + mean (map predictions back to data units).

        Parameters
        ----------
        z : ndarray, (N, D)
            Values in standardised units.

        Returns
        -------
        ndarray, (N, D)
        """
        return z * self.std + self.mean

    def invert_scale(self, s):
        """s * std: a standard deviation in standardised units, in data units.

        Parameters
        ----------
        s : ndarray, (N, D)

        Returns
        -------
        ndarray, (N, D)
        """
        return s * self.std


def standardize(v, axis=0):
    """z = (v - mean(v)) / std(v) along ``axis`` (population std, ddof=0).

    A constant column gets std 1 so it maps to zeros instead of NaN.

    Parameters
    ----------
    v : ndarray, (N, D)
    axis : int

    Returns
    -------
    z : ndarray, (N, D), same float dtype (integers become float64)
    stats : Standardization
    """
    v = np.asarray(v)
    if not np.issubdtype(v.dtype, np.floating):
        v = v.astype(np.float64)
    mean, std = v.mean(axis=axis), v.std(axis=axis)
    std = np.where(std > 0, std, np.ones((), v.dtype))
    stats = Standardization(mean, std)
    return stats.apply(v), stats


def two_moons(n=200, noise=0.1, *, rng):
    """Two interleaved half circles with Gaussian noise.

    Class 0: (cos t, sin t), t in [0, pi]; class 1: (1 - cos t, 1 - sin t - 0.5),
    each point plus N(0, noise^2 I). floor(n/2) points in class 0, the rest in
    class 1, evenly spaced in t, then shuffled (the classic generator's geometry).

    Parameters
    ----------
    n : int
        Number of points, >= 2.
    noise : float
        Standard deviation of the noise, finite and >= 0.
    rng : numpy.random.Generator

    Returns
    -------
    x : ndarray, float64, (n, 2)
    y : ndarray, int64, (n,)
    """
    n = check_int("two_moons: n", n, 2)                    # int(2.5) would be 2 silently
    check_range("two_moons: noise", noise, 0)               # finite: inf noise gives inf points
    check_generator("two_moons: rng", rng)
    n_out = n // 2
    n_in = n - n_out
    t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
    x = np.concatenate([np.stack([np.cos(t_out), np.sin(t_out)], 1),
                        np.stack([1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5], 1)])  # (n, 2)
    y = np.concatenate([np.zeros(n_out, np.int64), np.ones(n_in, np.int64)])
    x = x + rng.normal(0.0, noise, x.shape)
    order = rng.permutation(n)
    return x[order], y[order]


class Snelson(NamedTuple):
    """The Snelson 1-D regression set, standardised.

    Attributes
    ----------
    x, y : ndarray, float64, (200, 1)
        Standardised inputs and targets.
    x_stats, y_stats : Standardization
        To map grids in and predictions out.
    source : pathlib.Path
        The file read (a data root's copy or the packaged one).
    """

    x: np.ndarray
    y: np.ndarray
    x_stats: Standardization
    y_stats: Standardization
    source: Path

    def standardize_x(self, x):
        """Inputs in data units (e.g. ``snelson_grid()``) -> standardised units.

        Parameters
        ----------
        x : ndarray, (M, 1)

        Returns
        -------
        ndarray, (M, 1)
        """
        return self.x_stats.apply(x)

    def unstandardize_y(self, y, std=None):
        """Predictions in standardised units -> data units: y * std_y + mean_y.

        Parameters
        ----------
        y : ndarray, (M, 1)
            Predicted means, standardised.
        std : ndarray, (M, 1), optional
            Predicted standard deviations, standardised.

        Returns
        -------
        mean : ndarray, (M, 1)
            Without ``std``, only this.
        std : ndarray, (M, 1)
            With ``std``: ``(mean, std)`` in data units.
        """
        mean = self.y_stats.invert(y)
        return mean if std is None else (mean, self.y_stats.invert_scale(std))


def load_snelson(root=None):
    """Load ``<root>/snelson/snelson1d.npz`` (arrays X, Y of shape (N, 1)) and standardise both.

    z = (v - mean) / std for X and for Y, with the training set's statistics.
    When no data root holds ``snelson/snelson1d.npz`` the copy shipped inside
    refbinn (``refbinn.data.packaged``, the same bytes) is read instead, so an
    explicit ``root`` without Snelson still loads the same data.

    Parameters
    ----------
    root : str or path-like, optional
        Data root; default: searched as in ``refbinn.data.root``.

    Returns
    -------
    Snelson
        ``source`` names the file read (a data root's copy or the packaged one).

    Raises
    ------
    DataFormatError
        The file found is not an .npz with X and Y of shape (N, 1).
    DatasetNotFound
        No data root holds it and the installation lacks the packaged copy.
    """
    try:
        path = find_dataset("snelson", root) / "snelson1d.npz"
        searched = [path]
    except DatasetNotFound as e:
        path, searched = None, e.searched
    if path is None or not path.is_file():
        path = packaged_file("snelson")
        if path is None:
            raise DatasetNotFound("snelson", searched, "Run `refbinn download snelson`, or put "
                                  f"snelson1d.npz into <root>/snelson/ and set {ENV_VAR}.")
    try:
        with np.load(path, allow_pickle=False) as f:
            x, y = f["X"], f["Y"]
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as e:   # EOFError: empty file
        raise DataFormatError(f"{path}: expected an .npz with arrays X and Y: {e}") from e
    if x.dtype.kind not in "fiu" or y.dtype.kind not in "fiu":
        raise DataFormatError(f"{path}: X and Y must be real arrays, got {x.dtype}, {y.dtype}")
    if x.ndim != 2 or x.shape[1] != 1 or y.shape != x.shape:
        raise DataFormatError(f"{path}: X and Y must both have shape (N, 1), got {x.shape}, {y.shape}")
    x, x_stats = standardize(x)
    y, y_stats = standardize(y)
    return Snelson(x, y, x_stats, y_stats, path)


def snelson_grid(n=301, lo=-3.0, hi=10.0):
    """The test inputs: n evenly spaced points from lo to hi, in data units.

    Map them with ``load_snelson().x_stats.apply`` before predicting.

    Parameters
    ----------
    n : int
        Number of points.
    lo, hi : float
        The ends, included.

    Returns
    -------
    ndarray, float64, (n, 1)
    """
    n = check_int("snelson_grid: n", n, 1)                     # int(2.5) would be 2 silently
    check_range("snelson_grid: lo", lo)
    check_range("snelson_grid: hi", hi)
    return np.linspace(lo, hi, n)[:, None]                      # (n, 1)


def pixel_permutations(n_pixels, n_tasks, seed):
    """One fixed pixel permutation per task (task 1 included), from ``seed``.

    The permutations are drawn in task order from ``default_rng(seed)``; a draw
    equal to the identity or to an earlier task's is redrawn, so the tasks are
    guaranteed distinct (a repeat has probability about 1/n_pixels!).

    Parameters
    ----------
    n_pixels : int >= 3
    n_tasks : int in [1, n_pixels! - 1]
        There are only n_pixels! - 1 permutations other than the identity.
    seed : int or numpy.random.SeedSequence

    Returns
    -------
    ndarray, int64, (n_tasks, n_pixels)
    """
    n_pixels = check_int("pixel_permutations: n_pixels", n_pixels, 3)
    most = math.factorial(n_pixels) - 1 if n_pixels <= 20 else None     # 20! - 1 > 2**61
    n_tasks = check_int("pixel_permutations: n_tasks", n_tasks, 1, most)
    rng = np.random.default_rng(seed)
    perms = [np.arange(n_pixels)]                               # the identity, rejected below
    while len(perms) <= n_tasks:
        p = rng.permutation(n_pixels)
        if not any(np.array_equal(p, q) for q in perms):
            perms.append(p)
    return np.stack(perms[1:])


def legacy_pixel_permutations(n_pixels, n_tasks, seed):
    """perms[t] = the (t+1)-th ``RandomState(seed).permutation(n_pixels)``: the authors' tasks.

    The authors' main_permute_mnist_CL.py calls ``np.random.seed(seed)`` (plus their
    experiment id, 0 by default) and then ``np.random.permutation(784)`` once per task, in
    task order, before any other draw from numpy's global generator. A local
    ``RandomState(seed)`` gives the same stream (numpy keeps the legacy stream fixed)
    without touching the global one. Nothing is redrawn, unlike ``pixel_permutations``:
    an identity or a repeated task (probability about 1/n_pixels!) would be kept, as there.

    Parameters
    ----------
    n_pixels, n_tasks : int, >= 1
    seed : int, >= 0
        The run's seed (the authors' ``--seed`` + ``--experiment-id``).

    Returns
    -------
    perms : ndarray, int64, (n_tasks, n_pixels)
        Row t is task t's permutation (the first task is permuted too).
    """
    n_pixels, n_tasks = check_int("n_pixels", n_pixels, 1), check_int("n_tasks", n_tasks, 1)
    legacy = np.random.RandomState(check_int("seed", seed, 0))     # the stream np.random.seed(seed) starts
    return np.stack([legacy.permutation(n_pixels) for _ in range(n_tasks)]).astype(np.int64)


def permuted_mnist_tasks(x, n_tasks, seed):
    """The permuted-MNIST tasks: one fixed pixel permutation per task, from ``seed``.

    Task t sees image x as x.reshape(N, -1)[:, perms[t]] (see ``permute_pixels``);
    use the same permutations for the training and the test images.

    Parameters
    ----------
    x : ndarray (N, H, W) or (N, H*W), or int
        The images, or directly the number of pixels per image.
    n_tasks : int
    seed : int or numpy.random.SeedSequence

    Returns
    -------
    ndarray, int64, (n_tasks, n_pixels)
    """
    n_pixels = check_int("permuted_mnist_tasks: x", x, 3) if np.ndim(x) == 0 else int(np.prod(np.shape(x)[1:]))
    return pixel_permutations(n_pixels, n_tasks, seed)


def permute_pixels(x, perm):
    """x_t[:, i] = x[:, perm[i]] on flattened images, reshaped back like x.

    Parameters
    ----------
    x : ndarray, (N, H, W) or (N, H*W)
    perm : int array, (H*W,)

    Returns
    -------
    ndarray, same shape and dtype as x (a copy)
    """
    x, perm = np.asarray(x), np.asarray(perm)
    d = math.prod(x.shape[1:]) if x.ndim >= 2 else -1
    # a repeated or missing index would copy one pixel over another, silently
    if perm.shape != (d,) or perm.dtype.kind not in "iu" or not np.array_equal(np.sort(perm), np.arange(d)):
        raise ValueError(f"permute_pixels: perm must be a permutation of the {d} pixels of x "
                         f"(shape {x.shape}), got {perm.dtype} of shape {perm.shape}")
    return x.reshape(len(x), -1)[:, perm].reshape(x.shape)     # (N, H*W) gathered, then back
