"""Training speed side by side: refbinn and a fast eager PyTorch peer (scripts/_torch_peer.py), BayesBiNN.

One BayesBiNN step (S = 1, float32, batch 100) of the paper's MNIST MLP
(784-2048-2048-2048-10, dropout 0.2, BatchNorm without affine; 10.0M binary
weights), in the same process, on the same minibatches, with the same thread
count for torch, Numba and BLAS, interleaved: after warm-up, blocks of steps
alternate between the sides (the order rotates), so a busy neighbour slows all
alike. Each side draws its own noise u and dropout masks inside its step, as it
would in training. Both numerics: 'official' (the authors' float32 arithmetic,
tau = 1e-10) and 'exact' (tau = 1e-10 too).

The torch side is the fastest eager step we could write (``_torch_peer.TorchPeer``:
float32 flat buffers updated in place, torch.rand into a preallocated buffer,
autograd forward+backward; tests/test_torch_peer.py checks it computes refbinn's
step). For the headline numerics a third side runs its noise + relaxed weights and
its update as torch.compile (inductor) functions; if compiling fails, or gains
nothing on this CPU, the JSON says so and reports both.

Then a breakdown of each side's step, the model's forward+backward alone
(refbinn's layers against torch autograd, same weights and batch), refbinn's step
over its forward+backward (``step_over_fwd_bwd``: the two called alternately, 20
pairs, the median of the pairs' ratios; ``step_over_fwd_bwd_of_medians`` divides the
interleaved step's median by the forward+backward's, as the figure was first
computed), and the
training epoch of the continual-learning MLP 784-100-100-10 (BatchNorm, batch 100,
600 steps; with --quick 100 steps, scaled to 600).

    python scripts/bench_train.py                 # 20 steps per side and numerics
    python scripts/bench_train.py --quick --json  # one JSON object on stdout

Targets (issue 12): step_over_fwd_bwd (a training step over the model's forward+backward
alone) <= 1.4 exact, <= 1.5 official; ratio_refbinn_over_torch <= 0.5,
ratio_refbinn_over_torch_compiled <= 0.8, fwd_bwd_over_torch <= 1.2,
small_epoch_ratio_vs_torch <= 1.0.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cpu_model, paired_ms, run_main, set_threads  # noqa: E402  (standard library only: numpy is not imported yet)

# settings (the paper's MNIST run, spec section 9)
BATCH, N_TRAIN, LR, TAU = 100, 54000, 1e-4, 1e-10
STEPS, BLOCK, WARMUP, BREAKDOWN = 20, 5, 2, 5
STEP_PAIRS = 20                                       # paired (step, forward+backward) calls per numerics
FWD_BWD_REPEATS = 10                                  # forward+backward alone, per side
# the continual-learning MLP (refbinn.experiments.continual's settings): an epoch of permuted MNIST
SMALL_HIDDEN, SMALL_LR, SMALL_TAU, SMALL_N, SMALL_EPOCH_STEPS = (100, 100), 1e-3, 1e-2, 60000, 600
# 8 single-step blocks after 2 warm-up steps: with 3 after 1 the quick ratio against torch spread over
# 0.46-0.51 in three runs of one commit (8 after 2: 0.46-0.48), and the first timed steps ran slow
QUICK = dict(steps=8, block=1, warmup=2, breakdown=1, fwd_bwd=3, small_steps=100)


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
    ap.add_argument("--fwd-bwd", type=int, default=FWD_BWD_REPEATS, help="forward+backward repeats per side")
    ap.add_argument("--small-steps", type=int, default=SMALL_EPOCH_STEPS,
                    help=f"continual-MLP steps timed per side (scaled to an epoch of {SMALL_EPOCH_STEPS})")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    ap.add_argument("--quick", action="store_true", help=f"short run: {QUICK}")
    ap.add_argument("--json", action="store_true", help="print one JSON object (progress on stderr)")
    a = ap.parse_args(argv)
    if a.quick:
        for k, v in QUICK.items():
            setattr(a, k, v)
    if min(a.steps, a.block, a.threads, a.fwd_bwd, a.small_steps) < 1 or min(a.warmup, a.breakdown, a.seed) < 0:
        ap.error("--steps, --block, --threads, --fwd-bwd, --small-steps must be >= 1; "
                 "--warmup, --breakdown, --seed >= 0")
    numerics = [s.strip() for s in a.numerics.split(",") if s.strip()]
    if not numerics or not set(numerics) <= {"official", "exact"}:     # ',' timed nothing
        ap.error(f"--numerics must be a comma-separated list of official, exact; got {a.numerics!r}")
    return a


ARGS = parse() if __name__ == "__main__" else None
if ARGS is not None:
    set_threads(ARGS.threads)             # BLAS and OpenMP read these when they load: before numpy and torch

import time  # noqa: E402

import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)                       # refbinn/ when run from a checkout


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

    def __init__(self, numerics, seed, model=None, *, lr=LR, tau=TAU, n_train=N_TRAIN):
        from refbinn.models import mlp_mnist
        from refbinn.optim.bayesbinn import BayesBiNN
        self.model = mlp_mnist() if model is None else model
        r_init, self.r_noise, self.r_drop = np.random.default_rng(seed).spawn(3)
        params, self.bn = self.model.init(r_init, np.float32)
        self.opt = BayesBiNN(N=n_train, tau=tau, lr=lr, samples=1, numerics=numerics, dtype="float32")
        self.state = self.opt.init(params, r_init)

    def fwd_bwd(self, x, y, p):
        """The model's training forward, loss and backward at weights p (the BN state is not kept)."""
        from refbinn.nn import softmax_cross_entropy
        out, cache, _ = self.model.forward(p, x, self.bn, train=True, rng=self.r_drop)
        _, dout = softmax_cross_entropy(out, y)
        return self.model.backward(p, cache, dout, input_grad=False)[1]

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
        _, g = m.backward(p, cache, dout, input_grad=False)
        t.append(time.perf_counter())
        self.state = o.update([g], self.state, noise, weights=[p])          # as train_step passes them
        t.append(time.perf_counter())
        for name, a, b in zip(("sample u", "forward_params", "forward", "loss", "backward", "update"),
                              t[:-1], t[1:]):
            acc[name] = acc.get(name, 0.0) + (b - a)


