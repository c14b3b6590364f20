"""Training speed side by side: refbinn and the torch reference (validate/torch_ref.py), MNIST MLP, BayesBiNN.

One BayesBiNN step (S = 1, float32, batch 100) of the paper's MNIST MLP
(784-2048-2048-2048-10, dropout 0.2, BatchNorm without affine; 10.0M binary
weights), in the same process, on the same minibatches, with the same thread
count for torch, Numba and BLAS, interleaved: after warm-up, blocks of steps
alternate between the two (which side goes first alternates too), so a busy
neighbour slows both alike. Each side draws its own noise u and dropout masks
inside its step, as it would in training. Both numerics: 'official' (the
authors' float32 arithmetic, tau = 1e-10) and 'exact' (tau = 1e-10 too).

Then a breakdown of each side's step (refbinn: sample u, forward_params,
forward, loss, backward, update; torch: the same pieces) over a few more steps.

    python scripts/bench_train.py                 # 20 steps per side and numerics
    python scripts/bench_train.py --quick --json  # ~30 s; one JSON object on stdout

Target (issue 6): refbinn's time per step <= 0.5 x torch's.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import set_threads  # noqa: E402  (standard library only: numpy is not imported yet)

# settings (the paper's MNIST run, spec section 9)
BATCH, N_TRAIN, LR, TAU = 100, 54000, 1e-4, 1e-10
STEPS, BLOCK, WARMUP, BREAKDOWN = 20, 5, 2, 5
QUICK = dict(steps=3, block=1, warmup=1, breakdown=1)


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=STEPS, help="timed steps per side and numerics")
    ap.add_argument("--block", type=int, default=BLOCK, help="steps per interleaved block")
    ap.add_argument("--warmup", type=int, default=WARMUP, help="untimed steps per side first")
    ap.add_argument("--breakdown", type=int, default=BREAKDOWN, help="steps timed piece by piece")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="threads for torch, Numba and BLAS (default: all cores)")
    ap.add_argument("--numerics", default="official,exact", help="comma-separated: official, exact")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help=f"short run: {QUICK}")
    ap.add_argument("--json", action="store_true", help="print one JSON object (progress on stderr)")
    a = ap.parse_args(argv)
    if a.quick:
        for k, v in QUICK.items():
            setattr(a, k, v)
    if min(a.steps, a.block, a.threads) < 1 or min(a.warmup, a.breakdown) < 0:
        ap.error("--steps, --block, --threads must be >= 1; --warmup, --breakdown >= 0")
    return a


ARGS = parse() if __name__ == "__main__" else None
if ARGS is not None:
    set_threads(ARGS.threads)             # BLAS and OpenMP read these when they load: before numpy and torch

import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)                       # validate/ lives next to refbinn/


def load_batches(n_batches, seed):
    """(x, y) minibatches of normalised MNIST training images (synthetic if MNIST is not found)."""
    from refbinn.data import load_mnist, normalize
    n = n_batches * BATCH
    try:
        root = os.environ.get("REFBINN_DATA") or os.path.join(os.path.dirname(REPO), "shared", "data")
        ds = load_mnist(root)
        x = normalize(ds.x_train[:n], "mnist").reshape(n, 784)              # (n, 784) float32
        y = ds.y_train[:n].astype(np.int64)
        source = "MNIST"
    except Exception:                                                     # any failure: synthetic
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n, 784)).astype(np.float32)
        y = rng.integers(0, 10, n)
        source = "synthetic"
    return [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, n, BATCH)], source


class RefbinnSide:
    """refbinn: refbinn.train.train_step on the Sequential MLP with the BayesBiNN optimizer."""

    def __init__(self, numerics, seed):
        from refbinn.models import mlp_mnist
        from refbinn.optim.bayesbinn import BayesBiNN
        self.model = mlp_mnist()
        r_init, self.r_noise, self.r_drop = np.random.default_rng(seed).spawn(3)
        params, self.bn = self.model.init(r_init, np.float32)
        self.opt = BayesBiNN(N=N_TRAIN, tau=TAU, lr=LR, samples=1, numerics=numerics, dtype="float32")
        self.state = self.opt.init(params, r_init)

    def step(self, x, y):
        from refbinn.nn import softmax_cross_entropy
        from refbinn.train import train_step
        self.state, self.bn, loss, _ = train_step(self.model, self.opt, self.state, self.bn, x, y,
                                                  softmax_cross_entropy, rng_noise=self.r_noise,
                                                  rng_drop=self.r_drop)
        return loss

    def timed_step(self, x, y, acc):
        """The same step as ``train_step``, piece by piece; adds seconds per piece to ``acc``."""
        from refbinn.nn import softmax_cross_entropy
        o, m = self.opt, self.model
        t = [time.perf_counter()]
        noise = o.sample(self.state, self.r_noise)
        t.append(time.perf_counter())
        p = o.forward_params(self.state, noise[0])
        t.append(time.perf_counter())
        out, cache, self.bn = m.forward(p, x, self.bn, train=True, rng=self.r_drop)
        t.append(time.perf_counter())
        _, dout = softmax_cross_entropy(out, y)
        t.append(time.perf_counter())
        _, g = m.backward(p, cache, dout)
        t.append(time.perf_counter())
        self.state = o.update([g], self.state, noise)
        t.append(time.perf_counter())
        for name, a, b in zip(("sample u", "forward_params", "forward", "loss", "backward", "update"),
                              t[:-1], t[1:]):
            acc[name] = acc.get(name, 0.0) + (b - a)


class TorchSide:
    """The torch reference: validate.torch_ref.Net and bayesbinn_step on one flat float32 vector."""

    def __init__(self, numerics, refbinn_side):
        import torch
        from refbinn.train.trace import describe_layers
        from validate import torch_ref as tr
        from validate.torch_trace import net_from_meta
        self.torch, self.tr, self.numerics = torch, tr, numerics
        layers = describe_layers(refbinn_side.model)
        self.net = net_from_meta({"layers": layers})
        names = list(self.net.shapes)
        st = refbinn_side.state                                            # start from the same lam
        flat = lambda d: torch.from_numpy(np.concatenate([d[k].reshape(-1) for k in names]))
        self.ts = {"lam": flat(st.lam), "mu": flat(st.mu), "m": torch.zeros(sum(v.size for v in st.lam.values())),
                   "step": 0}
        self.bn = {k: torch.from_numpy(v.copy()) for k, v in refbinn_side.bn.items()}
        # dropout keep-mask shapes: (B, features entering each dropout layer)
        self.drops, feat = [], None
        for d in layers:
            if d["type"] == "dense":
                feat = d["out_features"]
            elif d["type"] == "dropout":
                self.drops.append((d["name"], d["p"], 784 if feat is None else feat))
        self.gen = torch.Generator().manual_seed(0)

    def _pieces(self, x, y):
        torch, tr = self.torch, self.tr
        yield "sample u"
        u = torch.rand(self.ts["lam"].shape, generator=self.gen)
        yield "forward weights"
        w = tr.bayesbinn_forward_weights(self.ts, u, tau=TAU)
        masks = {n: torch.rand((x.shape[0], f), generator=self.gen) >= p for n, p, f in self.drops}
        yield "forward+backward (autograd)"
        _, g, self.bn = self.net.loss_and_grad(w, x, y, "cross_entropy", self.bn, masks)
        yield "update"
        self.ts = tr.bayesbinn_step(self.ts, [g], [u], lr=LR, beta=0.0, tau=TAU, n_train=N_TRAIN,
                                    numerics=self.numerics)

    def step(self, x, y):
        for _ in self._pieces(x, y):
            pass

    def timed_step(self, x, y, acc):
        t, name = time.perf_counter(), None
        for nxt in self._pieces(x, y):
            now = time.perf_counter()
            if name is not None:
                acc[name] = acc.get(name, 0.0) + (now - t)
            name, t = nxt, now
        acc[name] = acc.get(name, 0.0) + (time.perf_counter() - t)


def bench(numerics, batches, args, log):
    """Interleaved timing of both sides for one numerics; returns a result dict."""
    import torch
    rb = RefbinnSide(numerics, args.seed)
    th = TorchSide(numerics, rb)
    tb = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in batches]
    k = 0

    def run(side, data, n):
        nonlocal k
        t0 = time.perf_counter()
        for _ in range(n):
            side.step(*data[k % len(data)])
            k += 1
        return time.perf_counter() - t0

    log(f"[{numerics}] warm-up: {args.warmup} step(s) per side")
    run(rb, batches, args.warmup)
    run(th, tb, args.warmup)
    times = {"refbinn": [], "torch": []}
    done, rnd = 0, 0
    while done < args.steps:
        n = min(args.block, args.steps - done)
        order = (("refbinn", rb, batches), ("torch", th, tb))
        for name, side, data in (order if rnd % 2 == 0 else order[::-1]):
            times[name].append(run(side, data, n) / n)
        done, rnd = done + n, rnd + 1
    ms = {s: 1e3 * float(np.median(v)) for s, v in times.items()}
    log(f"[{numerics}] refbinn {ms['refbinn']:.1f} ms/step, torch {ms['torch']:.1f} ms/step "
        f"(median of {len(times['refbinn'])} blocks), ratio {ms['refbinn'] / ms['torch']:.3f}")

    parts = {"refbinn": {}, "torch": {}}
    for i in range(args.breakdown):
        x, y = batches[i % len(batches)]
        rb.timed_step(x, y, parts["refbinn"])
        th.timed_step(*tb[i % len(tb)], parts["torch"])
    per = {s: {p: 1e3 * v / max(args.breakdown, 1) for p, v in d.items()} for s, d in parts.items()}
    return {"refbinn_ms_per_step": ms["refbinn"], "torch_ms_per_step": ms["torch"],
            "ratio_refbinn_over_torch": ms["refbinn"] / ms["torch"],
            "refbinn_block_ms": [1e3 * v for v in times["refbinn"]],
            "torch_block_ms": [1e3 * v for v in times["torch"]],
            "breakdown_ms": per}


def main(args):
    import numba
    import torch
    out_stream = sys.stderr if args.json else sys.stdout
    log = lambda m: print(m, file=out_stream, flush=True)
    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)
    threads = {"torch": torch.get_num_threads(), "numba": numba.get_num_threads(),
               "blas_env": int(os.environ["OPENBLAS_NUM_THREADS"])}
    numerics = [s.strip() for s in args.numerics.split(",") if s.strip()]
    bad = [s for s in numerics if s not in ("official", "exact")]
    if bad:
        raise SystemExit(f"--numerics: unknown {bad}; choose from official, exact")
    batches, source = load_batches(10, args.seed)
    log(f"bench_train: MNIST MLP 784-2048-2048-2048-10, batch {BATCH}, BayesBiNN S=1 float32, "
        f"tau {TAU:g}, lr {LR:g}, N {N_TRAIN}; data {source}; threads {threads}; "
        f"{args.steps} timed steps per side in blocks of {args.block} after {args.warmup} warm-up; "
        f"seed {args.seed}; torch {torch.__version__}, numpy {np.__version__}, numba {numba.__version__}")
    t0 = time.perf_counter()
    runs = {n: bench(n, batches, args, log) for n in numerics}
    for n, r in runs.items():
        log(f"\n[{n}] breakdown, ms per step (mean of {args.breakdown} steps):")
        for side in ("refbinn", "torch"):
            d = r["breakdown_ms"][side]
            total = sum(d.values())
            log(f"  {side:8s} " + ", ".join(f"{p} {v:.1f}" for p, v in d.items()) + f"; total {total:.1f}")
    first = runs[numerics[0]]
    result = {"refbinn_ms_per_step": first["refbinn_ms_per_step"],
              "torch_ms_per_step": first["torch_ms_per_step"],
              "ratio_refbinn_over_torch": first["ratio_refbinn_over_torch"],
              "headline_numerics": numerics[0], "target_ratio": 0.5, "threads": threads,
              "data": source, "steps": args.steps, "block": args.block, "warmup": args.warmup,
              "torch_version": torch.__version__, "seconds": time.perf_counter() - t0,
              "runs": runs}
    log("\nsummary (ms per step, median of interleaved blocks):")
    for n, r in runs.items():
        log(f"  {n:8s} refbinn {r['refbinn_ms_per_step']:7.1f}   torch {r['torch_ms_per_step']:7.1f}   "
            f"ratio refbinn/torch {r['ratio_refbinn_over_torch']:.3f}   (target <= 0.5)")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
