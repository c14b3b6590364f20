"""Overhead of the training diagnostics (refbinn/train/diagnostics.py) per epoch, on the paper's MLP.

One epoch of BayesBiNN on MNIST (784-2048-2048-2048-10, batch 100, N = 54 000, S = 1) is
STEPS_PER_EPOCH training steps (``refbinn.train.train_step``) plus one diagnostics record
(``Diagnostics.start_epoch`` + ``end_epoch``: mode signs, S forward/backward passes on one
batch, the Lemma 1 terms per layer). Both are timed in this process (medians after one
warm-up); the figure is

    diagnostics_fraction = diagnostics_ms / (STEPS_PER_EPOCH * step_ms)

the share of an epoch's training time the diagnostics add (the epoch's evaluation, not
counted, only makes it smaller). Both numerics are timed (the exact one at tau 0.3, where
the scale is not 0, the official one at the paper's tau 1e-10).

Usage::

    python scripts/bench_diagnostics.py --quick --json
"""
from __future__ import annotations

import os
import platform
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import median_ms, parse_bench_args, run_main  # noqa: E402

import numpy as np  # noqa: E402

from refbinn.io import json_dumps  # noqa: E402
from refbinn.models import mlp_mnist  # noqa: E402
from refbinn.nn import softmax_cross_entropy  # noqa: E402
from refbinn.optim.bayesbinn import BayesBiNN  # noqa: E402
from refbinn.train import train_step  # noqa: E402
from refbinn.train.diagnostics import Diagnostics  # noqa: E402

# -- settings (paper, MNIST) -----------------------------------------------------------------------
N_TRAIN = 54000
BATCH = 100
STEPS_PER_EPOCH = N_TRAIN // BATCH          # 540
SETTINGS = {"exact": dict(tau=0.3, lr=1e-3, lam_init=1.0), "official": dict(tau=1e-10, lr=1e-4, lam_init=10.0)}
SEED = 0
REPEATS = 5
REPEATS_QUICK = 2


def main(argv=None):
    args, repeats, log = parse_bench_args(argv, __doc__.splitlines()[0], REPEATS, REPEATS_QUICK)
    rng = np.random.default_rng(SEED)
    model = mlp_mnist()
    params, bn = model.init(rng, np.float32)
    x = rng.standard_normal((BATCH, 784)).astype(np.float32)
    y = rng.integers(0, 10, BATCH)
    result = dict(model="mlp_mnist() 784-2048-2048-2048-10", batch=BATCH, steps_per_epoch=STEPS_PER_EPOCH,
                  repeats=repeats, machine=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                  threads=os.environ.get("NUMBA_NUM_THREADS"))
    for numerics, s in SETTINGS.items():
        opt = BayesBiNN(N=N_TRAIN, samples=1, numerics=numerics, **s)
        state = opt.init(params, np.random.default_rng(SEED + 1))
        r_noise, r_drop = np.random.default_rng(SEED + 2), np.random.default_rng(SEED + 3)
        step = lambda: train_step(model, opt, state, bn, x, y, softmax_cross_entropy, rng_noise=r_noise,
                                  rng_drop=r_drop)
        diag = Diagnostics(model, opt, softmax_cross_entropy, SEED)

        def record():
            diag.start_epoch(0, state)
            return diag.end_epoch(state, bn, x, y, s["lr"], {})

        step_ms = median_ms(step, repeats)
        diag_ms = median_ms(record, repeats)
        frac = diag_ms / (STEPS_PER_EPOCH * step_ms)
        result[numerics] = dict(step_ms=step_ms, diagnostics_ms=diag_ms, diagnostics_fraction=frac, **s)
        log(f"{numerics:>8s}: step {step_ms:8.1f} ms, diagnostics {diag_ms:8.1f} ms per record, "
            f"fraction of an epoch's training: {frac:.4f}")
    if args.json:
        print(json_dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(run_main("bench_diagnostics.py", main))
