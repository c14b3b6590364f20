"""Permuted MNIST: the data-versus-prior ratio of BayesBiNN's update, and the 5x5 matrix with a
reweighted prior term or the exact numerics, against today's setting (issue 15, item 3).

The README's explanation of the forgetting (task 1 at 58.8% after five tasks with the posterior
prior) is that the data term of a step dwarfs the prior's pull reweight*(lambda - lambda0). The
training diagnostics (refbinn/train/diagnostics.py) measure both terms on one batch at the end of
every epoch; this script runs each configuration below with the previous posterior as the prior,
for every seed, and writes per task the last epoch's data_rms, prior_rms and data_over_prior next
to the accuracy matrix A[t][k] (mean prediction, accuracy on task k after task t).

What would refute the explanation: a ratio near or below 1 while task 1 is forgotten, or upweighting
the prior (reweight 10, 100: the ratio falls by that factor) not raising task 1's accuracy after
task 5 beyond the seed spread. The exact numerics run at a temperature where they train (tau 0.3,
|lambda init| 1), so that their step is not ~0 (at tau 1e-2 and |lambda| 10 the exact scale is ~0).

Settings (the MLP and data of ``refbinn continual``; 10 epochs per task, not the paper's 100):

    python scripts/run_continual_ratio.py                 # 4 configurations x 3 seeds, ~6 min per run
    python scripts/run_continual_ratio.py --quick         # seconds (2 tasks, 1 epoch, 600 images)
    python scripts/run_continual_ratio.py --preset authors --configs official_rw10 --seeds 1 2 3
                                                          # against validate.authors_cl's refbinn runs
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import add_run_args, parse, resolve, run_main  # noqa: E402

# -- settings ---------------------------------------------------------------------------------------
TASKS = 5
EPOCHS = 10                            # per task (the paper: 100)
SEEDS = (0, 1, 2)
TEST_SAMPLES = 100
CONFIGS = {                            # name -> run_continual keyword arguments (prior: posterior)
    "official_rw1": dict(numerics="official", tau=1e-2, lr=1e-3, lam_init=10.0, reweight=1.0),  # today
    "official_rw10": dict(numerics="official", tau=1e-2, lr=1e-3, lam_init=10.0, reweight=10.0),
    "official_rw100": dict(numerics="official", tau=1e-2, lr=1e-3, lam_init=10.0, reweight=100.0),
    "exact_tau0.3": dict(numerics="exact", tau=0.3, lr=1e-3, lam_init=1.0, reweight=1.0),
}
OUT = "results"
QUICK = dict(tasks=2, epochs=1, max_train=600, max_test=500, test_samples=2, seeds=[0],
             out="results/runs/quick")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    p.add_argument("--tasks", type=int, help=f"number of tasks (default {TASKS})")
    p.add_argument("--epochs", type=int, help=f"epochs per task (default {EPOCHS})")
    p.add_argument("--seeds", type=int, nargs="+", help=f"seeds (default {list(SEEDS)})")
    p.add_argument("--test-samples", type=int, help=f"hard samples at test (default {TEST_SAMPLES})")
    p.add_argument("--max-train", type=int, help="use only the first N training images")
    p.add_argument("--max-test", type=int, help="use only the first N test images")
    p.add_argument("--preset", choices=["paper", "authors"], default="paper",
                   help="continual preset (refbinn.experiments.presets.CONTINUAL); 'authors' draws the "
                   "task permutations from the seed, as validate.authors_cl's runs do (default paper)")
    add_run_args(p, OUT, QUICK["out"], "smoke test: 2 tasks, 1 epoch, 600 images, one seed",
                 resume="skip (configuration, seed) pairs already done with these settings", stop_after=False)
    return p.parse_args(argv)


def summarize(runs, tasks):
    """Per configuration, over seeds: mean and std of the average accuracy after the last task, of
    task 1's accuracy after it, and the mean data/prior ratio per task."""
    out = {}
    for name, by_seed in runs.items():
        # dtype float: a file gives None (null) where the run had NaN, e.g. above the diagonal
        mats = np.array([r["acc_mean"] for r in by_seed.values()], dtype=float)    # (seeds, T, T)
        last = mats[:, tasks - 1, :]                                                # (seeds, T)
        ratio = np.array([[d["data_over_prior"] if d else np.nan for d in r["diagnostics"]]
                          for r in by_seed.values()], dtype=float)                  # (seeds, T)
        out[name] = {"avg_after_last": [float(np.mean(last.mean(1))), float(np.std(last.mean(1)))],
                     "task1_after_last": [float(np.mean(last[:, 0])), float(np.std(last[:, 0]))],
                     "data_over_prior_per_task": np.nanmean(ratio, axis=0).tolist(),
                     "seeds": len(by_seed)}
    return out


