"""Very short probes of BayesBiNN's exact numerics on MNIST, for issue 15 (one seed each).

Each probe trains the 784-512-512-512-10 MLP on the first 10 000 training images (9 000 train,
1 000 validation) for 1 to 10 epochs and tests on all 10 000 test images, with BatchNorm
recalibrated from 10 training batches (and also evaluated without: *_trainbn) and the training
diagnostics on; BASE below, overridden by each probe's settings. They are meant to find settings
that learn fast (item 4's target: 98 percent in 25 epochs on the paper's MLP), not to measure:
one seed, a tenth of the data. The sweeps/issue15_*.toml files are the measurements.

Writes ``OUT/issue15_probes.json`` (rows replaced by name, so probes can be added later); each
row: test accuracy (mode, mean of 10 samples) at the last epoch, recalibrated and not, the
per-epoch test curve, the test accuracy at the best validation epoch, the last epoch's
diagnostics totals, and the wall seconds.

    python scripts/run_exact_probes.py                            # all probes, ~40 min on one core
    python scripts/run_exact_probes.py --only e3_lr1e-1_rw0.01_lam0.3_S1 e3_official
    python scripts/run_exact_probes.py --quick                    # one tiny probe (tests)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import add_run_args, parse, run_main  # noqa: E402

# -- settings --------------------------------------------------------------------------------------
BASE = dict(epochs=1, max_train=10000, eval_samples=10, recalibrate_bn=10, numerics="exact", tau=0.3,
            lr=1e-3, lam_init=1.0, samples=1, beta=0.0, reweight=1.0, seed=0,
            model_kwargs={"hidden": (512, 512, 512)})
PROBES = [  # name, overrides of BASE
    ('base', {}),
    ('lr1e-2', {"lr": 0.01}),
    ('clip_lr1e-2', {"lr": 0.01, "numerics": "exact-clipped"}),
    ('clip', {"numerics": "exact-clipped"}),
    ('official', {"numerics": "official", "tau": 1e-10, "lr": 0.0001, "lam_init": 10}),
    ('lr3e-2', {"lr": 0.03}),
    ('lr1e-1', {"lr": 0.1}),
    ('clip_lr1e-1', {"lr": 0.1, "numerics": "exact-clipped"}),
    ('lr1e-2_lam0.3', {"lr": 0.01, "lam_init": 0.3}),
    ('lr1e-2_tau1', {"lr": 0.01, "tau": 1.0}),
    ('lr1e-2_tau0.1', {"lr": 0.01, "tau": 0.1}),
    ('lr1e-2_anneal1to0.1', {"lr": 0.01, "tau": 1.0, "tau_end": 0.1}),
    ('lr1e-2_S4', {"lr": 0.01, "samples": 4}),
    ('e3_lr1e-3', {"epochs": 3}),
    ('e3_lr1e-2', {"epochs": 3, "lr": 0.01}),
    ('e3_lr3e-2', {"epochs": 3, "lr": 0.03}),
    ('e3_clip_lr1e-2', {"epochs": 3, "lr": 0.01, "numerics": "exact-clipped"}),
    ('e3_clip_lr3e-2', {"epochs": 3, "lr": 0.03, "numerics": "exact-clipped"}),
    ('e3_lr1e-2_anneal', {"epochs": 3, "lr": 0.01, "tau": 1.0, "tau_end": 0.1}),
    ('e3_official', {"epochs": 3, "numerics": "official", "tau": 1e-10, "lr": 0.0001, "lam_init": 10}),
    ('e3_lr1e-2_b0.9', {"epochs": 3, "lr": 0.01, "beta": 0.9}),
    ('e3_lr3e-2_b0.9', {"epochs": 3, "lr": 0.03, "beta": 0.9}),
    ('e3_lr1e-2_lam0.5', {"epochs": 3, "lr": 0.01, "lam_init": 0.5}),
    ('e3_lr3e-2_tau0.1', {"epochs": 3, "lr": 0.03, "tau": 0.1}),
    ('e3_lr1e-1_b0.9_clip', {"epochs": 3, "lr": 0.1, "beta": 0.9, "numerics": "exact-clipped"}),
    ('e10_lr1e-2', {"epochs": 10, "lr": 0.01}),
    ('e10_clip_lr1e-2', {"epochs": 10, "lr": 0.01, "numerics": "exact-clipped"}),
    ('e10_anneal1to0.03_lr1e-2', {"epochs": 10, "lr": 0.01, "tau": 1.0, "tau_end": 0.03}),
    ('e3_lr1e-2_rw0.1', {"epochs": 3, "lr": 0.01, "reweight": 0.1}),
    ('e3_lr1e-2_rw0.01', {"epochs": 3, "lr": 0.01, "reweight": 0.01}),
    ('e3_lr1e-2_rw0.001', {"epochs": 3, "lr": 0.01, "reweight": 0.001}),
    ('e3_lr1e-3_rw0.01', {"epochs": 3, "lr": 0.001, "reweight": 0.01}),
    ('e3_lr1e-2_rw0.01_lam0.1', {"epochs": 3, "lr": 0.01, "reweight": 0.01, "lam_init": 0.1}),
    ('e3_lr1e-2_rw0.01_lam0.3', {"epochs": 3, "lr": 0.01, "reweight": 0.01, "lam_init": 0.3}),
    ('e3_lr1e-2_rw0.01_lam0.1_tau1', {"epochs": 3, "lr": 0.01, "reweight": 0.01, "lam_init": 0.1, "tau": 1.0}),
    ('e3_lr3e-2_rw0.01_lam0.3_S4', {"epochs": 3, "lr": 0.03, "reweight": 0.01, "lam_init": 0.3, "samples": 4}),
    ('e3_lr1e-2_rw0.01_lam0.3_b0.9', {"epochs": 3, "lr": 0.01, "reweight": 0.01, "lam_init": 0.3, "beta": 0.9}),
    ('e3_lr3e-2_lam0.3_S4_rw1', {"epochs": 3, "lr": 0.03, "lam_init": 0.3, "samples": 4}),
    ('e3_lr1e-1_rw0.01_lam0.3_S4', {"epochs": 3, "lr": 0.1, "reweight": 0.01, "lam_init": 0.3, "samples": 4}),
    ('e3_lr3e-2_rw0.01_lam0.3_S8', {"epochs": 3, "lr": 0.03, "reweight": 0.01, "lam_init": 0.3, "samples": 8}),
    ('e3_lr1e-1_rw0.01_lam0.3_S1', {"epochs": 3, "lr": 0.1, "reweight": 0.01, "lam_init": 0.3}),
    ('e3_lr3e-1_rw0.01_lam0.3_S4', {"epochs": 3, "lr": 0.3, "reweight": 0.01, "lam_init": 0.3, "samples": 4}),
    ('e3_lr1e-1_rw0.001_lam0.3_S4', {"epochs": 3, "lr": 0.1, "reweight": 0.001, "lam_init": 0.3, "samples": 4}),
    ('e10_lr1e-1_rw0.01_lam0.3_S1', {"epochs": 10, "lr": 0.1, "reweight": 0.01, "lam_init": 0.3}),
    ('e3_lr3e-1_rw0.01_lam0.3_S1', {"epochs": 3, "lr": 0.3, "reweight": 0.01, "lam_init": 0.3}),
    ('e3_lr1e-1_rw0.01_lam0.3_tau0.1', {"epochs": 3, "lr": 0.1, "reweight": 0.01, "lam_init": 0.3, "tau": 0.1}),
    ('e10_official', {"epochs": 10, "numerics": "official", "tau": 1e-10, "lr": 0.0001, "lam_init": 10}),
    ('e10_lr1e-3', {"epochs": 10, "lr": 0.001}),
]
OUT = "results"
QUICK = dict(only=["base"], over=dict(max_train=600, eval_samples=2, model_kwargs={"hidden": (32,)}),
             out="results/runs/quick")
DIAG = dict(flips="flip_frac", active="active_frac", s_med="scale_median", s_p99="scale_p99",
            dp="data_over_prior", lam_max="lam_abs_max", lam_p99="lam_abs_p99")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", help="run only these probes (names in PROBES)")
    add_run_args(p, OUT, QUICK["out"], "one tiny probe", resume=False, stop_after=False, quiet=False)
    return p.parse_args(argv)


def probe_row(name, over, result, seconds):
    """The row of one probe from ``refbinn.experiments.run``'s result."""
    hist = result["history"]
    last, diag = hist[-1], hist[-1].get("diagnostics", {}).get("all", {})
    return dict(name=name, over=over, mode=last["test_acc_mode"], mode_trainbn=last.get("test_acc_mode_trainbn"),
                mean=last.get("test_acc_mean"), mean_trainbn=last.get("test_acc_mean_trainbn"),
                **{k: diag.get(v) for k, v in DIAG.items()}, sec=round(seconds, 1),
                curve=[round(e["test_acc_mode"], 4) for e in hist],
                curve_tb=[round(e["test_acc_mode_trainbn"], 4) for e in hist if "test_acc_mode_trainbn" in e],
                best=result["summary"].get("test_acc_mode_at_best_val"))


