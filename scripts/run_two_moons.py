"""Two moons (the paper's Figure 3): BayesBiNN (mode and mean) vs STE-Adam.

Data (refbinn.experiments.load_data): 200 training points (100 per class), noise
0.1, 50 test points, inputs standardised with the training statistics. Network:
2-64-64-1 MLP, tanh, biases, no BN, every parameter binary; logistic loss, full
batch (N = 200). Each run = ``refbinn.experiments.build`` (the paper preset with
the settings below as overrides) + ``refbinn.train.fit``; the mean prediction
averages the probabilities of EVAL_SAMPLES hard weight samples.

Writes ``OUT/two_moons.json`` (rows, settings, and per run the record
``refbinn train`` writes, its history thinned to every HISTORY_EVERY-th epoch)
and ``OUT/two_moons.png`` (predictive probability maps, as in Figure 3; needs
matplotlib). The paper gives this experiment as a figure only, no numbers.

    python scripts/run_two_moons.py                 # ~20 s on 2 cores
    python scripts/run_two_moons.py --quick         # 300 epochs
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (LABELS, add_figure_args, add_run_args, build_and_fit, parse, resolve,  # noqa: E402
                     run_main, run_record)

# -- settings (spec section 9, two moons) --------------------------------------------------------
DATASET = "two-moons"
EPOCHS = 3000                          # lr x0.1 at epochs 1500 and 2500
HIDDEN = 64                            # 2-64-64-1, tanh
SEED = 0
EVAL_SAMPLES = 10                      # C hard samples for the mean prediction
RUNS = {
    "bayesbinn": dict(lr=1e-3, beta=0.99, tau=1.0, samples=5, lam_init=15.0, numerics="exact",
                      schedule="milestones", milestones=(1500, 2500)),
    "ste": dict(lr=0.1, schedule="milestones", milestones=(1500, 2500)),     # Adam on latent weights
}
HISTORY_EVERY = 10                     # keep every 10th epoch of the history in the JSON
OUT = "results"
QUICK = dict(epochs=300, out="results/runs/quick")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_figure_args(p, RUNS, "two-moons", f"epochs (default {EPOCHS}; the milestones stay at 1500, 2500)",
                    SEED, HIDDEN)
    add_run_args(p, OUT, QUICK["out"], f"smoke test: {QUICK['epochs']} epochs", data_root=False, resume=False,
                 stop_after=False, quiet=False)
    return p.parse_args(argv)


def main(argv=None):
    a, command = parse(parse_args, argv, "run_two_moons.py")
    epochs, hidden, out = resolve(a, QUICK if a.quick else {}, epochs=EPOCHS, hidden=HIDDEN, out=OUT)
    print(f"run_two_moons: optimizers {a.optimizers}; epochs {epochs}, seed {a.seed}, hidden {hidden}, "
          f"eval samples {EVAL_SAMPLES}; out {out}", flush=True)

    from refbinn.io import write_json as _write_json
    from refbinn.report import table as _table
    from refbinn.experiments.demo import _grid, _plot_moons
    from refbinn.predict import predict_mean, predict_mode
    xx, yy, grid = _grid()                                    # grid: (121*121, 2), standardised inputs
    rows, runs, maps = [], [], {}
    for optimizer in dict.fromkeys(a.optimizers):
        over = dict(RUNS.get(optimizer, {}), epochs=epochs, seed=a.seed, eval_samples=EVAL_SAMPLES,
                    model_kwargs={"hidden": hidden})
        s, res, secs = build_and_fit(DATASET, optimizer, over)
        st, bn, ev = res["opt_state"], res["bn_state"], res["history"]["epochs"][-1]
        label = LABELS[optimizer]
        whole = dict(link="classes", batch_size=len(grid))
        maps[f"{label} (mode)"] = predict_mode(s.model, s.opt, st, bn, grid, **whole)[:, 1]
        rows.append((f"{label} (mode)", ev["test_acc_mode"], ev["test_nll_mode"], secs))
        if "test_acc_mean" in ev:
            rng = np.random.default_rng(a.seed + 7)          # the stream refbinn demo uses
            maps[f"{label} (mean)"] = predict_mean(s.model, s.opt, st, bn, grid, EVAL_SAMPLES, rng,
                                                   **whole)[:, 1]
            rows.append((f"{label} (mean)", ev["test_acc_mean"], ev["test_nll_mean"], secs))
        runs.append(run_record(f"two_moons_{optimizer}", command, s, res, secs, HISTORY_EVERY))
        data = s.data

    os.makedirs(out, exist_ok=True)
    png = os.path.join(out, "two_moons.png")
    path = os.path.join(out, "two_moons.json")
    doc = {"experiment": "two_moons", "command": command,
           "settings": dict(epochs=epochs, seed=a.seed, hidden=hidden, eval_samples=EVAL_SAMPLES,
                            n_train=data.n_train, n_test=len(data.y_test)),
           "rows": [dict(zip(("method", "test_acc", "test_nll", "seconds"), r)) for r in rows],
           "png": None, "runs": runs}
    _write_json(path, doc)                   # the trained results first: a failed plot loses nothing
    drawn = _plot_moons(png, xx, yy, maps, data)
    if drawn:
        _write_json(path, dict(doc, png=png))
    print(f"\nTwo moons: {data.n_train} training points, {len(data.y_test)} test points "
          "(the paper: Figure 3, no numbers; compare the maps)")
    print(_table([(m, f"{100 * acc:.1f}", nll, f"{sec:.1f}") for m, acc, nll, sec in rows],
                 ("method", "test acc %", "test NLL", "seconds")))
    print(f"wrote {path}" + (f", {png}" if drawn else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_main("run_two_moons.py", main))
