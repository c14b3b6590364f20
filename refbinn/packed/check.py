"""What each op of a packed model file must hold, checked when the file is loaded::

    check_ops(ops, arrays)    ValueError "op i (<op> '<name>'): ..." for the first op whose
                              spec fields or arrays are missing or of another dtype or shape

The shapes follow from the spec (Kw = ceil(k / 64) words per row)::

    dense_real, dense_binary   k, n >= 1            words uint64 (n, ceil(k/64))
    conv_real                  shape (O, C, kh, kw)  words uint64 (O, ceil(C kh kw / 64))
    conv_binary                shape (O, C, kh, kw)  words uint64 (O, kh kw ceil(C/64)),
                               padding (gives pads)  tap_sums int32 (kh kw, O)
    bias                                             bias float32 (C,)
    affine                                           scale, shift float32 (C,)
    batchnorm                                        mean, inv_std [, weight, bias] float (C,)
    threshold                  pack: bool            dirs, t (C,), both int32 or both float32
    maxpool                    kernel, stride: 2 integers >= 1
    flatten, pm1, relu, tanh, to_float               no arrays

The Numba kernels index these arrays without bounds checks, so a file must not be able
to hand them arrays of another shape (``load_packed`` calls this; its decorator names the file).
"""
from __future__ import annotations

import numpy as np

from ..kernels.bconv import conv_padding


def _ints(spec, key, n, lo, where):
    v = spec.get(key)
    if not (isinstance(v, list) and len(v) == n and all(isinstance(i, int) and not isinstance(i, bool)
                                                          and i >= lo for i in v)):
        raise ValueError(f"{where}: '{key}' must be {n} integers >= {lo}, got {v!r}")
    return v


def _int(spec, key, where):
    return _ints({key: [spec.get(key)]}, key, 1, 1, where)[0]


def _array(a, key, where, dtypes, shape=None):
    if key not in a:
        raise ValueError(f"{where}: no array '{key}'")
    v = a[key]
    if v.dtype not in dtypes or (shape is not None and v.shape != tuple(shape)) or (shape is None and v.ndim != 1):
        want = f"shape {tuple(shape)}" if shape is not None else "1 axis"
        raise ValueError(f"{where}: array '{key}' must be {'/'.join(np.dtype(d).name for d in dtypes)} "
                         f"with {want}, got {v.dtype} with shape {v.shape}")
    return v


def _channels(a, keys, where, dtypes):
    vs = [_array(a, k, where, dtypes) for k in keys]
    if len({v.shape for v in vs}) != 1:
        raise ValueError(f"{where}: arrays {keys} must have the same length, got "
                         f"{[v.shape[0] for v in vs]}")


def _padding(spec, kernel, where):
    """conv_binary's 'padding' ('valid', 'same' or 2 integers >= 0) must give its 'pads'."""
    pad = spec.get("padding")
    if not (pad in ("valid", "same") or (isinstance(pad, list) and len(pad) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in pad))):
        raise ValueError(f"{where}: 'padding' must be 'valid', 'same' or 2 integers >= 0, got {pad!r}")
    try:
        pads = conv_padding(pad if isinstance(pad, str) else tuple(pad), kernel, tuple(spec["stride"]))
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if list(pads) != spec["pads"]:
        raise ValueError(f"{where}: 'padding' {pad!r} gives pads {list(pads)}, the file says {spec['pads']}")


U64, F32, I32 = (np.uint64,), (np.float32,), (np.int32,)
FLOATS = (np.float16, np.float32, np.float64)
ARRAYS = {"dense_real": {"words"}, "dense_binary": {"words"}, "conv_real": {"words"},
          "conv_binary": {"words", "tap_sums"}, "bias": {"bias"}, "affine": {"scale", "shift"},
          "batchnorm": {"mean", "inv_std", "weight", "bias"}, "threshold": {"dirs", "t"}}


def check_ops(ops, arrays):
    """ValueError naming the op unless every op has its spec fields and arrays (see module docstring).

    Parameters
    ----------
    ops : list of dict
        The op specs of a packed file (``meta['ops']``).
    arrays : list of dict
        Per op, its arrays by name.
    """
    for i, (spec, a) in enumerate(zip(ops, arrays)):
        op = spec.get("op")
        where = f"op {i} ({op} {spec.get('name')!r})"
        extra = sorted(set(a) - ARRAYS.get(op, set()))
        if extra:
            raise ValueError(f"{where}: unexpected array(s) {extra}")
        if op in ("dense_real", "dense_binary"):
            k, n = _int(spec, "k", where), _int(spec, "n", where)
            _array(a, "words", where, U64, (n, -(-k // 64)))
        elif op in ("conv_real", "conv_binary"):
            O, C, kh, kw = _ints(spec, "shape", 4, 1, where)
            _ints(spec, "stride", 2, 1, where)
            _ints(spec, "pads", 4, 0, where)
            if op == "conv_real":
                _array(a, "words", where, U64, (O, -(-(C * kh * kw) // 64)))
            else:
                if max(kh, kw) > 63:
                    raise ValueError(f"{where}: kernel sizes must be <= 63, got {kh}x{kw}")
                _array(a, "words", where, U64, (O, kh * kw * -(-C // 64)))
                _array(a, "tap_sums", where, I32, (kh * kw, O))
                _padding(spec, (kh, kw), where)
        elif op == "bias":
            _array(a, "bias", where, F32)
        elif op == "affine":
            _channels(a, ["scale", "shift"], where, F32)
        elif op == "batchnorm":
            _channels(a, ["mean", "inv_std"] + [k for k in ("weight", "bias") if k in a], where, FLOATS)
        elif op == "threshold":
            if not isinstance(spec.get("pack"), bool):
                raise ValueError(f"{where}: 'pack' must be true or false, got {spec.get('pack')!r}")
            kinds = I32 if "dirs" in a and a["dirs"].dtype == np.int32 else F32
            _channels(a, ["dirs", "t"], where, kinds)
        elif op == "maxpool":
            _ints(spec, "kernel", 2, 1, where)
            _ints(spec, "stride", 2, 1, where)
