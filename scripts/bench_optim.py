"""Time one BayesBiNN update against one forward+backward of the MNIST MLP.

The update is the part of a step after the gradient is known
(``opt.update(grads, state, noise)``) for the 10.0M binary weights of the
784-2048-2048-2048-10 MLP, S = 1, float32; the target is update_ms <= 0.25 *
fwd_bwd_ms, with fwd_bwd_ms one training forward+backward at batch 100 in the
same process. Timings are medians over REPEATS calls after one warm-up call
(which also compiles the Numba kernels, or loads them from the cache).

Usage::

    python scripts/bench_optim.py            # full: also times the NumPy reference update
    python scripts/bench_optim.py --quick    # within ~40 s
    python scripts/bench_optim.py --json     # one JSON object on stdout
"""
from __future__ import annotations

import json
import os
import platform
import sys

import numba
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import median_ms, parse_bench_args, time_mlp_grads  # noqa: E402
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
                  cpus=os.cpu_count())
    for numerics in ("exact", "official"):
        opt = BayesBiNN(N=N_TRAIN, tau=TAU, lr=LR, samples=SAMPLES, numerics=numerics, dtype="float32")
        state = opt.init(binary, np.random.default_rng(SEED + 2))
        noise = opt.sample(state, np.random.default_rng(SEED + 3))
        key = "update_ms" if numerics == "exact" else "official_update_ms"
        result[key] = median_ms(lambda: opt.update(grads, state, noise), repeats)
        if numerics == "exact":
            # the full-cost path: at tau = 1 no block can skip its transcendentals
            opt1 = BayesBiNN(N=N_TRAIN, tau=1.0, lr=LR, samples=SAMPLES, dtype="float32")
            result["update_tau1_ms"] = median_ms(lambda: opt1.update(grads, state, noise), repeats)
            result["forward_params_ms"] = median_ms(lambda: opt.forward_params(state, noise[0]), repeats)
            result["sample_ms"] = median_ms(lambda: opt.sample(state, np.random.default_rng(SEED)), repeats)
            if not args.quick:
                ref = BayesBiNN(N=N_TRAIN, tau=TAU, lr=LR, samples=SAMPLES, backend="numpy")
                result["numpy_update_ms"] = median_ms(lambda: ref.update(grads, state, noise), 2)
    flat = {k: np.ascontiguousarray(v).ravel() for k, v in
            (("lam", np.concatenate([v.ravel() for v in state.lam.values()])),
             ("u", np.concatenate([v.ravel() for v in noise[0].values()])),
             ("g", np.concatenate([v.ravel() for v in grads.values()])))}
    outs = (np.empty_like(flat["lam"]), np.empty_like(flat["lam"]))
    result["memory_floor_ms"] = median_ms(lambda: _traffic_floor(flat["lam"], flat["u"], flat["g"], *outs),
                                          repeats)
    result["memory_floor_fraction"] = result["memory_floor_ms"] / fwd_bwd_ms
    result["update_fraction"] = result["update_ms"] / fwd_bwd_ms
    result["official_update_fraction"] = result["official_update_ms"] / fwd_bwd_ms
    result["target_fraction"] = 0.25

    if args.json:
        print(json.dumps(result))
    else:
        for k in ("fwd_bwd_ms", "update_ms", "official_update_ms", "update_tau1_ms", "forward_params_ms", "sample_ms",
                  "numpy_update_ms"):
            if k in result:
                print(f"{k:>22s}: {result[k]:9.2f}")
        print(f"{'update_fraction':>22s}: {result['update_fraction']:9.3f}   (target <= 0.25)")
        print(f"{'official_update_fraction':>22s}: {result['official_update_fraction']:9.3f}")
        print(f"{'memory_floor_fraction':>22s}: {result['memory_floor_fraction']:9.3f}   "
              "(read lam, u, g; write lam, m: no update can be faster here)")
    return result


if __name__ == "__main__":
    main()
