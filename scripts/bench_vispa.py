"""Time one VISPA update, forward_params and sample against one forward+backward of the MNIST MLP.

The fused update also writes the next step's forward weights sign(m' + Z'^T r_next)
(r is counter-based, so the update knows the next step's r), and ``forward_params``
then hands those out instead of reading m and Z again: ``forward_params_ms`` is that
call in the training loop's order, ``forward_params_computed_ms`` the weight pass it
replaces (an r the update did not see), and ``update_without_next_weights_ms`` the
update kernel without the extra write. ``optimizer_ms`` (sample + forward_params +
update, as training calls them) against ``optimizer_before_ms`` (the computed weight
pass + the update without the write), timed alternately in pairs; ``optimizer_over_before``
is the median of the paired ratios.

The update is the part of a step after the gradient is known
(``opt.update(grads, state, noise)``) for the 10.0M binary weights of
``refbinn.models.mlp_mnist()`` with the authors' settings (K = 8, S = 100,
float32): m, Z (K x n), their momentum buffers and g, 0.8 GB read and
0.7 GB written per step. ``memory_floor_ms`` times a kernel that does only that
traffic (read m, Z, vel_m, vel_Z, g; write m, Z, vel_m, vel_Z), so no update can be
faster here with ordinary stores (``copy_ms``, np.copyto of the same four arrays by
the C library's memcpy, is for comparison); fwd_bwd_ms is one training
forward+backward at batch 100, for scale.
Timings are medians over REPEATS calls after one warm-up call (which also compiles
the Numba kernels, or loads them from the cache). As in training, each timed update
starts from the state the previous one returned, and the old state is dropped; the
update gets two warm-up calls, after which its output arrays come from the pool.

Usage::

    python scripts/bench_vispa.py            # full: also times the NumPy reference update
    python scripts/bench_vispa.py --quick    # within ~1 min on an idle 2-core machine
    python scripts/bench_vispa.py --json     # one JSON object on stdout
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
from refbinn.models import mlp_mnist  # noqa: E402
from refbinn.optim._vispa_kernels import BLOCK, TASK, step_fused  # noqa: E402
from refbinn.optim.vispa import VISPA  # noqa: E402

# -- settings (the authors' VISPA settings on the paper's MNIST MLP) -------------------
BATCH = 100
RANK = 8
SCALE = 100.0
LR = 0.1
SEED = 0
REPEATS = 10
REPEATS_QUICK = 3
PAIRS = 10                           # paired calls for optimizer_over_before (median of the ratios)
DTYPE = np.float32


@numba.njit(parallel=True, cache=True)
def _traffic_floor(m, Z, vm, vZ, g, m_out, Z_out, vm_out, vZ_out, w_out):
    """The least memory traffic any VISPA step has: read m, Z, vel_m, vel_Z, g; write the four
    and the next forward weights w.

    m, vm, g, m_out, vm_out (n,); Z, vZ, Z_out, vZ_out (K*n,), row k at k*n. Visited in
    the update kernel's order (tasks of TASK weights, blocks of BLOCK, rows k = 0..K-1
    within a block) with trivial arithmetic, so the time is this machine's memory
    floor for the step as the kernel does it (ordinary cached stores).
    """
    n = m.shape[0]
    K = Z.shape[0] // n
    one = np.float32(1.0)
    for t in numba.prange((n + TASK - 1) // TASK):
        for a in range(t * TASK, min(t * TASK + TASK, n), BLOCK):
            L = min(BLOCK, n - a)
            m_, vm_, g_, mo, vmo, wo = m[a:a + L], vm[a:a + L], g[a:a + L], m_out[a:a + L], \
                vm_out[a:a + L], w_out[a:a + L]
            for i in range(L):                    # unit-stride slices, as the update kernel's
                vmo[i] = vm_[i] + g_[i]
                mo[i] = m_[i] - g_[i]
                wo[i] = g_[i]
            for k in range(K):
                o = k * n + a
                z_, vz_, zo, vzo = Z[o:o + L], vZ[o:o + L], Z_out[o:o + L], vZ_out[o:o + L]
                for i in range(L):
                    vzo[i] = vz_[i] + one
                    zo[i] = z_[i] - one


def _copy(ins, outs):
    """np.copyto of m, Z, vel_m, vel_Z: the same bytes moved by the C library's copy."""
    for src, dst in zip(ins, outs):
        np.copyto(dst, src)


