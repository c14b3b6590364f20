"""Layer speed: one forward+backward against the same matmuls alone (numpy BLAS).

    ratio = time(forward + backward of the layers) / time(their matmuls on the same shapes)

Cases (float32, same process and BLAS thread count, median of repeats after warm-up):

- ``mlp``: the MNIST MLP 784-2048-2048-2048-10 at batch 100 (dropout, BatchNorm,
  ReLU in training mode). Matmuls alone: for every Dense layer
  ``x @ W.T``, ``dy.T @ x`` and ``dy @ W``.
- ``conv1`` / ``conv2``: the first two VGG convolutions at batch 50
  (3->128 and 128->128 on 32x32, 3x3, padding 1, no bias). Matmuls alone:
  ``W(O, K) @ cols(K, L)``, ``dy(O, L) @ cols.T`` and ``W.T @ dy(O, L)`` with
  K = C*9 and L = N*32*32, i.e. the GEMMs of im2col without the copies.

Targets: MLP within 1.5x of its matmuls, each conv layer within 3x. The
breakdowns say where the rest of the time goes (per layer type for the MLP;
im2col and col2im for the convolutions).

Usage::

    python scripts/bench_layers.py            # full run
    python scripts/bench_layers.py --quick    # fewer repeats, < 40 s
    python scripts/bench_layers.py --json     # one JSON object on stdout
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_main  # noqa: E402

from refbinn.io import json_dumps  # noqa: E402
from refbinn.nn import Dense  # noqa: E402
from refbinn.nn.conv import Conv2d, col2im, im2col  # noqa: E402

# -- settings -----------------------------------------------------------------------
SEED = 0
DTYPE = np.float32
MLP_BATCH = 100                       # paper: MNIST batch size
CONV_BATCH = 50                       # paper: CIFAR batch size
CONV_CASES = {"conv1": (3, 128, 32), "conv2": (128, 128, 32)}   # (C_in, C_out, H = W)
WARMUP, REPEATS = 2, 15
QUICK_WARMUP, QUICK_REPEATS = 1, 3


def median_ms(*fns, warmup, repeats):
    """Median wall time in milliseconds of each ``fn()``, after ``warmup`` untimed rounds.

    With several functions the calls alternate (a, b, a, b, ...), so a layer and
    its matmul baseline see the same machine load; returns one median per function.
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    meds = [1e3 * float(np.median(ts)) for ts in times]
    return meds[0] if len(fns) == 1 else meds


def blas_threads():
    """OpenBLAS thread count, read from the library numpy loaded (None if not found)."""
    try:
        libs = {line.split()[-1] for line in open("/proc/self/maps") if "openblas" in line.lower()}
        for path in libs:
            lib = ctypes.CDLL(path)
            for sym in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                        "openblas_get_num_threads"):
                if hasattr(lib, sym):
                    return int(getattr(lib, sym)())
    except OSError:
        pass
    return None


def mlp_model():
    """The MNIST MLP from ``refbinn.models``, or the same network built from layers."""
    try:
        from refbinn.models import mlp_mnist
        return mlp_mnist(), "refbinn.models.mlp_mnist()"
    except ImportError:
        from refbinn.nn import BatchNorm, Dense, Dropout, ReLU, Sequential
        sizes, layers = [784, 2048, 2048, 2048, 10], [Dropout(0.2, name="drop0")]
        for k in range(1, 5):
            layers += [Dense(sizes[k - 1], sizes[k], name=f"fc{k}"),
                       BatchNorm(sizes[k], eps=1e-4, momentum=0.15, affine=False, name=f"bn{k}")]
            if k < 4:
                layers += [ReLU(name=f"relu{k}"), Dropout(0.2, name=f"drop{k}")]
        return Sequential(*layers), "built from refbinn.nn layers"


def bench_mlp(warmup, repeats, rng):
    model, source = mlp_model()
    params, state = model.init(rng, DTYPE)
    x = rng.standard_normal((MLP_BATCH, 784)).astype(DTYPE)
    dy = rng.standard_normal((MLP_BATCH, 10)).astype(DTYPE)

    def fwd_bwd():
        _, cache, _ = model.forward(params, x, state, train=True, rng=np.random.default_rng(SEED))
        model.backward(params, cache, dy)

    # The same matmuls alone: per Dense layer W (out, in), a (N, in), g (N, out).
    mats = []
    for layer in model.layers:
        if isinstance(layer, Dense):
            n_in, n_out = layer.in_features, layer.out_features
            mats.append((rng.standard_normal((MLP_BATCH, n_in)).astype(DTYPE),
                         rng.standard_normal((n_out, n_in)).astype(DTYPE),
                         rng.standard_normal((MLP_BATCH, n_out)).astype(DTYPE)))

    def matmuls():
        for a, w, g in mats:
            a @ w.T          # forward        (N, out)
            g.T @ a          # weight grad    (out, in)
            g @ w            # input grad     (N, in)

    total, mm = median_ms(fwd_bwd, matmuls, warmup=warmup, repeats=repeats)
    return {"mlp_source": source, "mlp_fwd_bwd_ms": total, "mlp_matmul_ms": mm,
            "mlp_ratio_to_matmul": total / mm,
            "mlp_breakdown_ms": mlp_breakdown(model, params, state, x, dy, warmup, repeats)}


