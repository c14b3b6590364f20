"""Packed inference: a binary network at 1 bit per weight, predicting with the bitwise kernels.

    real input:    y = x @ sign(W).T = total(x) - 2 h(x, bits)      (binary_weight_matmul)
    binary input:  y = K - 2 popcount(pack(x) ^ pack(W))             (binary_gemm, binary_conv2d)
    BatchNorm:     y = x * scale + shift,   scale = gamma / sqrt(var + eps),
                                            shift = beta - mean * scale
    BN -> sign:    s = +1  <=>  dir * h >= t                          (per channel, dir = +-1)

``export(model, params, bn_state)`` walks a ``Sequential`` in evaluation mode
and writes a list of ops. A value between ops is real (float32), an integer
pre-activation (int32, the exact output of a binary layer), or a sign value
(any array whose sign, 0 -> +1, is the +-1 activation; packed into uint64 words
right before a binary Dense). Real activations go through the weight-only
kernel, sign activations through the xnor-popcount GEMM or convolution.

Equality with the float model (``model.apply``, float32):

* Binary layers give exact integers, as the float matmul of +-1 values does.
* A chain of per-channel monotone layers (bias, BatchNorm, ReLU, Tanh, Dropout,
  and MaxPool moved across them) ending in ``SignActivation`` becomes a
  threshold: since every float operation is monotone, the float model's
  decision ``chain(h) >= 0`` is ``dir * h >= t`` for one ``t`` per channel.
  ``fit_threshold`` finds ``t`` by bisection on the float model's own layers,
  over every integer ``|h| <= K`` (binary layers) or every float32
  ``|h| <= 2**100`` (real layers), so the packed signs equal the float ones
  whenever ``h`` does. A negative BN scale gives ``dir = -1``.
* BatchNorm on an exact integer input keeps the float model's operation order
  ``((x - mean) * inv_std) * gamma + beta``, so the logits are bit-identical.
  After a real-valued layer (summed in another order than BLAS, rounding
  differs at ~1e-7 relative) it is folded into ``scale`` and ``shift``.
* MaxPool commutes with non-decreasing maps, max(f(x)) = f(max(x)), so a pool
  inside a chain moves in front of it (on integers) or behind the sign.

``PackedModel.save`` writes one .npz (atomically): uint64 weight words, folded
constants and thresholds, and the op list as JSON with a format version.

References: Courbariaux et al. (2016), BinaryNet (sign activations, BN before
sign); Rastegari et al. (2016), XNOR-Net (xnor-popcount products).
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
from numba import njit, prange
from numpy.lib.stride_tricks import sliding_window_view

from .kernels import (ConvWeights, binary_conv2d, binary_gemm_panels, binary_weight_matmul,
                      pack_conv_weight, pack_signs, to_panels)
from .nn import (BatchNorm, Conv2d, Dense, Dropout, Flatten, MaxPool2d, ReLU, SignActivation,
                 Tanh)
from .optim.base import atomic_savez

FORMAT = "refbinn.packed"
FORMAT_VERSION = 1
FLOAT_BOUND = 2.0 ** 100          # real pre-activations beyond it decide as at the bound
_ELEMENTWISE = (BatchNorm, ReLU, Tanh, Dropout)
_SUPPORTED = "Dense, Conv2d, BatchNorm, ReLU, Tanh, MaxPool2d, Flatten, Dropout, SignActivation"


# -- thresholds ----------------------------------------------------------------------------
def float_keys(v):
    """Integer keys of float32 values, in the order of the values (-0.0 and +0.0 share key 0)."""
    bits = np.asarray(v, np.float32).view(np.int32).astype(np.int64)
    return np.where(bits >= 0, bits, -(bits & 0x7FFFFFFF))


def float_values(k):
    """The float32 values of ``float_keys``; value(-k) = -value(k)."""
    k = np.asarray(k, np.int64)
    return np.where(k >= 0, k, -k | 0x80000000).astype(np.uint32).view(np.float32)


def fit_threshold(decide, channels, bound, value=None):
    """dirs, t with ``decide(value(k))[c] == (dirs[c] * k >= t[c])`` for every key |k| <= bound.

    ``decide`` maps one value per channel, shape (C,), to booleans and must be
    monotone in the key, per channel. dirs = -1 where it is true at -bound and
    false at +bound; then ``g(k) = decide(value(dirs * k))`` is non-decreasing
    and t is its first true key, found by bisection (t = bound + 1: never true).

    Parameters
    ----------
    decide : callable, (C,) values -> (C,) bool
    channels : int, C
    bound : int, keys run over [-bound, bound]
    value : callable keys -> values (default: the integer itself); ``value(-k) = -value(k)``

    Returns
    -------
    dirs : int64 (C,) in {-1, +1};  t : int64 (C,) in [-bound, bound + 1]
    """
    value = (lambda k: k) if value is None else value
    lo, hi = np.full(channels, -bound, np.int64), np.full(channels, bound, np.int64)
    d_lo, d_hi = decide(value(lo)), decide(value(hi))
    dirs = np.where(d_lo & ~d_hi, -1, 1).astype(np.int64)
    a, b = lo - 1, hi + 1                        # g(a) false, g(b) true (virtual ends)
    while True:
        active = b - a > 1
        if not active.any():
            return dirs, b
        m = np.where(active, (a + b) // 2, 0)    # 0 lies in the domain; ignored when inactive
        g = np.asarray(decide(value(dirs * m)), bool)
        a = np.where(active & ~g, m, a)
        b = np.where(active & g, m, b)


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


# -- runtime ops ---------------------------------------------------------------------------
def _per_channel(a, x):
    return a.reshape((1, -1) + (1,) * (x.ndim - 2))          # (1, C[, 1, 1]) against (N, C[, H, W])


def _check_shape(spec, x, want):
    if x.ndim != len(want) or any(w is not None and w != s for w, s in zip(want, x.shape)):
        shown = "(" + ", ".join("N" if w is None else str(w) for w in want) + ")"
        raise ValueError(f"packed layer '{spec['name']}': input has shape {tuple(x.shape)}, "
                         f"expected {shown}")


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
        if spec["pack"] and h.ndim == 2:
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
        return _max_pool(x, spec["kernel"], spec["stride"])
    if op == "flatten":
        return x.reshape(x.shape[0], -1)                     # (N, C*H*W)
    raise ValueError(f"packed model: unknown op {op!r}")


class PackedModel:
    """A packed network: ``ops`` (JSON-able dicts) and their ``arrays`` (dicts of ndarrays).

    Build it with ``export`` or ``load_packed``; predict with ``predict_logits`` / ``predict``.
    """

    def __init__(self, ops, arrays, meta=None):
        if len(ops) != len(arrays):
            raise ValueError(f"PackedModel: {len(ops)} ops but {len(arrays)} array sets")
        self.ops, self.arrays, self.meta = list(ops), list(arrays), dict(meta or {})
        self._prep = []
        for spec, a in zip(self.ops, self.arrays):           # derived layouts, not saved
            p = {}
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
        if not outs:
            return np.zeros((0,) + x.shape[1:], np.float32)
        return np.concatenate(outs)

    def predict(self, x, batch_size=1000):
        """argmax of the logits (int64, (N,)); one output: 1 where the logit is > 0."""
        z = self.predict_logits(x, batch_size)
        if z.ndim == 2 and z.shape[1] == 1:
            return (z[:, 0] > 0).astype(np.int64)
        return z.argmax(axis=1)

    def save(self, path):
        """Write one .npz atomically: ``meta`` (JSON: format, version, ops) and ``{i}/{name}`` arrays."""
        meta = {**self.meta, "format": FORMAT, "version": FORMAT_VERSION, "ops": self.ops}
        arrays = {f"{i}/{k}": v for i, a in enumerate(self.arrays) for k, v in a.items()}
        arrays["meta"] = np.array(json.dumps(meta))
        atomic_savez(path, arrays)

    def __repr__(self):
        lines = [f"  {s['op']}({s['name']})" for s in self.ops]
        return "PackedModel(\n" + "\n".join(lines) + f"\n) # {self.nbytes} bytes"


def load_packed(path):
    """Read a ``PackedModel`` written by ``PackedModel.save``."""
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    if "meta" not in data:
        raise ValueError(f"load_packed: {path} is not a packed refbinn model (no 'meta' entry)")
    meta = json.loads(str(data["meta"]))
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"load_packed: {path} has format {meta.get('format')!r} version "
                         f"{meta.get('version')!r}; this refbinn reads {FORMAT!r} version {FORMAT_VERSION}")
    ops = meta.pop("ops")
    arrays = [{} for _ in ops]
    for key, v in data.items():
        if key != "meta":
            i, name = key.split("/", 1)
            arrays[int(i)][name] = v
    return PackedModel(ops, arrays, {k: v for k, v in meta.items() if k not in ("format", "version")})


# -- export ---------------------------------------------------------------------------------
def _local(flat, layer):
    prefix = layer.name + "."
    return {k[len(prefix):]: np.asarray(v) for k, v in flat.items() if k.startswith(prefix)}


def _nondecreasing(layer, p):
    """True when the layer is a non-decreasing map of each input (BN: no negative gamma)."""
    return not isinstance(layer, BatchNorm) or not layer.affine or bool(np.all(p["weight"] >= 0))


def _scan_chain(layers, i, params, state):
    """Layers i.. up to a SignActivation: elementwise (layer, p, s) in order, pools split in
    (front, back), and the index of the sign; None if another layer comes first or a pool
    cannot be moved out of the chain."""
    chain, pools = [], []
    for j in range(i, len(layers)):
        layer = layers[j]
        if isinstance(layer, SignActivation):
            break
        if isinstance(layer, MaxPool2d):
            pools.append((len(chain), layer))
        elif isinstance(layer, _ELEMENTWISE):
            if not isinstance(layer, Dropout):
                chain.append((layer, _local(params, layer), _local(state, layer)))
        else:
            return None
    else:
        return None
    up = [_nondecreasing(layer, p) for layer, p, _ in chain]
    front = 0                       # pools movable in front of the chain: a prefix of them
    while front < len(pools) and all(up[:pools[front][0]]):
        front += 1
    if not all(all(up[pos:]) for pos, _ in pools[front:]):
        return None
    return chain, [l for _, l in pools[:front]], [l for _, l in pools[front:]], j


def _pool_op(layer):
    return {"op": "maxpool", "name": layer.name, "kernel": list(layer.kernel_size),
            "stride": list(layer.stride)}, {}


def _threshold_op(name, chain, bias, channels, dtype, integer_bound):
    """The threshold op of ``sign(chain(h + bias))``: integer keys |h| <= K, else float32 keys."""
    for layer, _, _ in chain:
        if isinstance(layer, BatchNorm) and layer.num_features != channels:
            raise ValueError(f"export: layer '{layer.name}' has {layer.num_features} channels, "
                             f"its input {channels}")

    def decide(v):                                            # the float model's own layers
        y = np.asarray(v, dtype).reshape(1, channels)         # (1, C)
        if bias is not None:
            y = y + bias.astype(dtype)
        for layer, p, s in chain:
            y = layer.forward(p, y, s, train=False)[0]
        return (y >= 0).reshape(-1)

    if integer_bound is not None:
        dirs, t = fit_threshold(decide, channels, integer_bound)
        arrays = {"dirs": dirs.astype(np.int32), "t": t.astype(np.int32)}
    else:
        bound = int(float_keys(np.float32(FLOAT_BOUND)))
        dirs, t = fit_threshold(decide, channels, bound, float_values)
        # constant channels: +-inf, so values past the bound decide as at the bound
        t = np.where(t > bound, np.inf, np.where(t <= -bound, -np.inf, float_values(t)))
        arrays = {"dirs": dirs.astype(np.float32), "t": t.astype(np.float32)}
    return {"op": "threshold", "name": name, "pack": False}, arrays


def _bn_op(layer, p, s, exact):
    """BatchNorm in eval mode: the float model's order on exact inputs, else scale and shift."""
    if exact:
        a = {"mean": s["running_mean"], "inv_std": 1.0 / np.sqrt(s["running_var"] + layer.eps)}
        if layer.affine:
            a.update(weight=p["weight"], bias=p["bias"])
        return {"op": "batchnorm", "name": layer.name}, a
    scale = 1.0 / np.sqrt(s["running_var"].astype(np.float64) + layer.eps)
    shift = -s["running_mean"] * scale
    if layer.affine:
        scale = scale * p["weight"]
        shift = p["bias"] + shift * p["weight"]
    return {"op": "affine", "name": layer.name}, {"scale": scale.astype(np.float32),
                                                  "shift": shift.astype(np.float32)}


