"""Counter-based uniform noise: u as a pure function of (seed, step, sample, parameter, element).

The generator is Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as
easy as 1, 2, 3", SC 2011): a 10-round bijection of a 128-bit counter under a 64-bit key.
Its authors report that it passes the whole TestU01 suite (SmallCrush, Crush, BigCrush) with
a safety margin of rounds; it is cuRAND's ``Philox4_32_10`` and the generator of PyTorch's
CUDA random numbers. Each call turns one counter into four independent 32-bit words.

The stream, in full (a port needs only these lines and 32-bit unsigned arithmetic)::

    key     = (seed mod 2**32, (seed >> 32) mod 2**32)
    counter = (element // 4, step, sample, crc32(parameter name, UTF-8))
    x       = philox4x32_10(counter, key)[element % 4]
    u       = ((x >> 9) + 0.5) * 2**-23          # = (2k + 1) / 2**24, k = x >> 9

so u lies on the midpoints of 2**23 equal bins of (0, 1): never 0 or 1, exactly
representable in float32 (and so in float64, where the same values are used), and
symmetric (u and 1 - u are equally likely). ``element`` is the row-major index in the
parameter's array, ``step`` the optimizer step (from 0), ``sample`` the Monte-Carlo
sample j in 0..S-1; crc32 is zlib's (the PNG/gzip checksum).

One Philox round maps (c0, c1, c2, c3) under key (k0, k1) to::

    hi0, lo0 = high and low 32 bits of 0xD2511F53 * c0
    hi1, lo1 = high and low 32 bits of 0xCD9E8D57 * c2
    (hi1 ^ c1 ^ k0,  lo1,  hi0 ^ c3 ^ k1,  lo0)

and the key is bumped by (0x9E3779B9, 0xBB67AE85) (mod 2**32) before each of rounds 2..10.
"""
from __future__ import annotations

import functools
import math
import zlib
from typing import NamedTuple

import numpy as np

M0, M1 = 0xD2511F53, 0xCD9E8D57          # Philox4x32 multipliers
W0, W1 = 0x9E3779B9, 0xBB67AE85          # Weyl key increments (golden ratio, sqrt(3) - 1)
ROUNDS = 10
BITS = 23                                # u = (2k + 1) / 2**(BITS + 1), k < 2**BITS
MASK32 = 0xFFFFFFFF


class NoiseKey(NamedTuple):
    """The noise of one optimizer step: what ``opt.sample`` returns instead of arrays.

    Attributes
    ----------
    seed : int
        0 <= seed < 2**64, the run's noise seed.
    step : int
        0 <= step < 2**32, the optimizer step the noise is for.
    samples : int
        S, the number of Monte-Carlo samples of the step (sample j = 0..S-1).
    """
    seed: int
    step: int
    samples: int


class SampleKey(NamedTuple):
    """The noise of one forward/backward pass: the step's key and the Monte Carlo sample j.

    ``BayesBiNN.sample`` returns one per sample, [SampleKey(key, 0), ..., SampleKey(key, S-1)].

    Attributes
    ----------
    key : NoiseKey
    sample : int
        j, 0 <= j < key.samples.
    """
    key: NoiseKey
    sample: int

    def uniform(self, name, shape, dtype=np.float32):
        """``uniform(self.key, self.sample, name, shape, dtype)``: this pass's u for one parameter.

        Parameters
        ----------
        name : str
        shape : tuple of int
        dtype : float32 or float64

        Returns
        -------
        ndarray of ``shape`` and ``dtype``
        """
        return uniform(self.key, self.sample, name, shape, dtype)


def sample_keys(key):
    """[SampleKey(key, j) for j in 0..S-1]: the per-pass noise list of a step.

    Parameters
    ----------
    key : NoiseKey

    Returns
    -------
    list of SampleKey
    """
    check_key(key)
    return [SampleKey(key, j) for j in range(key.samples)]


def param_id(name):
    """crc32 of the parameter's name (UTF-8), the counter's last word.

    Parameters
    ----------
    name : str

    Returns
    -------
    int
        zlib.crc32 of the UTF-8 bytes, in [0, 2**32).
    """
    if not isinstance(name, str):
        raise TypeError(f"param_id: name must be a str, got {type(name).__name__}")
    try:
        return _crc32(name)
    except UnicodeEncodeError:                   # a lone surrogate has no UTF-8 bytes
        raise ValueError(f"param_id: name must be encodable as UTF-8, got {name!r}") from None