def mlp_breakdown(model, params, state, x, dy, warmup, repeats):
    """Median ms of forward+backward summed per layer type, each layer timed on its own input."""
    split = {layer.name: {k.split(".", 1)[1]: v for k, v in params.items()
                          if k.startswith(layer.name + ".")} for layer in model.layers}
    sstate = {layer.name: {k.split(".", 1)[1]: v for k, v in state.items()
                           if k.startswith(layer.name + ".")} for layer in model.layers}
    inputs, grads_in, caches, h = [], [], [], x
    for layer in model.layers:                       # record each layer's input and upstream grad
        inputs.append(h)
        h, c, _ = layer.forward(split[layer.name], h, sstate[layer.name], train=True,
                                rng=np.random.default_rng(SEED))
        caches.append(c)
    g = dy
    for layer, c in zip(reversed(model.layers), reversed(caches)):
        grads_in.append(g)
        g, _ = layer.backward(split[layer.name], c, g)
    grads_in.reverse()
    out = {}
    for layer, xin, gin in zip(model.layers, inputs, grads_in):
        p, s = split[layer.name], sstate[layer.name]

        def run(layer=layer, xin=xin, gin=gin, p=p, s=s):
            _, c, _ = layer.forward(p, xin, s, train=True, rng=np.random.default_rng(SEED))
            layer.backward(p, c, gin)

        kind = type(layer).__name__
        out[kind] = out.get(kind, 0.0) + median_ms(run, warmup=warmup, repeats=repeats)
    return out


def bench_conv(name, c_in, c_out, side, warmup, repeats, rng):
    layer = Conv2d(c_in, c_out, 3, padding=1, bias=False, name=name)
    params, _ = layer.init(rng, DTYPE)
    x = rng.standard_normal((CONV_BATCH, c_in, side, side)).astype(DTYPE)
    dy = rng.standard_normal((CONV_BATCH, c_out, side, side)).astype(DTYPE)

    def fwd_bwd():
        _, cache, _ = layer.forward(params, x, {}, train=True)
        layer.backward(params, cache, dy)

    k, n_cols = c_in * 9, CONV_BATCH * side * side
    w2 = rng.standard_normal((c_out, k)).astype(DTYPE)          # (O, C*3*3)
    cols = rng.standard_normal((k, n_cols)).astype(DTYPE)       # (C*3*3, N*H*W)
    g2 = rng.standard_normal((c_out, n_cols)).astype(DTYPE)     # (O, N*H*W)

    def matmuls():
        w2 @ cols            # forward
        g2 @ cols.T          # weight grad
        w2.T @ g2            # column grad (before col2im)

    total, mm = median_ms(fwd_bwd, matmuls, warmup=warmup, repeats=repeats)
    xp = np.zeros((CONV_BATCH, c_in, side + 2, side + 2), dtype=DTYPE)   # (N, C, H+2, W+2)
    im2col_ms, col2im_ms = median_ms(lambda: im2col(xp, (3, 3), (1, 1)),
                                     lambda: col2im(cols, xp.shape, (3, 3), (1, 1)),
                                     warmup=warmup, repeats=repeats)
    return {f"{name}_fwd_bwd_ms": total, f"{name}_matmul_ms": mm, f"{name}_ratio_to_matmul": total / mm,
            f"{name}_im2col_ms": im2col_ms, f"{name}_col2im_ms": col2im_ms}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (finishes within 40 s)")
    ap.add_argument("--json", action="store_true", help="print one JSON object to stdout, nothing else")
    ap.add_argument("--repeats", type=int, default=None, help="override the number of timed repeats")
    args = ap.parse_args(argv)
    warmup, repeats = (QUICK_WARMUP, QUICK_REPEATS) if args.quick else (WARMUP, REPEATS)
    if args.repeats is not None:
        if args.repeats < 1:
            ap.error(f"--repeats must be >= 1, got {args.repeats}")
        repeats = args.repeats
    log = sys.stderr if args.json else sys.stdout
    threads = blas_threads()
    print(f"bench_layers: dtype={np.dtype(DTYPE).name} seed={SEED} warmup={warmup} repeats={repeats} "
          f"blas_threads={threads} cpus={os.cpu_count()} numpy={np.__version__}", file=log)

    rng = np.random.default_rng(SEED)
    res = {"dtype": np.dtype(DTYPE).name, "seed": SEED, "warmup": warmup, "repeats": repeats,
           "threads": threads, "cpus": os.cpu_count(), "mlp_batch": MLP_BATCH, "conv_batch": CONV_BATCH}
    res.update(bench_mlp(warmup, repeats, rng))
    print(f"mlp   784-2048x3-10 N={MLP_BATCH}: fwd+bwd {res['mlp_fwd_bwd_ms']:8.2f} ms, matmuls "
          f"{res['mlp_matmul_ms']:8.2f} ms, ratio {res['mlp_ratio_to_matmul']:.2f} (target 1.5)", file=log)
    print("      per layer type (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in res["mlp_breakdown_ms"].items()),
          file=log)
    for name, (c_in, c_out, side) in CONV_CASES.items():
        res.update(bench_conv(name, c_in, c_out, side, warmup, repeats, rng))
        print(f"{name} {c_in}->{c_out} {side}x{side} N={CONV_BATCH}: fwd+bwd {res[name + '_fwd_bwd_ms']:8.2f} ms, "
              f"matmuls {res[name + '_matmul_ms']:8.2f} ms, ratio {res[name + '_ratio_to_matmul']:.2f} "
              f"(target 3); im2col {res[name + '_im2col_ms']:.2f} ms, col2im {res[name + '_col2im_ms']:.2f} ms",
              file=log)
    if args.json:
        print(json_dumps(res))
    return res


if __name__ == "__main__":
    sys.exit(run_main("bench_layers.py", main))