def main(argv=None):
    args, repeats, log = parse_bench_args(argv, __doc__.splitlines()[0], REPEATS, REPEATS_QUICK)

    rng = np.random.default_rng(SEED)
    model = mlp_mnist()
    params, bn_state = model.init(rng, DTYPE)
    binary = {k: v for k, v in params.items() if model.kinds[k] == "binary"}
    n_weights = sum(v.size for v in binary.values())
    log(f"cpu: {cpu_model()}")
    log(f"model: refbinn.models.mlp_mnist(), {n_weights / 1e6:.2f}M binary weights, batch {BATCH}, "
        f"K={RANK}, S={SCALE}, seed={SEED}, repeats={repeats}, numba threads={numba.get_num_threads()}")

    fwd_bwd_ms, grads = time_mlp_grads(model, params, bn_state, rng, batch=BATCH, seed=SEED, repeats=repeats,
                                       keep=binary, dtype=DTYPE)

    opt = VISPA(lr=LR, rank=RANK, scale=SCALE)
    holder = {"state": opt.init(binary, np.random.default_rng(SEED + 2))}
    noise = opt.sample(holder["state"], np.random.default_rng(SEED + 3))

    def step():                                            # the update alone
        holder["state"] = opt.update(grads, holder["state"], noise)

    def train_step():                                      # the training loop's order
        s = holder["state"]
        nz = opt.sample(s)
        opt.forward_params(s, nz[0])
        holder["state"] = opt.update(grads, s, nz)

    def update_without_next_weights():
        s = holder["state"]
        for k, m in s.m.items():
            step_fused(opt.pool, m, s.Z[k], s.vel_m[k], s.vel_Z[k], grads[k], noise[0][k], LR, opt.momentum,
                       opt.weight_decay, SCALE, True)

    result = dict(model="refbinn.models.mlp_mnist()", n_weights=int(n_weights), rank=RANK, batch=BATCH,
                  repeats=repeats, threads=numba.get_num_threads(), fwd_bwd_ms=fwd_bwd_ms,
                  machine=platform.machine(), cpu=cpu_model(), cpus=os.cpu_count())
    result["update_ms"] = median_ms(step, repeats, warmup=2)
    result["update_without_next_weights_ms"] = median_ms(update_without_next_weights, repeats, warmup=2)
    result["optimizer_ms"] = median_ms(train_step, repeats, warmup=2)
    own = opt.sample(holder["state"])[0]                   # the r the last update wrote weights for
    result["forward_params_ms"] = median_ms(lambda: opt.forward_params(holder["state"], own), repeats)
    other = {k: -r for k, r in own.items()}                # an r it did not see: the weight pass
    result["forward_params_computed_ms"] = median_ms(lambda: opt.forward_params(holder["state"], other),
                                                     repeats)
    result["sample_ms"] = median_ms(lambda: opt.sample(holder["state"]), repeats)
    def before():                                          # the weight pass, then the update without w
        opt.forward_params(holder["state"], other)
        update_without_next_weights()

    _, result["optimizer_before_ms"], result["optimizer_over_before"] = paired_ms(train_step, before, PAIRS)
    if not args.quick:
        ref = VISPA(lr=LR, rank=RANK, scale=SCALE, backend="numpy")
        result["numpy_update_ms"] = median_ms(lambda: ref.update(grads, holder["state"], noise), 2)

    s = holder["state"]
    flat = lambda d: np.concatenate([v.reshape(-1) for v in d.values()])                     # (n,)
    ins = (flat(s.m), flat(s.Z), flat(s.vel_m), flat(s.vel_Z), flat(grads))          # (n,), (K*n,)
    outs = tuple(np.empty_like(a) for a in ins[:4]) + (np.empty_like(ins[0]),)
    del holder, s
    result["memory_floor_ms"] = median_ms(lambda: _traffic_floor(*ins, *outs), repeats)
    result["copy_ms"] = median_ms(lambda: _copy(ins[:4], outs[:4]), repeats)
    result["update_vs_floor"] = result["update_ms"] / result["memory_floor_ms"]
    result["update_fraction"] = result["update_ms"] / fwd_bwd_ms

    if args.json:
        print(json_dumps(result))
    else:
        for k in ("fwd_bwd_ms", "update_ms", "update_without_next_weights_ms", "forward_params_ms",
                  "forward_params_computed_ms", "sample_ms", "optimizer_ms", "optimizer_before_ms",
                  "numpy_update_ms", "memory_floor_ms", "copy_ms"):
            if k in result:
                print(f"{k:>30s}: {result[k]:9.2f}")
        print(f"{'optimizer_over_before':>30s}: {result['optimizer_over_before']:9.2f}   "
              "(sample + forward_params + update, over the update without the next weights + the weight pass)")
        print(f"{'update_vs_floor':>30s}: {result['update_vs_floor']:9.2f}   "
              "(memory floor: read m, Z, vel_m, vel_Z, g; write m, Z, vel_m, vel_Z, w)")
    return result


if __name__ == "__main__":
    sys.exit(run_main("bench_vispa.py", main))
