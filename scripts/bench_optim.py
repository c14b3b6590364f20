"""Time one BayesBiNN update against one forward+backward of the MNIST MLP, and the optimizer's
whole share of a step against a memory-copy kernel that moves the same bytes.

The update is the part of a step after the gradient is known
(``opt.update(grads, state, noise)``) for the 10.0M binary weights of the
784-2048-2048-2048-10 MLP, S = 1, float32; the target is update_ms <= 0.25 *
fwd_bwd_ms, with fwd_bwd_ms one training forward+backward at batch 100 in the
same process. ``optimizer_over_floor``: sample + forward_params + update over
``_copy_floor``, which moves exactly the bytes they must move (read lam, write w;
read lam and g, write lam'; 'official' also reads mu and writes mu'), the two timed
alternately in 40 pairs (``paired_ms``; the figure is the median of the 40 ratios),
target <= 1.3. The three are called as a training
step calls them (``refbinn.train.step``): the update gets the pass's weights (``weights=``).
Timings are medians over REPEATS calls after one warm-up call (which also compiles
the Numba kernels, or loads them from the cache); the CPU model is printed with them.

Usage::

    python scripts/bench_optim.py            # full: also times the NumPy reference update
    python scripts/bench_optim.py --quick    # within ~40 s
    python scripts/bench_optim.py --json     # one JSON object on stdout
"""
from __future__ import annotations

import os
import platform
import sys

import numba
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import cpu_model, median_ms, paired_ms, parse_bench_args, run_main, time_mlp_grads  # noqa: E402
from refbinn.io import json_dumps  # noqa: E402
from refbinn.kernels.philox import fill_uniform  # noqa: E402
from refbinn.nn import Dense, Sequential  # noqa: E402
from refbinn.optim.bayesbinn import BayesBiNN  # noqa: E402

# -- settings (paper, MNIST: spec section 9) ------------------------------------------
N_TRAIN = 54000            # training-set size N (60000 minus the 10% validation split)
BATCH = 100
TAU = 1e-10
LR = 1e-4
SAMPLES = 1
SEED = 0
REPEATS = 10
REPEATS_QUICK = 3
PAIRS = 40                           # paired calls for optimizer_over_floor (~1 s; quick or not)
DTYPE = np.float32


def build_model():
    """refbinn.models.mlp_mnist() if present, else the same Dense shapes without BN/dropout."""
    try:
        from refbinn.models import mlp_mnist
        return mlp_mnist(), "refbinn.models.mlp_mnist()"
    except ImportError:
        return Sequential(Dense(784, 2048, name="fc1"), Dense(2048, 2048, name="fc2"),
                          Dense(2048, 2048, name="fc3"), Dense(2048, 10, name="fc4")), \
            "Dense 784-2048-2048-2048-10 (refbinn.models not found)"


@numba.njit(parallel=True, cache=True)
def _copy_floor(lam, g, w_out, lam_out):
    """The bytes sample + forward_params + update must move, moved by trivial loops:
    w = lam (read lam, write w), then lam' = lam + g (read lam and g, write lam').
    No optimizer step can move less."""
    for i in numba.prange(lam.size):
        w_out[i] = lam[i]
    for i in numba.prange(lam.size):
        lam_out[i] = lam[i] + g[i]


@numba.njit(parallel=True, cache=True)
def _copy_floor_official(lam, g, mu, w_out, lam_out, mu_out):
    """``_copy_floor`` plus the stored mean of the official numerics: read mu, write mu'."""
    for i in numba.prange(lam.size):
        w_out[i] = lam[i]
    for i in numba.prange(lam.size):
        lam_out[i] = lam[i] + g[i]
        mu_out[i] = lam[i] + mu[i]


@numba.njit(parallel=True, cache=True)
def _traffic_floor(lam, u, g, lam_out, m_out):
    """The least memory traffic any S = 1 update has: read lam, u, g; write lam', m'.

    The arithmetic is trivial, so its time is the memory floor of this machine for an
    update whose state (lam, momentum) and noise live in float32 arrays.
    """
    for i in numba.prange(lam.size):
        mi = g[i] * u[i] + lam[i]
        m_out[i] = mi
        lam_out[i] = lam[i] - np.float32(1e-4) * mi


