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
import shlex
import sys
import time

import numpy as np

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
LABELS = {"bayesbinn": "BayesBiNN", "ste": "STE-Adam", "bop": "Bop", "pmf": "PMF", "adam": "Adam",
          "vispa": "VISPA"}
HISTORY_EVERY = 10                     # keep every 10th epoch of the history in the JSON
OUT = "results"
QUICK = dict(epochs=300, out="results/runs/quick")


def thin(history, every):
    """Every ``every``-th epoch record and the last."""
    return [h for i, h in enumerate(history) if (i + 1) % every == 0 or i + 1 == len(history)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--optimizers", nargs="+", default=list(RUNS), choices=list(LABELS),
                   help="optimizers (default: %(default)s; others use refbinn's two-moons preset)")
    p.add_argument("--epochs", type=int, help=f"epochs (default {EPOCHS}; the milestones stay at 1500, 2500)")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--hidden", type=int, help=f"hidden width (default {HIDDEN})")
    p.add_argument("--out", help=f"results folder (default {OUT}; with --quick {QUICK['out']})")
    p.add_argument("--quick", action="store_true", help=f"smoke test: {QUICK['epochs']} epochs")
    return p.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    a = parse_args(argv)
    q = QUICK if a.quick else {}
    epochs = a.epochs or q.get("epochs", EPOCHS)
    hidden = a.hidden or HIDDEN
    out = a.out or q.get("out", OUT)
    command = "python scripts/run_two_moons.py " + shlex.join(argv)
    print(f"run_two_moons: optimizers {a.optimizers}; epochs {epochs}, seed {a.seed}, hidden {hidden}, "
          f"eval samples {EVAL_SAMPLES}; out {out}", flush=True)

    from refbinn.report import table as _table, write_json as _write_json
    from refbinn.demo import _grid, _plot_moons
    from refbinn.experiments import build
    from refbinn.train import _probs, fit
    xx, yy, grid = _grid()                                    # grid: (121*121, 2), standardised inputs
    rows, runs, maps = [], [], {}
    for optimizer in dict.fromkeys(a.optimizers):
        over = dict(RUNS.get(optimizer, {}), epochs=epochs, seed=a.seed, eval_samples=EVAL_SAMPLES,
                    model_kwargs={"hidden": hidden})
        s = build(DATASET, optimizer, overrides=over, quiet=True)
        print(f"{optimizer}: {s.settings['optimizer_settings']}", flush=True)
        t0 = time.perf_counter()
        res = fit(s.model, s.opt, s.data, s.loss_fn, s.cfg, schedule=s.schedule, log=lambda m: None)
        secs = time.perf_counter() - t0
        st, bn, ev = res["opt_state"], res["bn_state"], res["history"]["epochs"][-1]
        label = LABELS[optimizer]
        maps[f"{label} (mode)"] = _probs(s.model.apply(s.opt.params(st), grid, bn))[:, 1]
        rows.append((f"{label} (mode)", ev["test_acc_mode"], ev["test_nll_mode"], secs))
        if "test_acc_mean" in ev:
            rng = np.random.default_rng(a.seed + 7)          # the stream refbinn demo uses
            maps[f"{label} (mean)"] = np.mean(
                [_probs(s.model.apply(s.opt.sample_params(st, rng), grid, bn))[:, 1]
                 for _ in range(EVAL_SAMPLES)], axis=0)
            rows.append((f"{label} (mean)", ev["test_acc_mean"], ev["test_nll_mean"], secs))
        runs.append({"name": f"two_moons_{optimizer}", "command": command,
                     "settings": {k: v for k, v in s.settings.items() if k != "extra"},
                     "summary": res["summary"], "wall_seconds_this_invocation": secs,
                     "history": thin(res["history"]["epochs"], HISTORY_EVERY)})
        data = s.data

    os.makedirs(out, exist_ok=True)
    png = os.path.join(out, "two_moons.png")
    drawn = _plot_moons(png, xx, yy, maps, data)
    path = os.path.join(out, "two_moons.json")
    _write_json(path, {"experiment": "two_moons", "command": command,
                       "settings": dict(epochs=epochs, seed=a.seed, hidden=hidden, eval_samples=EVAL_SAMPLES,
                                        n_train=data.n_train, n_test=len(data.y_test)),
                       "rows": [dict(zip(("method", "test_acc", "test_nll", "seconds"), r)) for r in rows],
                       "png": png if drawn else None, "runs": runs})
    print(f"\nTwo moons: {data.n_train} training points, {len(data.y_test)} test points "
          "(the paper: Figure 3, no numbers; compare the maps)")
    print(_table([(m, f"{100 * acc:.1f}", nll, f"{sec:.1f}") for m, acc, nll, sec in rows],
                 ("method", "test acc %", "test NLL", "seconds")))
    print(f"wrote {path}" + (f", {png}" if drawn else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
