"""Bitwise kernels against numpy float32 on the same shapes and thread count.

    ratio = time(numpy float32) / time(binary kernel)        (> 1: the kernel is faster)

Every figure is a ratio of two timings taken in this run, in alternating blocks of
calls (a..., b..., a..., b...) so both see the same machine load; medians of the calls.
Numba and BLAS get the same thread count (``--threads``, via environment variables set
before numpy is imported). ``OMP_WAIT_POLICY=PASSIVE`` is set unless already given:
with spinning OpenMP workers a kernel on a shared machine can stall for milliseconds;
on a quiet machine ``OMP_WAIT_POLICY=ACTIVE`` is ~10% faster for the convolutions.

Cases:

- ``bgemm``: (256 x 2048) x (2048 x 2048). Binary: ``binary_gemm_panels`` on packed
  activations and prepacked weight panels, reported in T binary MAC/s.
  Float: ``x @ W.T``. Target >= 1.5 T on 2 threads and >= 15x.
- ``conv14`` / ``conv28``: 3x3 convolution, padding 1, batch 1, 14x14x256 -> 256 and
  28x28x128 -> 128. Binary: ``binary_conv2d`` from the float input (packing included)
  with a prepacked weight. Float: np.pad + im2col copy + float32 matmul. Target >= 8x.
- ``gemv``: batch 1 against a 4096 x 8192 weight. Binary: ``binary_weight_matmul`` (packed
  weight, float32 input). Float: ``W @ x`` with a float32 +-1 weight (128 MiB). Target >= 1.5x.
- ``pack_fraction``: packing the input as a fraction of the binary layer time, the worst
  of the dense layer (pack_signs of the 256 x 2048 input / (pack + bgemm)) and the two
  convolutions (channel packing inside binary_conv2d). Target <= 0.10.
- ``mlp``: a BinaryNet-style MLP 784-2048-2048-2048-10 (Dense -> BN -> sign per hidden
  layer, Dense -> BN logits) on the first MLP_INPUTS MNIST test images (found through
  REFBINN_DATA or the per-user cache; uniform pixels if absent). Binary: the model
  exported by ``refbinn.packed`` (input layer by ``binary_weight_matmul``, BN + sign as
  thresholds, ``binary_gemm_panels`` for the rest). Float: the model's eval forward
  ``model.apply``. Both give the same hidden signs up to float rounding in the first
  layer; the fraction of equal argmax predictions is reported next to the speed ratio.

Usage::

    python scripts/bench_kernels.py [--threads 2] [--quick] [--json] [--out results/bench_kernels.json]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_main, set_threads  # noqa: E402  (standard library only: numpy is not imported yet)

# -- settings -----------------------------------------------------------------------------
SEED = 0
THREADS = 2
GEMM = (256, 2048, 2048)                  # M, K, N
CONVS = {"conv14": (256, 14), "conv28": (128, 28)}   # C_in = C_out, H = W; 3x3, padding 1
GEMV = (4096, 8192)                       # N (outputs), K
MLP_SIZES = (784, 2048, 2048, 2048, 10)
MLP_INPUTS, QUICK_MLP_INPUTS = 10000, 2000
REPEATS, QUICK_REPEATS = 30, 9
PAUSE_S = 0.15                            # between timing blocks, see median_s


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=THREADS, help="Numba and BLAS threads")
    p.add_argument("--quick", action="store_true", help="fewer repeats and MLP inputs (< 40 s)")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads must be >= 1")
    if args.out is not None and args.out.is_dir():           # found only after the benchmark
        p.error(f"--out {args.out} is a folder; give the file to write")
    return args


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    set_threads(ARGS.threads)             # must come before numpy (BLAS) and numba are imported
    # Numba's OpenMP workers otherwise spin-wait at barriers; on a shared machine a
    # descheduled spinner can stall a 100 us kernel for milliseconds. Passive costs ~10%.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from refbinn.kernels import (binary_conv2d, binary_gemm_panels, binary_weight_matmul,  # noqa: E402
                             pack_conv_weight, pack_signs, to_panels)
from refbinn.kernels.pack import _pack_channels_kernel  # noqa: E402
from refbinn.nn import BatchNorm, Dense, Sequential, SignActivation, sign  # noqa: E402
from refbinn.io import atomic_write, json_dumps  # noqa: E402
from refbinn.packed import export  # noqa: E402


def median_s(*fns, repeats, rounds=3):
    """Median wall time in seconds of each fn(), measured in alternating blocks.

    Each of ``rounds`` rounds runs every fn in a block of calls after a pause
    (BLAS and OpenMP worker threads keep spinning for a while after a call and
    would steal the cores from the next block); the first call of a block is
    a warm-up and not timed. So every fn sees the same machine load.
    """
    per = max(2, -(-repeats // rounds))
    times = [[] for _ in fns]
    for _ in range(rounds):
        for fn, ts in zip(fns, times):
            time.sleep(PAUSE_S)
            fn()
            for _ in range(per):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
    return [float(np.median(ts)) for ts in times]


def pm1(shape, rng):
    return np.where(rng.standard_normal(shape) >= 0, 1, -1).astype(np.float32)


def bench_gemm(rng, repeats):
    M, K, N = GEMM
    x, w = pm1((M, K), rng), pm1((N, K), rng)
    a, bp = pack_signs(x), to_panels(pack_signs(w))
    tb, tf, tp = median_s(lambda: binary_gemm_panels(a, bp, N, K), lambda: x @ w.T,
                          lambda: pack_signs(x), repeats=repeats)
    assert np.array_equal(binary_gemm_panels(a, bp, N, K), (x @ w.T).astype(np.int32))
    macs = M * N * K
    return {"bgemm_tmacs": macs / tb / 1e12, "f32_gemm_gmacs": macs / tf / 1e9,
            "bgemm_ratio_vs_f32": tf / tb, "dense_pack_fraction": tp / (tp + tb),
            "bgemm_ms": 1e3 * tb, "f32_gemm_ms": 1e3 * tf}


def im2col_conv(x, w2, k=3, pad=1):
    """Float reference layer: zero padding, im2col copy, one float32 matmul; (N*Ho*Wo, O)."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = sliding_window_view(xp, (k, k), axis=(2, 3))              # (N, C, Ho, Wo, k, k) view
    N, C, Ho, Wo = cols.shape[:4]
    cols = cols.transpose(0, 2, 3, 1, 4, 5).reshape(N * Ho * Wo, C * k * k)   # copy
    return cols @ w2.T