def main(argv=None):
    a, command = parse(parse_args, argv, "run_exact_probes.py")
    from refbinn.experiments import run
    from refbinn.io import json_dumps, write_json
    out = a.out or (QUICK["out"] if a.quick else OUT)
    only = a.only or (QUICK["only"] if a.quick else None)
    extra = QUICK["over"] if a.quick else {}
    unknown = sorted(set(only or ()) - {n for n, _ in PROBES})
    if unknown:
        raise ValueError(f"--only: unknown probes {unknown}; known: {[n for n, _ in PROBES]}")
    path = os.path.join(out, "issue15_probes.json")
    doc = {"experiment": "issue15_probes", "command": command, "base": BASE, "rows": []}
    if os.path.exists(path):
        with open(path) as fh:
            old = json.load(fh)
        doc["rows"], doc["description"] = old.get("rows", []), old.get("description", "")
    for name, over in PROBES:
        if only and name not in only:
            continue
        t0 = time.time()
        res = run("mnist", "bayesbinn", f"probe_{name}", {**BASE, **over, **extra}, out=out, root=a.data_root,
                  quiet=True, write=False, log=lambda m: None)
        row = probe_row(name, over, res, time.time() - t0)
        print(json_dumps({k: v for k, v in row.items() if k not in ("curve", "curve_tb")}), flush=True)
        doc["rows"] = [r for r in doc["rows"] if r["name"] != name] + [row]
        write_json(path, doc)
    print(f"wrote {path}")
    return doc


if __name__ == "__main__":
    sys.exit(run_main("run_exact_probes.py", main))