def main(argv=None):
    args, repeats, log = parse_bench_args(argv, __doc__.splitlines()[0], REPEATS, REPEATS_QUICK)

    rng = np.random.default_rng(SEED)
    model, model_name = build_model()
    params, bn_state = model.init(rng, DTYPE)
    kinds = model.kinds
    binary = {k: v for k, v in params.items() if kinds[k] == "binary"}
    n_weights = sum(v.size for v in binary.values())
    log(f"model: {model_name}, {n_weights / 1e6:.2f}M binary weights, batch {BATCH}, "
        f"S={SAMPLES}, tau={TAU}, N={N_TRAIN}, seed={SEED}, repeats={repeats}")

    fwd_bwd_ms, grads = time_mlp_grads(model, params, bn_state, rng, batch=BATCH, seed=SEED, repeats=repeats,
                                       keep=binary, dtype=DTYPE)

    result = dict(model=model_name, n_weights=int(n_weights), batch=BATCH, samples=SAMPLES,
                  repeats=repeats, fwd_bwd_ms=fwd_bwd_ms, machine=platform.processor() or platform.machine(),
                  cpu_model=cpu_model(), cpus=os.cpu_count(), numba_threads=numba.get_num_threads())
    flat = lambda d: np.concatenate([np.ravel(v) for v in d.values()])
    g_flat = flat(grads)
    for numerics in ("exact", "official"):
        opt = BayesBiNN(N=N_TRAIN, tau=TAU, lr=LR, samples=SAMPLES, numerics=numerics, dtype="float32")
        state = opt.init(binary, np.random.default_rng(SEED + 2))
        noise = opt.sample(state, np.random.default_rng(SEED + 3))
        pre = "" if numerics == "exact" else "official_"
        result[pre + "update_ms"] = median_ms(lambda: opt.update(grads, state, noise), repeats)
        result[pre + "forward_params_ms"] = median_ms(lambda: opt.forward_params(state, noise[0]), repeats)
        result[pre + "sample_ms"] = median_ms(lambda: opt.sample(state, None), repeats)
        lam = flat(state.lam)
        outs = [np.empty_like(lam) for _ in range(3)]
        if numerics == "official":
            mu = flat(state.mu)
            floor = lambda: _copy_floor_official(lam, g_flat, mu, *outs)
        else:
            floor = lambda: _copy_floor(lam, g_flat, *outs[:2])

        def optimizer_share():                 # as ``refbinn.train.step`` calls them
            keys = opt.sample(state, None)
            w = opt.forward_params(state, keys[0])
            opt.update(grads, state, keys, weights=[w])
        # interleaved, pair by pair (a busy neighbour or a cache state slows both alike)
        opt_ms, floor_ms, ratio = paired_ms(optimizer_share, floor, PAIRS)
        result[pre + "copy_floor_ms"] = floor_ms
        result[pre + "optimizer_step_ms"] = opt_ms
        result[pre + "optimizer_over_floor"] = ratio                    # median of the paired ratios
        result[pre + "optimizer_over_floor_of_medians"] = opt_ms / floor_ms
        if numerics == "exact":
            # the full-cost path: at tau = 1 no block can skip its transcendentals
            opt1 = BayesBiNN(N=N_TRAIN, tau=1.0, lr=LR, samples=SAMPLES, dtype="float32")
            result["update_tau1_ms"] = median_ms(lambda: opt1.update(grads, state, noise), repeats)
            result["forward_params_tau1_ms"] = median_ms(lambda: opt1.forward_params(state, noise[0]), repeats)
            if not args.quick:
                ref = BayesBiNN(N=N_TRAIN, tau=TAU, lr=LR, samples=SAMPLES, backend="numpy")
                result["numpy_update_ms"] = median_ms(lambda: ref.update(grads, state, noise), 2)
    # the floor of an update that stores its noise (kept for comparison with earlier figures)
    lam_flat = flat(state.lam)
    u_flat = fill_uniform(noise[0].key, 0, "all", lam_flat.shape)
    outs = (np.empty_like(lam_flat), np.empty_like(lam_flat))
    result["memory_floor_ms"] = median_ms(lambda: _traffic_floor(lam_flat, u_flat, g_flat, *outs), repeats)
    result["memory_floor_fraction"] = result["memory_floor_ms"] / fwd_bwd_ms
    result["update_fraction"] = result["update_ms"] / fwd_bwd_ms
    result["official_update_fraction"] = result["official_update_ms"] / fwd_bwd_ms
    result["target_fraction"] = 0.25

    if args.json:
        print(json_dumps(result))
    else:
        print(f"CPU: {result['cpu_model']}, {result['cpus']} cpus, {result['numba_threads']} Numba threads")
        for k in ("fwd_bwd_ms", "update_ms", "official_update_ms", "update_tau1_ms", "forward_params_ms",
                  "official_forward_params_ms", "forward_params_tau1_ms", "sample_ms", "copy_floor_ms",
                  "official_copy_floor_ms", "numpy_update_ms"):
            if k in result:
                print(f"{k:>26s}: {result[k]:9.2f}")
        print(f"{'update_fraction':>26s}: {result['update_fraction']:9.3f}   (target <= 0.25)")
        print(f"{'optimizer_over_floor':>26s}: {result['optimizer_over_floor']:9.3f}   (target <= 1.3)")
        print(f"{'official_optimizer_over_floor':>26s}: {result['official_optimizer_over_floor']:9.3f}")
        print(f"{'official_update_fraction':>26s}: {result['official_update_fraction']:9.3f}")
        print(f"{'memory_floor_fraction':>26s}: {result['memory_floor_fraction']:9.3f}   "
              "(read lam, u, g; write lam, m: no update can be faster here)")
    return result


if __name__ == "__main__":
    sys.exit(run_main("bench_optim.py", main))