def _linear_op(layer, p, binary_input):
    w = p.get("weight")
    if w is None:
        raise ValueError(f"export: params lack '{layer.name}.weight'")
    if not np.all((w == 1) | (w == -1)):
        raise ValueError(f"export: layer '{layer.name}': weight must hold only +-1 values "
                         f"(the mode weights, opt.params(state)), got values in "
                         f"[{w.min():.4g}, {w.max():.4g}]")
    if isinstance(layer, Dense):
        spec = {"name": layer.name, "k": layer.in_features, "n": layer.out_features}
        spec["op"] = "dense_binary" if binary_input else "dense_real"
        return spec, {"words": pack_signs(w)}
    (top, bottom), (left, right) = layer.pads
    pad = layer.padding
    spec = {"name": layer.name, "shape": list(w.shape), "stride": list(layer.stride),
            "pads": [top, bottom, left, right],
            "padding": pad if isinstance(pad, str) else [int(v) for v in np.broadcast_to(pad, 2)]}
    if binary_input:
        cw = pack_conv_weight(w)
        return {**spec, "op": "conv_binary"}, {"words": cw.words, "tap_sums": cw.tap_sums}
    return {**spec, "op": "conv_real"}, {"words": pack_signs(w.reshape(w.shape[0], -1))}  # (O, C*kh*kw)


