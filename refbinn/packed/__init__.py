"""Packed inference: a binary network at 1 bit per weight, predicting with the bitwise kernels::

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

Modules (this one only re-exports them):

    refbinn/packed_fold.py     BatchNorm -> scale, shift; BN -> sign -> thresholds (fit_threshold)
    refbinn/packed_model.py    PackedModel: the ops, their forward pass, save / load_packed
    refbinn/packed_export.py   export: Sequential -> PackedModel
    refbinn/packed_cli.py      the ``refbinn export`` and ``refbinn predict`` commands
"""
from __future__ import annotations

from .cli import cli_export, cli_predict
from .export import export
from .fold import FLOAT_BOUND, fit_threshold, float_keys, float_values
from .model import FORMAT, FORMAT_VERSION, PackedModel, load_packed

__all__ = ["FLOAT_BOUND", "FORMAT", "FORMAT_VERSION", "PackedModel", "cli_export", "cli_predict", "export",
           "fit_threshold", "float_keys", "float_values", "load_packed"]