class PeerSide:
    """The torch peer (scripts/_torch_peer.TorchPeer) on the same model, starting from refbinn's lam."""

    def __init__(self, numerics, refbinn_side, *, compiled=False, lr=LR, tau=TAU, n_train=N_TRAIN, seed=0):
        import torch
        from _torch_peer import TorchPeer
        from refbinn.train.trace import describe_layers
        layers = describe_layers(refbinn_side.model)
        dense = [d for d in layers if d["type"] == "dense"]
        bn = [d for d in layers if d["type"] == "batchnorm"]
        drop = [d["p"] for d in layers if d["type"] == "dropout"]
        names = [d["name"] + ".weight" for d in dense]
        lam = torch.from_numpy(np.concatenate([refbinn_side.state.lam[k].reshape(-1) for k in names]))
        self.peer = TorchPeer([dense[0]["in_features"]] + [d["out_features"] for d in dense], lam,
                              dropout=drop[0] if drop else None, bn_momentum=bn[0]["momentum"],
                              bn_eps=bn[0]["eps"], n_train=n_train, tau=tau, lr=lr, numerics=numerics,
                              seed=seed, compiled=compiled)

    def step(self, x, y):
        self.peer.step(x, y)

    def timed_step(self, x, y, acc):
        """One eager step piece by piece; adds seconds per piece to ``acc``."""
        pe = self.peer
        t = [time.perf_counter()]
        pe.draw_noise()
        t.append(time.perf_counter())
        pe.relaxed_weights()
        t.append(time.perf_counter())
        _, grads = pe.loss_and_grads(x, y)
        t.append(time.perf_counter())
        pe.update(grads)
        t.append(time.perf_counter())
        for name, a, b in zip(("sample u", "relaxed weights", "forward+backward (autograd)", "update"),
                              t[:-1], t[1:]):
            acc[name] = acc.get(name, 0.0) + (b - a)


def interleaved(sides, data, args, log, tag):
    """Median ms per step of each side over interleaved blocks (rotating order) -> (ms, block ms)."""
    k = 0

    def run(name, n):
        nonlocal k
        side = sides[name]
        t0 = time.perf_counter()
        for _ in range(n):
            side.step(*data[name][k % len(data[name])])
            k += 1
        return time.perf_counter() - t0

    log(f"[{tag}] warm-up: {args.warmup} step(s) per side")
    for name in sides:
        t0 = time.perf_counter()
        run(name, max(args.warmup, 1 if name == "torch_compiled" else 0))   # compiling happens here
        log(f"[{tag}]   {name}: {time.perf_counter() - t0:.1f} s")
    times = {name: [] for name in sides}
    done, rnd, order = 0, 0, list(sides)
    while done < args.steps:
        n = min(args.block, args.steps - done)
        for name in order[rnd % len(order):] + order[:rnd % len(order)]:
            times[name].append(run(name, n) / n)
        done, rnd = done + n, rnd + 1
    return {s: 1e3 * float(np.median(v)) for s, v in times.items()}, times


