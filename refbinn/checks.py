"""Argument checks: every bad value raises ValueError naming the argument and what is allowed::

    check_range("lr", lr, 0, lo_open=True)      ->  "lr must be in (0, inf), got -1"
    check_int("samples", s, 1)                   ->  "samples must be an integer in [1, inf), got 0.5"
    check_choice("numerics", n, ("exact", "official"))
                                                 ->  "numerics must be one of 'exact', 'official', got 'x'"
    check_float_input("layer 'fc1'", x, 2)       ->  "layer 'fc1': input has shape (3,), expected (N, d1, ...)"
    check_real("probs", p)                       ->  "probs must hold real numbers, got dtype complex128"
    check_generator("two_moons: rng", 42)        ->  "two_moons: rng must be a numpy.random.Generator, got int"
    check_array_dict("export: params", None)     ->  "export: params must be a dict name -> array, got NoneType"

A leaf module (NumPy only), so that every floor of refbinn can use it.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np


def _bound(x):
    return str(x) if isinstance(x, (int, np.integer)) else f"{x:g}"     # 2**63 - 1, not 9.22337e+18


def _interval(lo, hi, lo_open, hi_open):
    left = "-inf" if lo is None else _bound(lo)
    right = "inf" if hi is None else _bound(hi)
    return (("(" if lo_open or lo is None or lo == -math.inf else "[") + f"{left}, {right}"
            + (")" if hi_open or hi is None or hi == math.inf else "]"))


def check_range(name, value, lo=None, hi=None, *, lo_open=False, hi_open=False):
    """``value`` unchanged if it is a finite real number with lo <= value <= hi (< where open); else ValueError.

    NaN and +-inf are never in range, nor is a bool or a string (``float('0.5')`` would take it);
    ``lo``/``hi`` None means unbounded (but finite).

    Parameters
    ----------
    name : str
        The argument's name, quoted in the error message.
    value : object
        The value to check; a number ``float()`` accepts (not a str or bytes).
    lo, hi : float or None
        The bounds; None (the default) leaves that side unbounded.
    lo_open, hi_open : bool
        Exclude the bound itself (``lo < value``, ``value < hi``); default False (closed).

    Returns
    -------
    object
        ``value`` itself, not converted.

    Raises
    ------
    ValueError
        "``name`` must be in [lo, hi], got ``value``" (or "must be a real number").
    """
    try:
        if isinstance(value, (bool, np.bool_, str, bytes, bytearray, memoryview)):   # True is a slip, not 1
            raise TypeError                                              # (as check_int); b'1' is text
        v = float(value)
    except OverflowError:                        # an int beyond float's range: real, out of range
        v = math.inf
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    bad = not math.isfinite(v)
    if lo is not None:
        bad |= v <= lo if lo_open else v < lo
    if hi is not None:
        bad |= v >= hi if hi_open else v > hi
    if bad:
        raise ValueError(f"{name} must be in {_interval(lo, hi, lo_open, hi_open)}, got {value!r}")
    return value


def is_integer(value):
    """True for an integer or an integral float (2, np.int64(2), 2.0); False for 1.5, NaN, inf,
    None, a string or a bool.

    Parameters
    ----------
    value : object

    Returns
    -------
    bool
    """
    try:
        return not isinstance(value, (bool, np.bool_)) and int(value) == value
    except (TypeError, ValueError, OverflowError):
        return False


def check_int(name, value, lo=0, hi=None):
    """``int(value)`` if value is an integer (or an integral float; not a bool) in [lo, hi].

    Parameters
    ----------
    name : str
        The argument's name, quoted in the error message.
    value : object
        The value to check: an int, a NumPy integer or an integral float such as ``3.0``.
    lo : int
        The smallest allowed value (inclusive), default 0.
    hi : int or None
        The largest allowed value (inclusive); None (the default) means unbounded.

    Returns
    -------
    int
        ``int(value)``.

    Raises
    ------
    ValueError
        "``name`` must be an integer in [lo, hi], got ``value``".
    """
    if not (is_integer(value) and value >= lo and (hi is None or value <= hi)):
        raise ValueError(f"{name} must be an integer in {_interval(lo, hi, False, False)}, got {value!r}")
    return int(value)


def check_choice(name, value, choices):
    """``value`` if it is one of ``choices``; else ValueError listing them.

    Parameters
    ----------
    name : str
        The argument's name, quoted in the error message.
    value : object
        The value to check (compared with ``in``).
    choices : sequence
        The allowed values, listed in the error message in this order.

    Returns
    -------
    object
        ``value`` itself.

    Raises
    ------
    ValueError
        "``name`` must be one of 'a', 'b', got ``value``".
    """
    try:
        ok = value in choices
    except (TypeError, ValueError):              # an array: its == is elementwise, 'in' has no truth value
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_float_input(where, x, min_ndim=1):
    """``np.asarray(x)`` if it has a float dtype and at least ``min_ndim`` axes; else ValueError
    starting with ``where`` (e.g. "layer 'fc1'").

    Parameters
    ----------
    where : str
        Who is checking, the start of the error message (e.g. ``"layer 'fc1'"``).
    x : array_like
        The input, batch axis first.
    min_ndim : int
        The least number of axes, >= 1 (default 1: ``(N, ...)``; 2: ``(N, d1, ...)``).

    Returns
    -------
    numpy.ndarray
        ``np.asarray(x)``, not copied or cast.

    Raises
    ------
    ValueError
        If ``x`` has fewer than ``min_ndim`` axes or a non-float dtype.
    """
    x = np.asarray(x)
    if x.ndim < min_ndim:
        want = "(N, ...)" if min_ndim == 1 else "(N, d1, ...)"
        raise ValueError(f"{where}: input has shape {tuple(x.shape)}, expected {want}")
    if x.dtype.kind != "f":                       # = not issubdtype(floating), at a tenth of its cost
        raise ValueError(f"{where}: input has dtype {x.dtype}, expected a float dtype")
    return x


def check_real(what, a, kinds="biuf"):
    """``np.asarray(a)`` if its dtype holds real numbers; else ValueError naming ``what``.

    A cast of complex values to float drops their imaginary part without a word, and text or
    objects fail inside NumPy with a message that names nothing: both are refused here.

    Parameters
    ----------
    what : str
        The argument, as the message should name it (e.g. ``"probs"``, ``"lam0['w']"``,
        ``"batch_moments: x"``).
    a : array_like
    kinds : str
        The dtype kinds allowed: ``"biuf"`` (default: bool, integers, floats) or ``"iuf"`` where a
        bool is no number (a gradient, a noise draw).

    Returns
    -------
    numpy.ndarray
        ``np.asarray(a)``, not copied or cast.

    Raises
    ------
    ValueError
        "``what`` must hold real numbers, got dtype complex128".
    """
    a = np.asarray(a)
    if a.dtype.kind not in kinds:
        raise ValueError(f"{what} must hold real numbers, got dtype {a.dtype}")
    return a


def check_generator(what, rng):
    """``rng`` if it is a ``numpy.random.Generator``; else ValueError naming ``what``.

    A legacy ``RandomState`` has other methods (no ``integers``, ``spawn``, ``random(dtype=)``)
    and draws other streams from the same seed.

    Parameters
    ----------
    what : str
        The argument, as the message should name it (e.g. ``"two_moons: rng"``).
    rng : object
        What the caller was given: an int seed, None or a ``RandomState`` is refused.

    Returns
    -------
    numpy.random.Generator
        ``rng`` itself.

    Raises
    ------
    ValueError
        "``what`` must be a numpy.random.Generator, got int".
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"{what} must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def check_array_dict(what, d, source=None):
    """``d`` if it is a mapping (a dict, or a read-only view such as ``MappingProxyType``);
    else ValueError naming ``what``.

    Parameters
    ----------
    what : str
        The argument, as the message should name it (e.g. ``"VISPA: params"``).
    d : object
        What the caller was given; only its type is checked, not its keys or values.
    source : str or None
        Where such a dict comes from, added in parentheses (e.g. ``"from init()"``).

    Returns
    -------
    Mapping
        ``d`` itself.

    Raises
    ------
    ValueError
        "``what`` must be a dict name -> array (``source``), got NoneType".
    """
    if not isinstance(d, Mapping):
        where = f" ({source})" if source else ""
        raise ValueError(f"{what} must be a dict name -> array{where}, got {type(d).__name__}")
    return d
