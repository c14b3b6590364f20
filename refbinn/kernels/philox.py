"""Philox4x32-10 in Numba: the counter-based noise of ``refbinn.noise``, one counter at a time.

``philox4x32_10`` is the scalar form a fused kernel calls per group of four elements (the
words stay in registers); ``fill_uniform`` writes a parameter's u array with it, bit-identical
to ``refbinn.noise.uniform`` (tests/test_noise.py).
"""
from __future__ import annotations

import numba as nb
import numpy as np

from ..noise import (BITS, M0, M1, W0, W1, check_count, check_dtype, check_key, check_sample, check_shape,
                     param_id)

_M32 = np.uint64(0xFFFFFFFF)


@nb.njit(cache=True, inline="always")
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 of counter (c0, c1, c2, c3) under key (k0, k1) (njit, inlined).

    Parameters
    ----------
    c0, c1, c2, c3 : int
        The counter words, < 2**32.
    k0, k1 : int
        The key words, < 2**32.

    Returns
    -------
    tuple of 4 numpy.uint64
        The output words, each < 2**32.
    """
    c0, c1, c2, c3 = np.uint64(c0), np.uint64(c1), np.uint64(c2), np.uint64(c3)
    k0, k1 = np.uint64(k0), np.uint64(k1)
    for r in range(10):
        if r:
            k0 = (k0 + np.uint64(W0)) & _M32
            k1 = (k1 + np.uint64(W1)) & _M32
        p0 = np.uint64(M0) * c0
        p1 = np.uint64(M1) * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & _M32,
                          (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & _M32)
    return c0, c1, c2, c3


@nb.njit(cache=True, inline="always")
def word_to_uniform(x):
    """u = ((x >> 9) + 0.5) * 2**-23 as float32: the midpoint grid of refbinn.noise (njit).

    Parameters
    ----------
    x : numpy.uint64
        A Philox output word (< 2**32).

    Returns
    -------
    numpy.float32
        Strictly inside (0, 1).
    """
    return (np.float32(x >> np.uint64(32 - BITS)) + np.float32(0.5)) * np.float32(2.0 ** -BITS)


@nb.njit(cache=True)
def _fill(out, k0, k1, step, sample, pid):
    n = out.size
    full = n // 4
    for b in range(full):                      # whole blocks: no branch, so the loop vectorises
        x0, x1, x2, x3 = philox4x32_10(b, step, sample, pid, k0, k1)
        out[4 * b] = word_to_uniform(x0)
        out[4 * b + 1] = word_to_uniform(x1)
        out[4 * b + 2] = word_to_uniform(x2)
        out[4 * b + 3] = word_to_uniform(x3)
    if full * 4 < n:
        w = philox4x32_10(full, step, sample, pid, k0, k1)
        for lane in range(n - 4 * full):
            out[4 * full + lane] = word_to_uniform(w[lane])


def fill_uniform(key, sample, name, shape, dtype=np.float32):
    """``refbinn.noise.uniform`` computed by the Numba kernel (same arguments, same bits).

    Parameters
    ----------
    key : refbinn.noise.NoiseKey
    sample : int
        0 <= sample < key.samples.
    name : str
        The parameter's name.
    shape : tuple of int
    dtype : float32 or float64

    Returns
    -------
    ndarray of ``shape`` and ``dtype``
    """
    check_key(key)
    sample = check_sample("fill_uniform", key, sample)
    shape = check_shape("fill_uniform", shape)
    dtype = check_dtype("fill_uniform", dtype)
    out = np.empty(check_count("fill_uniform", shape), dtype=np.float32)
    _fill(out, np.uint64(key.seed & 0xFFFFFFFF), np.uint64(key.seed >> 32), np.uint64(key.step),
          np.uint64(sample), np.uint64(param_id(name)))
    return out.reshape(shape).astype(dtype, copy=False)
