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

The file, for a reader in other code (``numpy.load(path, allow_pickle=False)``):
``meta`` is a 0-d unicode array holding one JSON object (``str(z["meta"])``: format
``"refbinn.packed"``, version 1, ``ops``, and what the exporter recorded); op i's arrays
are ``"{i}/{key}"``. Weight words are ``refbinn.kernels.pack_signs`` of the +-1 weight
rows: bit b of word w is element 64 w + b, bit 1 = -1, padding bits 0. The batch flows
through the ops in order; every float operation is one float32 IEEE operation in the
order written (no fused multiply-add), so a reader gets the same bits::

    op            arrays (float32 unless said)        input -> output
    dense_real    words (n, ceil(k/64))               float32 (N, k) -> float32 (N, n):
                                                        x @ sign(W).T summed in the order of
                                                        ``refbinn.kernels.gemv`` (total - 2 h)
    dense_binary  words (n, ceil(k/64))               signs (N, k) or their words -> int32 (N, n):
                                                        k - 2 popcount(x ^ w) (exact)
    conv_real     words (O, ceil(C kh kw / 64))       float32 (N, C, H, W) -> float32 (N, O, Ho, Wo):
                                                        im2col rows of the zero-padded input, each
                                                        window flattened in (c, i, j) order as the
                                                        weight rows (O, C, kh, kw) are, then as
                                                        dense_real; 'stride', 'pads' [t, b, l, r]
    conv_binary   words (O, kh kw ceil(C/64)),        signs (N, C, H, W) -> int32 (N, O, Ho, Wo):
                  tap_sums int32 (kh kw, O)             the cross-correlation of +-1 values with
                                                        zero padding (exact integers; pads count 0)
    bias          bias (C,)                           x.astype(float32) + bias (per channel)
    affine        scale, shift (C,)                   (x * scale) + shift: two roundings, no FMA
    batchnorm     mean, inv_std [, weight, bias]      ((x - mean) * inv_std) [* weight + bias],
                                                        BatchNorm.forward's order
    threshold     dirs, t (C,): both int32 or         x * dirs >= t (compared as values, per
                  both float32; spec 'pack'             channel): +1.0 where true, else -1.0
                                                        (NaN -> -1.0); with 'pack' and a
                                                        dense_binary of k = C next, the same signs
                                                        as packed words (bit 1 = -1)
    to_float                                          x.astype(float32)
    pm1                                               +1.0 where x >= 0, else -1.0
    relu, tanh                                        max(x, 0); NumPy's float32 np.tanh(x)
    maxpool       spec 'kernel', 'stride'             max over each window, no padding, floor
    flatten                                           (N, ...) -> (N, prod(...)), C order

The input is what the float model takes: for MNIST ``refbinn.data.normalize`` of the
uint8 images, ((u8 / 255) - mean) / std with every step in float32, shaped (N, 784) for
an MLP and (N, 1, 28, 28) for a CNN; the file does not record it.

Modules (this one only re-exports them)::

    refbinn/packed/fold.py     BatchNorm -> scale, shift; BN -> sign -> thresholds (fit_threshold)
    refbinn/packed/model.py    PackedModel: the ops, their forward pass, save / load_packed
    refbinn/packed/check.py    what each op's spec and arrays must hold (checked on load)
    refbinn/packed/export.py   export: Sequential -> PackedModel (module ``refbinn.packed.export``;
                               the package's ``export`` is its function of that name)
    refbinn/packed/cli.py      the ``refbinn export`` and ``refbinn predict`` commands
"""
from __future__ import annotations

from .cli import cli_export, cli_predict
from .export import export
from .fold import FLOAT_BOUND, fit_threshold, float_keys, float_values
from .model import FORMAT, FORMAT_VERSION, PackedModel, load_packed

__all__ = ["FLOAT_BOUND", "FORMAT", "FORMAT_VERSION", "PackedModel", "cli_export", "cli_predict", "export",
           "fit_threshold", "float_keys", "float_values", "load_packed"]