def bench(numerics, batches, args, log, compile_ok):
    """Interleaved timing of the sides for one numerics; returns a result dict."""
    import torch
    rb = RefbinnSide(numerics, args.seed)
    sides = {"refbinn": rb, "torch": PeerSide(numerics, rb, seed=args.seed)}
    result = {}
    if compile_ok:
        try:
            sides["torch_compiled"] = PeerSide(numerics, rb, compiled=True, seed=args.seed)
        except Exception as e:                                      # noqa: BLE001  (reported, not fatal)
            result["torch_compile_error"] = f"{type(e).__name__}: {e}"[:300]
    tb = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in batches]
    data = {"refbinn": batches, "torch": tb, "torch_compiled": tb}
    try:
        ms, times = interleaved(sides, data, args, log, numerics)
    except Exception as e:                                          # noqa: BLE001  compiling failed at run time
        if "torch_compiled" not in sides:
            raise
        result["torch_compile_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        log(f"[{numerics}] torch.compile failed ({result['torch_compile_error']}); eager peer only")
        del sides["torch_compiled"]
        ms, times = interleaved(sides, data, args, log, numerics)
    log(f"[{numerics}] " + ", ".join(f"{s} {v:.1f} ms/step" for s, v in ms.items())
        + f" (median of {len(times['refbinn'])} blocks), ratio refbinn/torch {ms['refbinn'] / ms['torch']:.3f}")

    parts = {"refbinn": {}, "torch": {}}
    for i in range(args.breakdown):
        rb.timed_step(*batches[i % len(batches)], parts["refbinn"])
        sides["torch"].timed_step(*tb[i % len(tb)], parts["torch"])
    per = {s: {p: 1e3 * v / max(args.breakdown, 1) for p, v in d.items()} for s, d in parts.items()}
    result.update({"refbinn_ms_per_step": ms["refbinn"], "torch_ms_per_step": ms["torch"],
                   "ratio_refbinn_over_torch": ms["refbinn"] / ms["torch"],
                   "refbinn_block_ms": [1e3 * v for v in times["refbinn"]],
                   "torch_block_ms": [1e3 * v for v in times["torch"]],
                   "breakdown_ms": per})
    if "torch_compiled" in ms:
        result.update({"torch_compiled_ms_per_step": ms["torch_compiled"],
                       "ratio_refbinn_over_torch_compiled": ms["refbinn"] / ms["torch_compiled"],
                       "torch_compiled_block_ms": [1e3 * v for v in times["torch_compiled"]]})
    return result, rb, sides["torch"]


def bench_fwd_bwd(rb, th, batches, args):
    """Median ms of the model's forward+loss+backward alone: refbinn's layers and torch autograd,
    the same relaxed weights and minibatch, in blocks of ``args.fwd_bwd`` calls per side (after one
    untimed call), two rounds in alternating order (call-by-call alternation would time each side
    against the other's still-spinning BLAS/OpenMP threads)."""
    import torch
    x, y = batches[0]
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    noise = rb.opt.sample(rb.state, rb.r_noise)
    p = rb.opt.forward_params(rb.state, noise[0])
    th.peer.draw_noise()
    th.peer.relaxed_weights()
    calls = {"refbinn": lambda: rb.fwd_bwd(x, y, p), "torch": lambda: th.peer.loss_and_grads(tx, ty)}
    times = {"refbinn": [], "torch": []}
    for order in (("refbinn", "torch"), ("torch", "refbinn")):
        for name in order:
            calls[name]()
            for _ in range(args.fwd_bwd):
                t0 = time.perf_counter()
                calls[name]()
                times[name].append(time.perf_counter() - t0)
    r, t = (1e3 * float(np.median(times[s])) for s in ("refbinn", "torch"))
    return {"refbinn_fwd_bwd_ms": r, "torch_fwd_bwd_ms": t, "fwd_bwd_over_torch": r / t}


def bench_step_over_fwd_bwd(rb, batches):
    """refbinn's training step over its forward+backward alone, both timed in this process:
    ``rb.step`` and ``rb.fwd_bwd`` (one minibatch, the relaxed weights of the current state) called
    alternately, STEP_PAIRS times each (``paired_ms``); the figure is the median of the pairs'
    ratios, so that a neighbour's load or a frequency change that lasts longer than a pair slows
    both alike. No torch work runs in between (its idle OpenMP workers would slow the step)."""
    x, y = batches[0]
    noise = rb.opt.sample(rb.state, rb.r_noise)
    p = rb.opt.forward_params(rb.state, noise[0])
    minibatches = itertools.cycle(batches)
    step_ms, fwd_bwd_ms, ratio = paired_ms(lambda: rb.step(*next(minibatches)), lambda: rb.fwd_bwd(x, y, p),
                                           STEP_PAIRS)
    return {"step_over_fwd_bwd": ratio, "paired_step_ms": step_ms, "paired_fwd_bwd_ms": fwd_bwd_ms}


def bench_small_epoch(numerics, args, log):
    """Seconds of one training epoch (SMALL_EPOCH_STEPS steps) of the continual MLP, refbinn and the
    eager peer, each timed over ``args.small_steps`` steps after 5 warm-up steps and scaled."""
    import torch
    from refbinn.models import mlp_continual
    rng = np.random.default_rng(args.seed)
    n = 10
    x = rng.standard_normal((n * BATCH, 784)).astype(np.float32)
    y = rng.integers(0, 10, n * BATCH)
    batches = [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, n * BATCH, BATCH)]
    tb = [(torch.from_numpy(a), torch.from_numpy(b)) for a, b in batches]
    kw = dict(lr=SMALL_LR, tau=SMALL_TAU, n_train=SMALL_N)
    rb = RefbinnSide(numerics, args.seed, mlp_continual(784, SMALL_HIDDEN, 10), **kw)
    th = PeerSide(numerics, rb, seed=args.seed, **kw)
    secs = {}
    for name, side, data in (("refbinn", rb, batches), ("torch", th, tb)):
        for i in range(5):
            side.step(*data[i % n])
        t0 = time.perf_counter()
        for i in range(args.small_steps):
            side.step(*data[i % n])
        secs[name] = (time.perf_counter() - t0) * SMALL_EPOCH_STEPS / args.small_steps
    log(f"[small] continual MLP 784-{'-'.join(map(str, SMALL_HIDDEN))}-10, {numerics}: epoch of "
        f"{SMALL_EPOCH_STEPS} steps, refbinn {secs['refbinn']:.2f} s, torch {secs['torch']:.2f} s "
        f"(timed {args.small_steps} steps each)")
    return {"refbinn_small_epoch_s": secs["refbinn"], "torch_small_epoch_s": secs["torch"],
            "small_epoch_ratio_vs_torch": secs["refbinn"] / secs["torch"],
            "small_epoch_steps_timed": args.small_steps, "small_epoch_steps": SMALL_EPOCH_STEPS}


