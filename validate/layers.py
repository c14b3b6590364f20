"""Every refbinn layer and loss against torch: forward, new state and VJP.

For each case the refbinn layer runs ``forward`` then ``backward(dy)`` with a
random cotangent ``dy``; torch runs the same computation (validate.torch_ref)
and ``torch.autograd.grad(y, (x, *params), grad_outputs=dy)``. Compared: the
output y, the new BatchNorm state, dx and every parameter gradient; the row's
deviation is the largest over these (validate.common.dev). Tolerances:
relative 1e-10 in float64, 1e-5 in float32.

Dropout uses the same mask on both sides by drawing it as refbinn documents
(``Generator(seed).random(x.shape, dtype=float32) >= p``, keep where true)
from an identically seeded Generator.
"""
from __future__ import annotations

import numpy as np
import torch

from refbinn import nn as rnn
from refbinn.nn.conv import Conv2d
from refbinn.nn.pool import MaxPool2d

from . import torch_ref as tr
from .common import TOL, Row, max_dev

SEED = 0


def _t(a, grad=False):
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.requires_grad_(grad) if grad else t


def compare_layer(layer, x, params, state, train, torch_fn, *, seed=SEED):
    """Run one refbinn layer and its torch twin; return dict name -> (refbinn, torch).

    ``torch_fn(x, params, state) -> (y, new_state)`` with torch tensors.
    """
    rng = np.random.default_rng(seed + 1)
    y, cache, new_state = layer.forward(params, x, state, train=train,
                                        rng=np.random.default_rng(seed))
    dy = rng.standard_normal(y.shape).astype(x.dtype)
    dx, grads = layer.backward(params, cache, dy)

    xt = _t(x, True)
    pt = {k: _t(v, True) for k, v in params.items()}
    st = {k: _t(v) for k, v in state.items()}
    yt, new_st = torch_fn(xt, pt, st)
    inputs = [xt, *pt.values()]
    gt = torch.autograd.grad(yt, inputs, grad_outputs=_t(dy), allow_unused=True)
    gt = [torch.zeros_like(i) if g is None else g for g, i in zip(gt, inputs)]

    pairs = {"y": (y, yt), "dx": (dx, gt[0])}
    for k, g in zip(pt, gt[1:]):
        pairs[f"d{k}"] = (grads[k], g)
    for k in new_st:
        pairs[k] = (new_state[k], new_st[k])
    for k, v in new_state.items():
        if k not in new_st:
            pairs[k] = (v, float("nan") * np.ones_like(v))     # a state torch does not have: fail
    return pairs


def compare_loss(fn, torch_fn, pred, target):
    """refbinn loss ``(loss, dpred)`` against torch's loss and its autograd gradient."""
    loss, dpred = fn(pred, target)
    pt = _t(pred, True)
    lt = torch_fn(pt, _t(target))
    (gt,) = torch.autograd.grad(lt, pt)
    return {"loss": (np.array(loss), lt), "dpred": (dpred, gt)}


# -- the cases ---------------------------------------------------------------------
def _bn_case(shape, train, affine, momentum=0.15, eps=1e-4):
    def case(dtype, rng):
        c = shape[1]
        layer = rnn.BatchNorm(c, eps=eps, momentum=momentum, affine=affine, name="bn")
        x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
        params = {}
        if affine:
            params = {"weight": rng.uniform(0.5, 1.5, c).astype(dtype),
                      "bias": rng.standard_normal(c).astype(dtype)}
        state = {"running_mean": rng.standard_normal(c).astype(dtype),
                 "running_var": rng.uniform(0.5, 2.0, c).astype(dtype)}

        def tf(xt, pt, st):
            y, rm, rv = tr.batch_norm(xt, st["running_mean"], st["running_var"], train=train,
                                      momentum=momentum, eps=eps, weight=pt.get("weight"),
                                      bias=pt.get("bias"))
            return y, {"running_mean": rm, "running_var": rv}
        return compare_layer(layer, x, params, state, train, tf)
    return case


def _dense_case(bias):
    def case(dtype, rng):
        layer = rnn.Dense(7, 5, bias=bias, name="fc")
        params, _ = layer.init(rng, dtype)
        x = rng.standard_normal((6, 7)).astype(dtype)
        return compare_layer(layer, x, params, {}, True,
                             lambda xt, pt, st: (tr.linear(xt, pt["weight"], pt.get("bias")), {}))
    return case


def _conv_case(cin, cout, k, stride, padding, bias, hw=(7, 6)):
    def case(dtype, rng):
        layer = Conv2d(cin, cout, kernel_size=k, stride=stride, padding=padding, bias=bias, name="conv")
        params, _ = layer.init(rng, dtype)
        x = rng.standard_normal((3, cin) + hw).astype(dtype)
        return compare_layer(layer, x, params, {}, True, lambda xt, pt, st: (
            tr.conv2d(xt, pt["weight"], pt.get("bias"), stride=stride, padding=padding), {}))
    return case