def bench_conv(name, rng, repeats):
    C, H = CONVS[name]
    x = rng.standard_normal((1, C, H, H)).astype(np.float32)
    w = pm1((C, C, 3, 3), rng)
    cw, w2 = pack_conv_weight(w), w.reshape(C, C * 9)
    x3 = x.reshape(1, C, H * H)
    words = np.empty((1, H * H, (C + 63) // 64), np.uint64)
    tb, tf, tp = median_s(lambda: binary_conv2d(x, cw, 1, 1), lambda: im2col_conv(x, w2),
                          lambda: _pack_channels_kernel(x3, words), repeats=repeats)
    y = binary_conv2d(x, cw, 1, 1)
    ref = im2col_conv(np.where(x >= 0, np.float32(1), np.float32(-1)), w2)   # (H*W, O)
    assert np.array_equal(y[0].reshape(C, H * H).T, ref.astype(np.int32))
    return {f"{name}_ratio_vs_f32": tf / tb, f"{name}_binary_us": 1e6 * tb,
            f"{name}_f32_us": 1e6 * tf, f"{name}_binary_tmacs": H * H * C * C * 9 / tb / 1e12,
            f"{name}_pack_fraction": tp / tb}


def bench_gemv(rng, repeats):
    N, K = GEMV
    w = pm1((N, K), rng)                                             # 128 MiB float32
    x = rng.standard_normal(K).astype(np.float32)
    wp = pack_signs(w)
    tb, tf = median_s(lambda: binary_weight_matmul(x, wp), lambda: w @ x, repeats=repeats)
    y, ref = binary_weight_matmul(x, wp), (w.astype(np.float64) @ x)
    assert np.allclose(y, ref, rtol=0, atol=1e-4 * np.abs(x).sum())
    return {"gemv_ratio_vs_f32": tf / tb, "gemv_binary_us": 1e6 * tb, "gemv_f32_us": 1e6 * tf,
            "gemv_weight_mib": {"binary": wp.nbytes / 2**20, "float32": w.nbytes / 2**20}}


def mlp_inputs(rng, n_inputs):
    """The first n MNIST test images (normalised, flattened), or uniform pixels if no data."""
    from refbinn.data import DatasetNotFound, load_mnist, normalize
    try:
        images = load_mnist().x_test[:n_inputs]
    except DatasetNotFound:
        return rng.random((n_inputs, MLP_SIZES[0])).astype(np.float32), "synthetic"
    return normalize(images, "mnist").reshape(len(images), -1), "mnist-test"   # (N, 784)


def bench_mlp(rng, n_inputs, repeats):
    sizes = MLP_SIZES
    layers = []
    for k in range(1, len(sizes)):
        layers += [Dense(sizes[k - 1], sizes[k], name=f"fc{k}"),
                   BatchNorm(sizes[k], affine=False, name=f"bn{k}")]
        if k < len(sizes) - 1:
            layers.append(SignActivation(name=f"sign{k}"))
    model = Sequential(*layers)
    params, state = model.init(rng, np.float32)
    params = {k: sign(v) for k, v in params.items()}                  # +-1 mode weights
    x, source = mlp_inputs(rng, n_inputs)
    for i in range(3):                                               # realistic BN statistics
        _, _, state = model.forward(params, x[i * 500:(i + 1) * 500], state, train=True)
    packed = export(model, params, state)        # fc1 weight-only, then thresholds + binary GEMM

    tb, tf = median_s(lambda: packed.predict_logits(x, batch_size=len(x)),
                      lambda: model.apply(params, x, state), repeats=repeats)
    ref = model.apply(params, x, state).argmax(1)
    agree = float(np.mean(packed.predict(x, batch_size=len(x)) == ref))
    return {"mlp_images_per_s_ratio_vs_float": tf / tb, "mlp_binary_images_per_s": len(x) / tb,
            "mlp_float_images_per_s": len(x) / tf, "mlp_argmax_agreement": agree,
            "mlp_inputs": len(x), "mlp_data": source}


def _run_parallel_once():
    """Run one parallel kernel so that Numba picks its threading layer."""
    pack_signs(np.ones((4, 64), np.float32))
    return True


def main(args):
    import numba
    rng = np.random.default_rng(SEED)
    repeats = QUICK_REPEATS if args.quick else REPEATS
    res = {"threads": args.threads, "numba_threads": numba.get_num_threads(), "quick": args.quick}
    log = (lambda *a: None) if args.json else print
    res["threading_layer"] = numba.threading_layer() if _run_parallel_once() else None
    res["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    log(f"threads: {args.threads} (NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS')}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, numba layer "
        f"{res['threading_layer']}, OMP_WAIT_POLICY={res['omp_wait_policy']}), seed {SEED}, "
        f"{repeats} repeats{' (quick)' if args.quick else ''}")
    t0 = time.perf_counter()
    res.update(bench_gemm(rng, repeats))
    log(f"bgemm {GEMM}: {res['bgemm_tmacs']:.2f} T binary MAC/s, numpy f32 "
        f"{res['f32_gemm_gmacs']:.1f} G MAC/s, ratio {res['bgemm_ratio_vs_f32']:.1f}x")
    for name in CONVS:
        res.update(bench_conv(name, rng, repeats))
        log(f"{name}: binary {res[f'{name}_binary_us']:.0f} us "
            f"({res[f'{name}_binary_tmacs']:.2f} T), im2col+f32 {res[f'{name}_f32_us']:.0f} us, "
            f"ratio {res[f'{name}_ratio_vs_f32']:.1f}x")
    res.update(bench_gemv(rng, repeats))
    log(f"gemv {GEMV}: binary {res['gemv_binary_us']:.0f} us, f32 {res['gemv_f32_us']:.0f} us, "
        f"ratio {res['gemv_ratio_vs_f32']:.2f}x")
    res["pack_fraction"] = max(res["dense_pack_fraction"], res["conv14_pack_fraction"],
                               res["conv28_pack_fraction"])
    log(f"pack fraction: {res['pack_fraction']:.3f} (worst of dense "
        f"{res['dense_pack_fraction']:.3f}, conv14 {res['conv14_pack_fraction']:.3f}, "
        f"conv28 {res['conv28_pack_fraction']:.3f})")
    n_inputs = QUICK_MLP_INPUTS if args.quick else MLP_INPUTS
    res.update(bench_mlp(rng, n_inputs, max(3, repeats // 5)))
    log(f"mlp {MLP_SIZES} on {res['mlp_inputs']} {res['mlp_data']} inputs: "
        f"ratio {res['mlp_images_per_s_ratio_vs_float']:.1f}x "
        f"({res['mlp_binary_images_per_s']:.0f} vs {res['mlp_float_images_per_s']:.0f} images/s), "
        f"argmax agreement {res['mlp_argmax_agreement']:.4f}")
    res["seconds"] = time.perf_counter() - t0
    text = json_dumps(res, indent=None if args.json else 2, sort_keys=True)
    if args.out is not None:
        atomic_write(args.out, text + "\n")      # creates the folder
    if args.json:
        print(text)
    else:
        print(f"done in {res['seconds']:.1f} s")
    return res


if __name__ == "__main__":
    sys.exit(run_main("bench_kernels.py", lambda: main(ARGS)))