def export(model, params, bn_state):
    """Pack a ``Sequential`` of binary (+-1) weights for inference in evaluation mode.

    Parameters
    ----------
    model : Sequential of Dense, Conv2d, BatchNorm, ReLU, Tanh, MaxPool2d, Flatten,
        Dropout (identity) and SignActivation layers
    params : dict name -> array; Dense/Conv2d weights exactly +-1 (``opt.params(state)``)
    bn_state : dict of BatchNorm running statistics

    Returns
    -------
    PackedModel

    Raises
    ------
    ValueError
        A layer of another type (named), a weight that is not +-1, a missing parameter.
    """
    layers = list(model.layers)
    ops, arrays = [], []
    kind, exact = "real", True     # kind: 'real' | 'int' | 'sign'; exact: bit-identical so far
    dtype = np.dtype(np.float32)   # the float model's dtype at this point
    bias, channels, int_bound = None, None, None       # set by a Dense/Conv2d

    def emit(spec_arrays):
        ops.append(spec_arrays[0])
        arrays.append({k: np.ascontiguousarray(v) for k, v in spec_arrays[1].items()})

    def flush_bias():
        nonlocal bias, kind
        if bias is not None:
            emit(({"op": "bias", "name": ops[-1]["name"]}, {"bias": bias}))
            bias, kind = None, "real"

    def as_real():
        nonlocal kind
        flush_bias()
        if kind != "real":
            emit(({"op": "to_float" if kind == "int" else "pm1",
                   "name": ops[-1]["name"] if ops else "input"}, {}))
        kind = "real"

    i = 0
    while i < len(layers):
        layer = layers[i]
        p, s = _local(params, layer), _local(bn_state, layer)
        if isinstance(layer, (Dense, Conv2d)):
            if kind == "int":
                as_real()               # an integer feeding a Dense/Conv2d is a real input
            flush_bias()
            binary = kind == "sign"
            emit(_linear_op(layer, p, binary))
            kind, exact = ("int", True) if binary else ("real", False)
            dtype = np.result_type(np.float32, p["weight"].dtype)
            if layer.bias and "bias" not in p:
                raise ValueError(f"export: params lack '{layer.name}.bias'")
            bias = p["bias"] if layer.bias else None
            channels = layer.out_features if isinstance(layer, Dense) else layer.out_channels
            int_bound = int(np.prod(p["weight"].shape[1:])) if binary else None     # K
            i += 1
            continue
        found = None
        if kind != "sign" and isinstance(layer, (*_ELEMENTWISE, MaxPool2d)):
            found = _scan_chain(layers, i, params, bn_state)
        if found is not None:
            chain, front, back, j = found
            bns = [l.num_features for l, _, _ in chain if isinstance(l, BatchNorm)]
            c = bns[0] if bns else channels
            if c is not None:           # per-channel thresholds need the channel count
                for pool in front:
                    emit(_pool_op(pool))
                emit(_threshold_op(layer.name, chain, bias, c, dtype,
                                   int_bound if kind == "int" else None))
                for pool in back:
                    emit(_pool_op(pool))
                bias, kind, exact = None, "sign", True
                i = j + 1
                continue
        if isinstance(layer, SignActivation):
            flush_bias()
            kind, exact = "sign", True      # a real or integer array is its own sign value
        elif isinstance(layer, Dropout):
            pass                            # identity in evaluation mode
        elif isinstance(layer, BatchNorm):
            as_real()
            emit(_bn_op(layer, p, s, exact))
        elif isinstance(layer, (ReLU, Tanh)):
            as_real()
            emit(({"op": "relu" if isinstance(layer, ReLU) else "tanh", "name": layer.name}, {}))
        elif isinstance(layer, MaxPool2d):
            flush_bias()
            emit(_pool_op(layer))
        elif isinstance(layer, Flatten):
            flush_bias()
            emit(({"op": "flatten", "name": layer.name}, {}))
            channels = None
        else:
            raise ValueError(f"export: cannot pack layer '{layer.name}' ({type(layer).__name__}); "
                             f"supported layers: {_SUPPORTED}")
        i += 1
    as_real()
    for k, spec in enumerate(ops):          # pack thresholds straight into words for a binary Dense
        nxt = next((o["op"] for o in ops[k + 1:] if o["op"] != "flatten"), None)
        if spec["op"] == "threshold" and nxt == "dense_binary":
            spec["pack"] = True
    n_float = sum(int(np.size(v)) for v in params.values()) + \
        sum(int(np.size(v)) for v in bn_state.values())
    return PackedModel(ops, arrays, {"float32_bytes": 4 * n_float})


