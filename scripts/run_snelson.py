"""Snelson 1-D regression (the paper's Figure 2): BayesBiNN mean +- 2 std vs STE-Adam.

Data (refbinn.data.load_snelson, needs ``snelson/snelson1d.npz`` under the data
root): 200 training points, X and y standardised; the test grid runs from -3 to
10 (301 points, data units). Network: 1-64-64-1 MLP, tanh, biases, one BatchNorm
without affine on the output, every parameter binary; MSE loss, full batch. Each
run = ``refbinn.experiments.build`` (the paper preset with the settings below as
overrides) + ``refbinn.train.fit``. BayesBiNN's curve is the mean +- 2 std over
EVAL_SAMPLES hard weight samples.

Writes ``OUT/snelson.json`` (rows, the curves on the grid, settings, and per run
the record ``refbinn train`` writes, its history thinned to every HISTORY_EVERY-th
epoch) and ``OUT/snelson.png`` (needs matplotlib). The paper gives this experiment
as a figure only, no numbers.

    python scripts/run_snelson.py                   # ~10 s on 2 cores
    python scripts/run_snelson.py --quick           # 300 epochs
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (LABELS, add_figure_args, add_run_args, build_and_fit, parse, resolve,  # noqa: E402
                     run_main, run_record)

# -- settings (spec section 9, Snelson) ----------------------------------------------------------
DATASET = "snelson"
EPOCHS = 5000
HIDDEN = 64                            # 1-64-64-1, tanh, output BN (no affine)
SEED = 0
EVAL_SAMPLES = 10                      # hard samples for the mean +- 2 std
RUNS = {
    # lr decays geometrically per epoch from 1e-4 to 1e-5 over the run
    "bayesbinn": dict(lr=1e-4, beta=0.99, tau=1.0, samples=1, lam_init=10.0, numerics="exact",
                      schedule="geometric", lr_end=1e-5),
    "ste": dict(lr=0.1, schedule="constant"),                                 # Adam on latent weights
}
HISTORY_EVERY = 50                     # keep every 50th epoch of the history in the JSON
OUT = "results"
QUICK = dict(epochs=300, out="results/runs/quick")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_figure_args(p, RUNS, "Snelson", f"epochs (default {EPOCHS})", SEED, HIDDEN)
    add_run_args(p, OUT, QUICK["out"], f"smoke test: {QUICK['epochs']} epochs", resume=False,
                 stop_after=False, quiet=False)
    return p.parse_args(argv)


def main(argv=None):
    a, command = parse(parse_args, argv, "run_snelson.py")
    epochs, hidden, out = resolve(a, QUICK if a.quick else {}, epochs=EPOCHS, hidden=HIDDEN, out=OUT)
    print(f"run_snelson: optimizers {a.optimizers}; epochs {epochs}, seed {a.seed}, hidden {hidden}, "
          f"eval samples {EVAL_SAMPLES}; out {out}", flush=True)

    from refbinn.io import write_json as _write_json
    from refbinn.report import table as _table
    from refbinn.data import snelson_grid
    from refbinn.experiments.demo import _plot_snelson
    rows, runs, curves = [], [], {}
    for optimizer in dict.fromkeys(a.optimizers):
        over = dict(RUNS.get(optimizer, {}), epochs=epochs, seed=a.seed, eval_samples=EVAL_SAMPLES,
                    model_kwargs={"hidden": hidden})
        s, res, secs = build_and_fit(DATASET, optimizer, over, root=a.data_root)
        sn, st, bn = s.settings["extra"], res["opt_state"], res["bn_state"]
        xg = sn.standardize_x(snelson_grid()).astype(np.float32)                # (301, 1), standardised
        x, y = s.data.x_train, s.data.y_train                                     # (200, 1) each
        mse_mode = float(np.mean((s.model.apply(s.opt.params(st), x, bn) - y) ** 2))
        label, mse_mean = LABELS[optimizer], None
        if hasattr(s.opt, "sample_params"):
            rng = np.random.default_rng(a.seed + 7)          # the stream refbinn demo uses
            params = [s.opt.sample_params(st, rng) for _ in range(EVAL_SAMPLES)]
            preds = np.stack([s.model.apply(p, xg, bn)[:, 0] for p in params])   # (C, 301)
            mse_mean = float(np.mean((np.mean([s.model.apply(p, x, bn) for p in params], axis=0) - y) ** 2))
            curves[label] = (preds.mean(0), preds.std(0))
        else:
            curves[label] = (s.model.apply(s.opt.params(st), xg, bn)[:, 0], None)
        rows.append((label, mse_mode, mse_mean, secs))
        runs.append(run_record(f"snelson_{optimizer}", command, s, res, secs, HISTORY_EVERY))
        data = s.data

    os.makedirs(out, exist_ok=True)
    png = os.path.join(out, "snelson.png")
    path = os.path.join(out, "snelson.json")
    doc = {"experiment": "snelson", "command": command,
           "settings": dict(epochs=epochs, seed=a.seed, hidden=hidden, eval_samples=EVAL_SAMPLES,
                            n_train=data.n_train),
           "rows": [dict(zip(("method", "train_mse_mode", "train_mse_mean", "seconds"), r)) for r in rows],
           "curves": {k: {"x_standardised": xg[:, 0], "mean": m, "std": sd} for k, (m, sd) in curves.items()},
           "png": None, "runs": runs}
    _write_json(path, doc)                   # the trained results first: a failed plot loses nothing
    drawn = _plot_snelson(png, xg[:, 0], curves, data)
    if drawn:
        _write_json(path, dict(doc, png=png))
    print(f"\nSnelson 1-D regression: {data.n_train} training points, MSE in standardised units "
          "(the paper: Figure 2, no numbers; compare the curves)")
    print(_table([(m, a_, b_, f"{sec:.1f}") for m, a_, b_, sec in rows],
                 ("method", "train MSE (mode)", "train MSE (mean of samples)", "seconds")))
    print(f"wrote {path}" + (f", {png}" if drawn else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_main("run_snelson.py", main))
