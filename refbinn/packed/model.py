"""The packed network: a list of ops, their forward pass with the bitwise kernels, and .npz I/O.

    real input:    y = x @ sign(W).T = total(x) - 2 h(x, bits)      (binary_weight_matmul)
    binary input:  y = K - 2 popcount(pack(x) ^ pack(W))             (binary_gemm, binary_conv2d)
    threshold:     s = +1  <=>  dir * h >= t                          (per channel, dir = +-1)

A value between ops is real (float32), an integer pre-activation (int32, the exact
output of a binary layer), or a sign value (any array whose sign, 0 -> +1, is the +-1
activation; packed into uint64 words right before a binary Dense). ``export`` in
``refbinn/packed/export.py`` builds the ops; the overview is in ``refbinn.packed``.

``PackedModel.save`` writes one .npz (atomically): uint64 weight words, folded
constants and thresholds, and the op list as JSON with a format version.

References: Rastegari et al. (2016), XNOR-Net (xnor-popcount products).
"""
from __future__ import annotations

import json
import math

import numpy as np
from numba import njit, prange
from numpy.lib.stride_tricks import sliding_window_view

from ..kernels import (ConvWeights, binary_conv2d, binary_gemm_panels, binary_weight_matmul,
                      pack_signs, to_panels)
from ..errors import reads_file
from .check import check_ops
from ..io import atomic_savez

FORMAT = "refbinn.packed"
FORMAT_VERSION = 1
# every op a packed file may name (``_run`` runs each; load_packed refuses any other)
OPS = ("affine", "batchnorm", "bias", "conv_binary", "conv_real", "dense_binary", "dense_real",
       "flatten", "maxpool", "pm1", "relu", "tanh", "threshold", "to_float")


# -- runtime ops ---------------------------------------------------------------------------
@njit(cache=True, parallel=True)
def _threshold_words(h, dirs, thr, out):
    # out[n, g] bit b = 1 (sign -1) unless dirs[c] * h[n, c] >= thr[c], c = 64 g + b; NaN -> 1
    N, C = h.shape
    for n in prange(N):
        for g in range(out.shape[1]):
            word = np.uint64(0)
            for b in range(min(64, C - 64 * g)):
                c = 64 * g + b
                if not h[n, c] * dirs[c] >= thr[c]:
                    word |= np.uint64(1) << np.uint64(b)
            out[n, g] = word


def _per_channel(a, x):
    return a.reshape((1, -1) + (1,) * (x.ndim - 2))          # (1, C[, 1, 1]) against (N, C[, H, W])


def _check_shape(spec, x, want):
    if x.ndim != len(want) or any(w is not None and w != s for w, s in zip(want, x.shape)):
        shown = "(" + ", ".join(("N" if i == 0 else "*") if w is None else str(w) for i, w in enumerate(want)) + ")"
        raise ValueError(f"packed layer '{spec['name']}': input has shape {tuple(x.shape)}, "
                         f"expected {shown}")


_PER_CHANNEL = ("bias", "affine", "batchnorm", "threshold")     # ops with one value per channel


def _check_channels(spec, a, x):
    """Every array of a per-channel op has one value per channel of x (no silent broadcasting)."""
    if x.ndim < 2 or any(len(v) != x.shape[1] for v in a.values()):
        raise ValueError(f"packed layer '{spec['name']}': input has shape {tuple(x.shape)}, but the "
                         f"{spec['op']} op holds {sorted({len(v) for v in a.values()})} values per channel")


def _im2col_rows(x, kernel, stride, pads):
    """rows[(n, p, q), (c, i, j)] = xpad[n, c, p sh + i, q sw + j]: (N*Ho*Wo, C*kh*kw) float32."""
    (kh, kw), (sh, sw) = kernel, stride
    top, bottom, left, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))          # (N, C, Hp, Wp)
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]   # (N, C, Ho, Wo, kh, kw)
    N, C, Ho, Wo = win.shape[:4]
    rows = win.transpose(0, 2, 3, 1, 4, 5).reshape(N * Ho * Wo, C * kh * kw)  # the one copy
    return rows, (N, Ho, Wo)