def main(args):
    import numba
    import torch
    from _torch_peer import compile_available
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
    cpu = cpu_model()
    batches, source = load_batches(10, args.seed)
    log(f"bench_train: MNIST MLP 784-2048-2048-2048-10, batch {BATCH}, BayesBiNN S=1 float32, "
        f"tau {TAU:g}, lr {LR:g}, N {N_TRAIN}; data {source}; CPU {cpu}, {os.cpu_count()} cores; "
        f"threads {threads}; {args.steps} timed steps per side in blocks of {args.block} after "
        f"{args.warmup} warm-up; seed {args.seed}; torch {torch.__version__}, numpy {np.__version__}, "
        f"numba {numba.__version__}")
    t0 = time.perf_counter()
    compile_ok, compile_error = (False, "--no-compile") if args.no_compile else compile_available()
    if not compile_ok:
        log(f"torch.compile unavailable: {compile_error}")
    runs, sides = {}, {}
    for i, n in enumerate(numerics):                # the compiled variant: headline numerics only
        runs[n], *sides[n] = bench(n, batches, args, log, compile_ok and i == 0)
    head = numerics[0]
    first = runs[head]
    fwd_bwd = bench_fwd_bwd(*sides[head], batches, args)
    log(f"[{head}] forward+backward alone: refbinn {fwd_bwd['refbinn_fwd_bwd_ms']:.1f} ms, torch autograd "
        f"{fwd_bwd['torch_fwd_bwd_ms']:.1f} ms, ratio {fwd_bwd['fwd_bwd_over_torch']:.3f}")
    small = bench_small_epoch(head, args, log)
    for n, r in runs.items():
        log(f"\n[{n}] breakdown, ms per step (mean of {args.breakdown} steps):")
        for side in ("refbinn", "torch"):
            d = r["breakdown_ms"][side]
            total = sum(d.values())
            log(f"  {side:8s} " + ", ".join(f"{p} {v:.1f}" for p, v in d.items()) + f"; total {total:.1f}")
    result = {"refbinn_ms_per_step": first["refbinn_ms_per_step"],
              "torch_ms_per_step": first["torch_ms_per_step"],
              "ratio_refbinn_over_torch": first["ratio_refbinn_over_torch"],
              "torch_peer": "scripts/_torch_peer.py (eager, float32 flat buffers in place)",
              "headline_numerics": head, "target_ratio": 0.5, "threads": threads,
              "cpu": cpu, "cores": os.cpu_count(), "data": source, "steps": args.steps, "block": args.block,
              "warmup": args.warmup, "torch_version": torch.__version__}
    # the torch.compile variant: both numbers, and whether compiling helped
    if "ratio_refbinn_over_torch_compiled" in first:
        gain = first["torch_ms_per_step"] / first["torch_compiled_ms_per_step"]
        result.update({"torch_compiled_ms_per_step": first["torch_compiled_ms_per_step"],
                       "ratio_refbinn_over_torch_compiled": first["ratio_refbinn_over_torch_compiled"],
                       "torch_compile_speedup": gain, "torch_compile_helps": gain > 1.0,
                       "target_ratio_compiled": 0.8})
        if gain <= 1.0:
            result["torch_compile_note"] = ("torch.compile gains nothing on this CPU: both numbers "
                                            "reported (torch_ms_per_step is the eager peer)")
    else:
        err = first.get("torch_compile_error", compile_error)
        result.update({"ratio_refbinn_over_torch_compiled": None, "torch_compile_helps": False,
                       "torch_compile_note": f"torch.compile failed or was skipped ({err}); "
                                             f"only the eager peer is reported"})
    # one training step over the same model's forward+backward alone, both timed in this process, paired
    for n, r in runs.items():
        r.update(bench_step_over_fwd_bwd(sides[n][0], batches))
        r["step_over_fwd_bwd_of_medians"] = r["refbinn_ms_per_step"] / fwd_bwd["refbinn_fwd_bwd_ms"]
        log(f"[{n}] step over forward+backward, {STEP_PAIRS} pairs: {r['paired_step_ms']:.1f} against "
            f"{r['paired_fwd_bwd_ms']:.1f} ms, median ratio {r['step_over_fwd_bwd']:.3f}")
    result["step_over_fwd_bwd"] = runs[head]["step_over_fwd_bwd"]
    result["step_over_fwd_bwd_by_numerics"] = {n: r["step_over_fwd_bwd"] for n, r in runs.items()}
    result["target_step_over_fwd_bwd"] = {"exact": 1.4, "official": 1.5}
    result.update({**fwd_bwd, "target_fwd_bwd_over_torch": 1.2, **small, "target_small_epoch_ratio": 1.0,
                   "seconds": time.perf_counter() - t0, "runs": runs})
    log("\nsummary (ms per step, median of interleaved blocks):")
    for n, r in runs.items():
        comp = (f"   torch.compile {r['torch_compiled_ms_per_step']:7.1f} (ratio "
                f"{r['ratio_refbinn_over_torch_compiled']:.3f}, target <= 0.8)"
                if "torch_compiled_ms_per_step" in r else "")
        log(f"  {n:8s} refbinn {r['refbinn_ms_per_step']:7.1f}   torch {r['torch_ms_per_step']:7.1f}   "
            f"ratio refbinn/torch {r['ratio_refbinn_over_torch']:.3f}   (target <= 0.5){comp}")
    log("  step_over_fwd_bwd " + ", ".join(f"{n} {v:.3f}" for n, v in result["step_over_fwd_bwd_by_numerics"].items())
        + " (targets: exact <= 1.4, official <= 1.5)")
    log(f"  fwd_bwd_over_torch {result['fwd_bwd_over_torch']:.3f} (target <= 1.2); small_epoch_ratio_vs_torch "
        f"{result['small_epoch_ratio_vs_torch']:.3f} (target <= 1.0); CPU {cpu}")
    if args.json:
        from refbinn.io import json_dumps
        print(json_dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(run_main("bench_train.py", lambda: main(ARGS)))