@functools.lru_cache(maxsize=4096)
def _crc32(name):
    """zlib.crc32 of the UTF-8 name, remembered (the kernels ask for it every step)."""
    return zlib.crc32(name.encode("utf-8")) & MASK32


def philox4x32(counter, key, rounds=ROUNDS):
    """Philox4x32-R on arrays: counter (4, n) uint32, key (2,) ints -> (4, n) uint32.

    Parameters
    ----------
    counter : array_like, shape (4, n) or (4,)
        The four 32-bit counter words (values < 2**32).
    key : sequence of 2 int
        The two 32-bit key words.
    rounds : int
        10 for Philox4x32-10 (the default and the stream's).

    Returns
    -------
    ndarray, uint32, the shape of ``counter``
    """
    c = np.asarray(counter)
    if c.shape[:1] != (4,):
        raise ValueError(f"philox4x32: counter must have shape (4, ...), got {c.shape}")
    # a negative, fractional or too large word would be wrapped or truncated, not refused
    if c.dtype.kind not in "iu" or (c.size and (c.min() < 0 or c.max() > MASK32)):
        span = f" values in [{c.min()}, {c.max()}]" if c.size and c.dtype.kind in "biuf" else ""   # text: no min
        raise ValueError(f"philox4x32: counter must hold integers in [0, 2**32), got {c.dtype}{span}")
    c = c.astype(np.uint64, copy=False)
    if not (isinstance(key, (tuple, list, np.ndarray)) and len(key) == 2 and all(
            isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)) and 0 <= k <= MASK32
            for k in key)):
        raise ValueError(f"philox4x32: key must be two integers in [0, 2**32), got {key!r}")
    if isinstance(rounds, (bool, np.bool_)) or not isinstance(rounds, (int, np.integer)) or rounds < 0:
        raise ValueError(f"philox4x32: rounds must be an integer >= 0, got {rounds!r}")
    c0, c1, c2, c3 = (c[i] & MASK32 for i in range(4))
    k0, k1 = int(key[0]), int(key[1])
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
        p0, p1 = np.uint64(M0) * c0, np.uint64(M1) * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0), p1 & np.uint64(MASK32),
                          (p0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1), p0 & np.uint64(MASK32))
    return np.stack([c0, c1, c2, c3]).astype(np.uint32)


def check_key(key):
    """Validate a NoiseKey (ValueError naming the field and its range).

    Parameters
    ----------
    key : NoiseKey

    Returns
    -------
    NoiseKey
        ``key`` itself.
    """
    if not isinstance(key, NoiseKey):
        raise TypeError(f"expected a NoiseKey, got {type(key).__name__}")
    for field, hi in (("seed", 2 ** 64), ("step", 2 ** 32), ("samples", 2 ** 32)):
        v = getattr(key, field)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < hi:
            raise ValueError(f"NoiseKey.{field} must be an integer in [0, 2**{hi.bit_length() - 1}), got {v!r}")
    return key


def check_sample(where, key, sample):
    """``sample`` as an int if it is an integer (not a bool, not a float) in [0, key.samples).

    Parameters
    ----------
    where : str
        The caller, first in the message ("uniform").
    key : NoiseKey
    sample : int

    Returns
    -------
    int
    """
    if isinstance(sample, (bool, np.bool_)) or not isinstance(sample, (int, np.integer)) \
            or not 0 <= sample < key.samples:
        raise ValueError(f"{where}: sample must be an integer in [0, {key.samples}), got {sample!r}")
    return int(sample)


def check_shape(where, shape):
    """``shape`` as a tuple of ints, each an integer >= 0 (an int n is the shape (n,)).

    Parameters
    ----------
    where : str
        The caller, first in the message ("uniform").
    shape : int or tuple of int

    Returns
    -------
    tuple of int
    """
    dims = (shape,) if isinstance(shape, (int, np.integer)) else shape
    try:
        dims = tuple(dims)
    except TypeError:
        raise ValueError(f"{where}: shape must be a tuple of integers >= 0, got {shape!r}") from None
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) and d >= 0
               for d in dims):
        raise ValueError(f"{where}: shape must be a tuple of integers >= 0, got {shape!r}")
    return tuple(int(d) for d in dims)


def check_dtype(where, dtype):
    """``np.dtype(dtype)`` if it is float32 or float64; else ValueError.

    Parameters
    ----------
    where : str
        The caller, first in the message ("uniform").
    dtype : dtype-like

    Returns
    -------
    numpy.dtype
    """
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    # "dt is None" first: a dtype compares equal to None (np.dtype(None) is float64), so an
    # unparsable dtype ("float23") would otherwise pass as float64
    if dt is None or dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"{where}: dtype must be float32 or float64, got {dt if dt is not None else dtype!r}")
    return dt