def _max_pool(x, kernel, stride):
    """y[n, c, p, q] = max_{i, j} x[n, c, p sh + i, q sw + j] for any dtype (floor, no padding)."""
    (kh, kw), (sh, sw) = kernel, stride
    Ho, Wo = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    y = None
    for i in range(kh):
        for j in range(kw):
            v = x[:, :, i:i + sh * (Ho - 1) + 1:sh, j:j + sw * (Wo - 1) + 1:sw]   # (N, C, Ho, Wo)
            y = v.copy() if y is None else np.maximum(y, v, out=y)
    return y


def _run(spec, a, prep, x):
    """Apply one op to the batch x."""
    op = spec["op"]
    # words carry no channel count: pack only C signs for the binary Dense of k = C right after
    packs = op == "threshold" and spec["pack"] and x.ndim == 2 and prep["k"] == x.shape[1]
    if op in _PER_CHANNEL and not packs:
        _check_channels(spec, a, x)
    if op == "dense_real":
        _check_shape(spec, x, (None, spec["k"]))
        return binary_weight_matmul(np.ascontiguousarray(x, np.float32), a["words"])
    if op == "dense_binary":
        if x.dtype != np.uint64:                              # a sign value: binarise and pack
            _check_shape(spec, x, (None, spec["k"]))
            x = pack_signs(x)
        return binary_gemm_panels(x, prep["panels"], spec["n"], spec["k"])
    if op == "conv_real":
        _check_shape(spec, x, (None, spec["shape"][1], None, None))
        rows, (N, Ho, Wo) = _im2col_rows(x.astype(np.float32, copy=False), spec["shape"][2:],
                                         spec["stride"], spec["pads"])
        y = binary_weight_matmul(rows, a["words"])                             # (N*Ho*Wo, O)
        return np.ascontiguousarray(y.reshape(N, Ho, Wo, -1).transpose(0, 3, 1, 2))   # (N, O, Ho, Wo)
    if op == "conv_binary":
        _check_shape(spec, x, (None, spec["shape"][1], None, None))
        pad = spec["padding"]
        return binary_conv2d(x, prep["conv"], tuple(spec["stride"]),
                             tuple(pad) if isinstance(pad, list) else pad)
    if op == "bias":                                          # Dense/Conv2d: y += bias, in float32
        return x.astype(np.float32) + _per_channel(a["bias"], x)
    if op == "affine":                                        # folded BatchNorm
        return x * _per_channel(a["scale"], x) + _per_channel(a["shift"], x)
    if op == "batchnorm":                                     # BatchNorm.forward's order, bit for bit
        y = x - _per_channel(a["mean"], x)
        y *= _per_channel(a["inv_std"], x)
        if "weight" in a:
            y = y * _per_channel(a["weight"], x)
            y += _per_channel(a["bias"], x)
        return y
    if op == "threshold":
        h = np.ascontiguousarray(x)
        if packs:
            _check_shape(spec, h, (None, len(a["dirs"])))    # the kernel reads dirs[c], t[c] unchecked
            out = np.empty((h.shape[0], (h.shape[1] + 63) // 64), np.uint64)   # (N, Cw)
            _threshold_words(h, a["dirs"], a["t"], out)
            return out
        keep = h * _per_channel(a["dirs"], h) >= _per_channel(a["t"], h)
        return np.where(keep, np.float32(1), np.float32(-1))           # the sign activation's value
    if op == "to_float":
        return x.astype(np.float32)
    if op == "pm1":
        return np.where(x >= 0, np.float32(1), np.float32(-1))
    if op == "relu":
        return np.maximum(x, 0)
    if op == "tanh":
        return np.tanh(x)
    if op == "maxpool":
        _check_shape(spec, x, (None, None, None, None))
        kh, kw = spec["kernel"]
        if x.shape[2] < kh or x.shape[3] < kw:           # as MaxPool2d: no empty output
            raise ValueError(f"packed layer '{spec['name']}': input has shape {tuple(x.shape)}, "
                             f"expected (N, C, H >= {kh}, W >= {kw})")
        return _max_pool(x, spec["kernel"], spec["stride"])
    if op == "flatten":
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))  # (N, C*H*W); N = 0 too
    raise ValueError(f"packed model: unknown op {op!r}")


