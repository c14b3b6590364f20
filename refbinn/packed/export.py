"""Export: a ``Sequential`` of +-1 weights in evaluation mode -> a ``PackedModel``.

    chain(h) >= 0  <=>  dir * h >= t        (per channel, for a monotone chain ending in sign)
    max(f(x)) = f(max(x))                   (MaxPool past a non-decreasing f)

``export(model, params, bn_state)`` walks the layers and writes a list of ops.
Binary layers give exact integers, as the float matmul of +-1 values does. A chain
of per-channel monotone layers (bias, BatchNorm, ReLU, Tanh, Dropout, and MaxPool
moved across them) ending in ``SignActivation`` becomes one threshold op
(``refbinn/packed/fold.py``); a pool inside a chain moves in front of it (on
integers) or behind the sign. BatchNorm on an exact integer input keeps the float
model's operation order, after a real-valued layer it is folded into scale and shift.
The overview is in ``refbinn.packed``.

References: Courbariaux et al. (2016), BinaryNet (sign activations, BN before sign).
"""
from __future__ import annotations

import numpy as np

from ..checks import check_array_dict, check_real
from ..kernels import pack_conv_weight, pack_signs
from ..nn import (BatchNorm, Conv2d, Dense, Dropout, Flatten, MaxPool2d, ReLU, SignActivation,
                 Tanh)
from .fold import bn_op, threshold_op
from .model import PackedModel

_ELEMENTWISE = (BatchNorm, ReLU, Tanh, Dropout)
_SUPPORTED = "Dense, Conv2d, BatchNorm, ReLU, Tanh, MaxPool2d, Flatten, Dropout, SignActivation"


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


def _param_shapes(layer):
    """The shape of each parameter ``layer.kinds`` names (Dense, Conv2d, BatchNorm)."""
    if isinstance(layer, Dense):
        o, w = layer.out_features, (layer.out_features, layer.in_features)
    elif isinstance(layer, Conv2d):
        o, w = layer.out_channels, (layer.out_channels, layer.in_channels, *layer.kernel_size)   # OIHW
    else:
        o = layer.num_features
        w = (o,)
    return {"weight": w, "bias": (o,)}


def _check_bn_state(layer, s):
    """ValueError naming the layer and the statistic unless ``s`` holds both running statistics of
    the BatchNorm ``layer``, of shape (C,), finite, the variance >= 0: a NaN folded into the
    thresholds gives a constant sign, and the packed model one class for every input (no error)."""
    for k in ("running_mean", "running_var"):
        if k not in s:
            raise ValueError(f"export: bn_state lacks '{layer.name}.{k}'")
        v = check_real(f"export: layer '{layer.name}': {k}", s[k], "iuf")
        if v.shape != (layer.num_features,):
            raise ValueError(f"export: layer '{layer.name}': {k} has shape {v.shape}, expected "
                             f"({layer.num_features},)")
        bad = ~np.isfinite(v) | ((v < 0) if k == "running_var" else False)
        if bad.any():
            c = int(np.argmax(bad))
            raise ValueError(f"export: layer '{layer.name}': {k} is {v[c]} at channel {c}, expected a finite "
                             f"value{' >= 0' if k == 'running_var' else ''} (damaged BatchNorm statistics)")


def _check_params(model, params, bn_state):
    """ValueError unless ``params`` holds every parameter of ``model`` with its layer's shape:
    a weight of another shape would pack into words the ops read as other signs (no error);
    and unless every BatchNorm's running statistics are usable (``_check_bn_state``)."""
    if not hasattr(model, "layers"):
        raise ValueError(f"export: model must be a Sequential, got {type(model).__name__}")
    for name, d in (("params", params), ("bn_state", bn_state)):
        check_array_dict(f"export: {name}", d)
    for layer in model.layers:
        if layer.kinds:
            shapes, p = _param_shapes(layer), _local(params, layer)
            for k in layer.kinds:
                if k not in p:
                    raise ValueError(f"export: params lack '{layer.name}.{k}'")
                layer._param(p, k, shapes[k])         # names the layer and both shapes
        if isinstance(layer, BatchNorm):
            _check_bn_state(layer, _local(bn_state, layer))


def _pool_op(layer):
    return {"op": "maxpool", "name": layer.name, "kernel": list(layer.kernel_size),
            "stride": list(layer.stride)}, {}


def _linear_op(layer, p, binary_input):
    w = p["weight"]                    # there, of the layer's shape: _check_params
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
        A layer of another type (named), a weight that is not +-1, a missing parameter or one
        of another shape than its layer's, BatchNorm running statistics missing, of another
        shape, or not finite (a negative variance too).
    """
    _check_params(model, params, bn_state)
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
                emit(threshold_op(layer.name, chain, bias, c, dtype,
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
            emit(bn_op(layer, p, s, exact))
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