def check_count(where, shape):
    """The number of elements of ``shape``, exact; ValueError past the counter's 2**34.

    Element e uses counter word e // 4 < 2**32, so an array holds at most 4 * 2**32 elements.
    The product is taken in Python ints (an int64 product of large dimensions wraps).

    Parameters
    ----------
    where : str
        The caller, first in the message ("uniform").
    shape : tuple of int
        A shape ``check_shape`` has accepted.

    Returns
    -------
    int
    """
    n = math.prod(shape)
    if -(-n // 4) > 2 ** 32:
        raise ValueError(f"{where}: {n} elements exceed the counter's 2**34")
    return n


def uniform(key, sample, name, shape, dtype=np.float32):
    """The u array of parameter ``name`` for Monte-Carlo sample ``sample`` of the step ``key``.

    Parameters
    ----------
    key : NoiseKey
    sample : int
        0 <= sample < key.samples.
    name : str
        The parameter's name (its crc32 is part of the counter).
    shape : tuple of int
        The parameter's shape; element e is the row-major index.
    dtype : float32 or float64
        The values are the same in both (float32 midpoints, exact in float64).

    Returns
    -------
    ndarray of ``shape`` and ``dtype``, strictly inside (0, 1)
    """
    check_key(key)
    sample = check_sample("uniform", key, sample)
    shape = check_shape("uniform", shape)
    dt = check_dtype("uniform", dtype)
    n = check_count("uniform", shape)
    blocks = -(-n // 4)
    ctr = np.empty((4, blocks), dtype=np.uint64)
    ctr[0] = np.arange(blocks, dtype=np.uint64)
    ctr[1], ctr[2], ctr[3] = key.step, sample, param_id(name)
    x = philox4x32(ctr, (key.seed & MASK32, key.seed >> 32)).T.reshape(-1)[:n]   # element e: word e % 4
    u = ((x >> np.uint32(32 - BITS)).astype(np.float32) + np.float32(0.5)) * np.float32(2.0 ** -BITS)
    return u.reshape(shape).astype(dt, copy=False)


def normal(key, sample, name, n):
    """n standard normals for parameter ``name``: Box-Muller on the stream's u, in float64.

    With u = ``uniform(key, sample, name, (2 * ceil(n / 2),), float64)``, pair i is
    (a, b) = (u[2i], u[2i + 1]), and::

        z[2i]     = sqrt(-2 log a) * cos(2 pi b)
        z[2i + 1] = sqrt(-2 log a) * sin(2 pi b)

    in float64 with the C library's log, cos and sin, truncated to n values (Box & Muller,
    "A note on the generation of random normal deviates", Ann. Math. Stat. 1958). The u
    grid of 2**23 midpoints bounds abs(z) by sqrt(48 log 2) = 5.77; a normal exceeds that
    with probability 8e-9. For VISPA's per-layer r (K values per step), not for large arrays.

    Parameters
    ----------
    key : NoiseKey
    sample : int
        0 <= sample < key.samples.
    name : str
    n : int >= 0

    Returns
    -------
    ndarray, (n,), float64
    """
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"normal: n must be an integer in [0, inf), got {n!r}")
    n = int(n)
    u = uniform(key, sample, name, (2 * (-(-n // 2)),), np.float64).tolist()
    z = []
    for a, b in zip(u[0::2], u[1::2]):          # the C library's log/cos/sin (Python's math):
        rad, ang = math.sqrt(-2.0 * math.log(a)), 2.0 * math.pi * b    # NumPy's SIMD ones
        z += [rad * math.cos(ang), rad * math.sin(ang)]                # differ between CPUs
    return np.array(z[:n], dtype=np.float64)


def materialise(key, shapes, dtype=np.float32):
    """All u arrays of a step: [ {name: u} for sample j in 0..S-1 ], the reference path's noise.

    Parameters
    ----------
    key : NoiseKey
    shapes : dict name -> tuple of int
    dtype : float32 or float64

    Returns
    -------
    list of dict name -> ndarray
    """
    check_key(key)
    check_dtype("materialise", dtype)            # also when there are no samples or shapes
    if not isinstance(shapes, dict):
        raise ValueError(f"materialise: shapes must be a dict name -> shape, got {type(shapes).__name__}")
    return [{k: uniform(key, j, k, s, dtype) for k, s in shapes.items()} for j in range(key.samples)]