def main(argv=None):
    a, command = parse(parse_args, argv, "run_continual_ratio.py")
    tasks, epochs, test_samples, max_train, max_test, seeds, out = resolve(
        a, QUICK if a.quick else {}, tasks=TASKS, epochs=EPOCHS, test_samples=TEST_SAMPLES, max_train=None,
        max_test=None, seeds=list(SEEDS), out=OUT)
    settings = dict(tasks=tasks, epochs=epochs, test_samples=test_samples, max_train=max_train,
                    max_test=max_test, prior="posterior", preset=a.preset)
    print(f"run_continual_ratio: configs {a.configs}, seeds {seeds}; {json.dumps(settings)}; out {out}",
          flush=True)

    from refbinn import data as D
    from refbinn.experiments.continual import run_continual
    from refbinn.io import write_json
    from refbinn.report import table
    ds = D.load_mnist(a.data_root)
    x = D.normalize(ds.x_train, "mnist").reshape(len(ds.x_train), -1)[:max_train]     # (N, 784)
    xt = D.normalize(ds.x_test, "mnist").reshape(len(ds.x_test), -1)[:max_test]       # (N_test, 784)
    y, yt = ds.y_train[:max_train].astype(np.int64), ds.y_test[:max_test].astype(np.int64)

    path = os.path.join(out, "continual_ratio.json")
    result = {"experiment": "continual_ratio", "command": command, "settings": settings,
              "configs": {k: CONFIGS[k] for k in a.configs}, "runs": {}}
    if a.resume and os.path.exists(path):
        with open(path) as fh:
            old = json.load(fh)
        if old.get("settings") == json.loads(json.dumps(settings)):
            result["runs"] = {k: v for k, v in old["runs"].items() if old["configs"].get(k) == CONFIGS.get(k)}
            result["configs"] = {k: CONFIGS[k] for k in {**result["runs"], **result["configs"]}}
    for name in a.configs:
        for seed in seeds:
            if str(seed) in result["runs"].get(name, {}):
                print(f"[{name} seed {seed}] already in {path}: skipped (--resume)", flush=True)
                continue
            r = run_continual(x, y, xt, yt, tasks=tasks, epochs=epochs, test_samples=test_samples,
                              prior="posterior", seed=seed, quiet=a.quiet, preset=a.preset,
                              log=lambda m: print(m, flush=True), **CONFIGS[name])
            result["runs"].setdefault(name, {})[str(seed)] = r
            result["summary"] = summarize(result["runs"], tasks)
            write_json(path, result)
    result["summary"] = summarize(result["runs"], tasks)        # also when --resume had every run
    rows = [(name, f"{100 * s['avg_after_last'][0]:.1f} +- {100 * s['avg_after_last'][1]:.1f}",
             f"{100 * s['task1_after_last'][0]:.1f} +- {100 * s['task1_after_last'][1]:.1f}",
             " ".join(f"{v:.3g}" for v in s["data_over_prior_per_task"]))
            for name, s in result["summary"].items()]
    print(table(rows, ("configuration", f"avg after task {tasks} (%)", f"task 1 after task {tasks} (%)",
                       "data/prior per task")))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    sys.exit(run_main("run_continual_ratio.py", main))