class PackedModel:
    """A packed network: ``ops`` (JSON-able dicts) and their ``arrays`` (dicts of ndarrays).

    Build it with ``export`` or ``load_packed``; predict with ``predict_logits`` / ``predict``.

    Parameters
    ----------
    ops : list of dict
        One spec per op, in order: ``"op"`` (one of ``OPS``), ``"name"`` (the layer it
        came from) and the op's settings (shapes, strides, ``pack``).
    arrays : list of dict str -> ndarray
        The arrays of each op (weight words, constants, thresholds), as many as ``ops``.
    meta : dict, optional
        JSON-able facts saved with the model (``export`` records ``float32_bytes``).
    """

    def __init__(self, ops, arrays, meta=None):
        if not (isinstance(ops, (list, tuple)) and isinstance(arrays, (list, tuple))
                and isinstance(meta, (dict, type(None)))):
            raise ValueError(f"PackedModel: ops and arrays must be lists and meta a dict, got "
                             f"{type(ops).__name__}, {type(arrays).__name__}, {type(meta).__name__}")
        if len(ops) != len(arrays):
            raise ValueError(f"PackedModel: {len(ops)} ops but {len(arrays)} array sets")
        for i, (spec, a) in enumerate(zip(ops, arrays)):   # what check_ops and _run take for granted
            if not (isinstance(spec, dict) and spec.get("op") in OPS and isinstance(spec.get("name"), str)):
                raise ValueError(f"PackedModel: op {i} must be a dict with a str 'name' and an 'op' one of "
                                 f"{', '.join(map(repr, OPS))}, got {spec!r:.80}")
            if not (isinstance(a, dict) and all(isinstance(v, np.ndarray) for v in a.values())):
                raise ValueError(f"PackedModel: the arrays of op {i} ({spec['op']} {spec['name']!r}) must be "
                                 f"a dict name -> ndarray, got {a!r:.80}")
        self.ops, self.arrays, self.meta = list(ops), list(arrays), dict(meta or {})
        check_ops(self.ops, self.arrays)          # the kernels index the arrays unchecked (load_packed too)
        self._prep = []
        for i, (spec, a) in enumerate(zip(self.ops, self.arrays)):     # derived layouts, not saved
            p = {}
            if spec["op"] == "threshold":                    # k of the binary Dense its words feed
                nxt = next((o for o in self.ops[i + 1:] if o["op"] != "flatten"), {})
                p["k"] = nxt.get("k") if nxt.get("op") == "dense_binary" else None
            if spec["op"] == "dense_binary":
                p["panels"] = to_panels(a["words"])
            elif spec["op"] == "conv_binary":
                p["conv"] = ConvWeights(a["words"], a["tap_sums"], tuple(spec["shape"]))
            self._prep.append(p)

    @property
    def nbytes(self):
        """Bytes of all stored arrays (weights words, constants, thresholds)."""
        return int(sum(v.nbytes for a in self.arrays for v in a.values()))

    def predict_logits(self, x, batch_size=1000):
        """f(x) in evaluation mode, ``batch_size`` rows at a time, through the packed ops.

        Parameters
        ----------
        x : ndarray, (N, in_features) or (N, C, H, W), real; cast to float32
        batch_size : int >= 1

        Returns
        -------
        ndarray of float32, (N, outputs)
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"predict_logits: batch_size must be an integer >= 1, got {batch_size!r}")
        x = np.asarray(x)
        if x.dtype.kind not in "biuf" or x.ndim < 1:
            raise ValueError(f"predict_logits: x must be a real array of shape (N, ...), "
                             f"got {x.dtype} with shape {x.shape}")
        x = x.astype(np.float32, copy=False)
        outs = []
        for i in range(0, len(x), int(batch_size)):
            y = x[i:i + int(batch_size)]
            for spec, a, p in zip(self.ops, self.arrays, self._prep):
                y = _run(spec, a, p, y)
            outs.append(np.asarray(y, np.float32))
        if not outs:                                          # N = 0: the output shape of one row
            y = np.zeros((1,) + x.shape[1:], np.float32)
            for spec, a, p in zip(self.ops, self.arrays, self._prep):
                y = _run(spec, a, p, y)
            return np.zeros((0,) + np.shape(y)[1:], np.float32)
        return np.concatenate(outs)

    def predict(self, x, batch_size=1000):
        """argmax of the logits (int64, (N,)); one output: 1 where the logit is > 0.

        Parameters
        ----------
        x : ndarray, (N, in_features) or (N, C, H, W), real; cast to float32
        batch_size : int >= 1
            Rows per pass through the ops.

        Returns
        -------
        ndarray of int64, (N,)
            The predicted class of each row.
        """
        z = self.predict_logits(x, batch_size)
        if z.ndim != 2:                          # a model of no Dense: argmax over what?
            raise ValueError(f"predict: the logits have shape {z.shape}, expected (N, outputs)")
        if z.shape[1] == 1:
            return (z[:, 0] > 0).astype(np.int64)
        return z.argmax(axis=1)

    def save(self, path):
        """Write one .npz atomically: ``meta`` (JSON: format, version, ops) and ``{i}/{name}`` arrays.

        Parameters
        ----------
        path : str or PathLike
            The file to write (no suffix is added); ``load_packed`` reads it back.
        """
        meta = {**self.meta, "format": FORMAT, "version": FORMAT_VERSION, "ops": self.ops}
        arrays = {f"{i}/{k}": v for i, a in enumerate(self.arrays) for k, v in a.items()}
        arrays["meta"] = np.array(json.dumps(meta))
        atomic_savez(path, arrays)

    def __repr__(self):
        lines = [f"  {s['op']}({s['name']})" for s in self.ops]
        return "PackedModel(\n" + "\n".join(lines) + f"\n) # {self.nbytes} bytes"


@reads_file("packed model")
def load_packed(path):
    """Read a ``PackedModel`` written by ``PackedModel.save``.

    Parameters
    ----------
    path : str or PathLike
        A packed .npz of format ``FORMAT``, version ``FORMAT_VERSION``.

    Returns
    -------
    PackedModel
        With the saved ops, arrays and meta. Another format or version, an op not in
        ``OPS`` or arrays that do not fit the ops raise ``refbinn.errors.FileFormatError``
        naming the file.
    """
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    if "meta" not in data:
        raise ValueError(f"load_packed: {path} is not a packed refbinn model (no 'meta' entry)")
    meta = json.loads(str(data["meta"]))
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"load_packed: {path} has format {meta.get('format')!r} version "
                         f"{meta.get('version')!r}; this refbinn reads {FORMAT!r} version {FORMAT_VERSION}")
    ops = meta.pop("ops")
    for i, spec in enumerate(ops):
        if spec.get("op") not in OPS:
            raise ValueError(f"load_packed: {path}: op {i} names {spec.get('op')!r}, which is not one of "
                             f"{', '.join(map(repr, OPS))}")
    arrays = [{} for _ in ops]
    for key, v in data.items():
        if key != "meta":
            i, name = key.split("/", 1)
            arrays[int(i)][name] = v
    check_ops(ops, arrays)
    return PackedModel(ops, arrays, {k: v for k, v in meta.items() if k not in ("format", "version")})