def _pool_case(k, stride, ties, hw=(6, 8)):
    def case(dtype, rng):
        layer = MaxPool2d(k, stride, name="pool")
        x = rng.standard_normal((2, 3) + hw)
        if ties:
            x = np.round(x)                     # many equal maxima: the first in scan order wins
        x = x.astype(dtype)
        return compare_layer(layer, x, {}, {}, True,
                             lambda xt, pt, st: (tr.max_pool2d(xt, k, stride), {}))
    return case


def _simple_case(layer_fn, torch_fn, shape, train=True):
    def case(dtype, rng):
        layer = layer_fn()
        x = rng.standard_normal(shape).astype(dtype)
        return compare_layer(layer, x, {}, {}, train, lambda xt, pt, st: (torch_fn(xt), {}))
    return case


def _dropout_case(p, shape, train):
    def case(dtype, rng):
        layer = rnn.Dropout(p, name="drop")
        x = rng.standard_normal(shape).astype(dtype)
        # the mask refbinn draws from Generator(SEED), reproduced from its documented draw
        keep = torch.from_numpy(np.random.default_rng(SEED).random(shape, dtype=np.float32) >= p)
        fn = (lambda xt: tr.dropout(xt, keep, p)) if train else (lambda xt: xt * 1)
        return compare_layer(layer, x, {}, {}, train, lambda xt, pt, st: (fn(xt), {}))
    return case


def _ce_case(scale):
    def case(dtype, rng):
        z = (rng.standard_normal((8, 5)) * scale).astype(dtype)
        y = rng.integers(0, 5, 8)
        return compare_loss(rnn.softmax_cross_entropy, tr.cross_entropy, z, y)
    return case


def _logistic_case(shape, scale=3.0):
    def case(dtype, rng):
        z = (rng.standard_normal(shape) * scale).astype(dtype)
        t = rng.integers(0, 2, shape).astype(dtype)
        return compare_loss(rnn.logistic_loss, tr.logistic_loss, z, t)
    return case


def _mse_case(shape):
    def case(dtype, rng):
        p = rng.standard_normal(shape).astype(dtype)
        t = rng.standard_normal(shape).astype(dtype)
        return compare_loss(rnn.mse, tr.mse, p, t)
    return case


CASES = {
    "Dense": _dense_case(False),
    "Dense + bias": _dense_case(True),
    "Conv2d 3x3 pad 1": _conv_case(3, 4, 3, 1, 1, False),
    "Conv2d 3x3 stride 2 + bias": _conv_case(2, 3, 3, 2, 0, True, hw=(8, 7)),
    "Conv2d 2x2 'same'": _conv_case(2, 3, 2, 1, "same", False),
    "MaxPool2d 2x2": _pool_case(2, None, False),
    "MaxPool2d 2x2 ties": _pool_case(2, None, True),
    "MaxPool2d 3x3 stride 2": _pool_case(3, 2, True, hw=(7, 9)),
    "BatchNorm (N,C) train": _bn_case((16, 5), True, False),
    "BatchNorm (N,C) eval": _bn_case((16, 5), False, False),
    "BatchNorm (N,C) train affine": _bn_case((16, 5), True, True, 0.1, 1e-5),
    "BatchNorm (N,C,H,W) train": _bn_case((4, 3, 5, 6), True, False, 0.1, 1e-5),
    "BatchNorm (N,C,H,W) eval": _bn_case((4, 3, 5, 6), False, False, 0.1, 1e-5),
    "BatchNorm (N,C,H,W) eval affine": _bn_case((4, 3, 5, 6), False, True),
    "ReLU": _simple_case(lambda: rnn.ReLU(), tr.relu, (5, 4, 3)),
    "Tanh": _simple_case(lambda: rnn.Tanh(), tr.tanh, (6, 7)),
    "Flatten": _simple_case(lambda: rnn.Flatten(), tr.flatten, (3, 2, 4, 5)),
    "Dropout train p=0.2": _dropout_case(0.2, (10, 12), True),
    "Dropout eval": _dropout_case(0.5, (10, 12), False),
    "softmax_cross_entropy": _ce_case(3.0),
    "softmax_cross_entropy |z|~1e4": _ce_case(1e4),
    "logistic_loss (N,)": _logistic_case((9,)),
    "logistic_loss (N,1) |z|~1e3": _logistic_case((9, 1), 1e3),
    "mse": _mse_case((7, 3)),
}


def run(cases=None, dtypes=(np.float64, np.float32)):
    """Rows: one per case and dtype."""
    rows = []
    for name, case in (CASES if cases is None else cases).items():
        for dtype in dtypes:
            dtype = np.dtype(dtype)
            try:
                pairs = case(dtype, np.random.default_rng(SEED))
                d, worst = max_dev(pairs)
                note = f"worst: {worst}"
            except Exception as exc:                     # a crash is a failed row, not a crash of the table
                d, note = float("inf"), f"error: {type(exc).__name__}: {exc}"
            rows.append(Row("layers", f"{name} [{dtype.name}]", d, TOL[dtype], note))
    return rows