# -- command line (wired up in refbinn/cli.py) -------------------------------------------------
def cli_export(args):
    """``refbinn export CHECKPOINT OUT``: pack the mode weights of a training checkpoint."""
    from . import models
    from .train import load_checkpoint
    ck = load_checkpoint(args.checkpoint)
    spec = ck["config"].get("meta", {}).get("model")
    if not spec or not hasattr(models, spec[0]):
        raise ValueError(f"export: {args.checkpoint} names no model builder in config['meta']['model'] "
                         f"(got {spec!r})")
    model = getattr(models, spec[0])(**spec[1])
    packed = export(model, ck["opt"].params(ck["opt_state"]), ck["bn_state"])
    packed.save(args.out)
    size, f32 = os.path.getsize(args.out), packed.meta["float32_bytes"]
    print(f"refbinn export: {args.checkpoint} ({spec[0]}) -> {args.out}")
    print(f"float32 {f32} bytes, packed {size} bytes, ratio {f32 / size:.1f}x")
    return 0


def cli_predict(args):
    """``refbinn predict PACKED --dataset mnist``: test accuracy and images per second."""
    from . import data as D
    if args.dataset not in ("mnist", "fashion-mnist"):
        raise ValueError(f"predict: dataset must be 'mnist' or 'fashion-mnist', got {args.dataset!r}")
    packed = load_packed(args.packed)
    ds = D.load_mnist(args.data_root, kind=args.dataset)
    x = D.normalize(ds.x_test, args.dataset)                               # (N, 28, 28)
    first = next((op["op"] for op in packed.ops if op["op"].startswith(("dense", "conv"))), "dense")
    x = x.reshape(len(x), -1) if first.startswith("dense") else x[:, None]   # (N, 784) or (N, 1, 28, 28)
    batch = int(args.batch_size or 1000)
    packed.predict_logits(x[:batch], batch)                                # warm-up: load compiled kernels
    t0 = time.perf_counter()
    pred = packed.predict(x, batch)
    seconds = time.perf_counter() - t0
    res = {"packed": args.packed, "dataset": args.dataset, "n_images": int(len(x)),
           "accuracy": float(np.mean(pred == ds.y_test)), "seconds": seconds,
           "images_per_s": len(x) / seconds, "batch_size": batch,
           "file_bytes": os.path.getsize(args.packed), "float32_bytes": packed.meta.get("float32_bytes")}
    out_dir = getattr(args, "out", None) or "results"
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"predict_{os.path.splitext(os.path.basename(args.packed))[0]}.json")
    with open(path + ".tmp", "w") as fh:
        json.dump(res, fh, indent=1)
    os.replace(path + ".tmp", path)
    print(f"refbinn predict: {args.packed} on {args.dataset} test ({len(x)} images): accuracy "
          f"{res['accuracy']:.4f}, {res['images_per_s']:.0f} images/s (batch {batch})")
    print(f"wrote {path}")
    return 0
