"""Calibration and OOD detection over seeds: mean +- std per method and prediction (issue 16, item 5).

Each ``--group LABEL=GLOB`` names one method and the checkpoints of its seeds (a shell
glob, quoted so that this script expands it). Every checkpoint is evaluated as
``refbinn evaluate CHECKPOINT --ood ... --samples ...`` does (refbinn/experiments/uncertainty.py):
the mode, and for optimizers that sample (BayesBiNN's mean, VISPA's ensemble) the mean over
each count of weight samples. Rows of one group and prediction are then averaged over the
checkpoints: mean and sample standard deviation (ddof = 1) of accuracy, NLL, Brier, ECE and,
per OOD set, the AUROC of the predictive entropy (JSON: also AUPR and the 1 - max p scores).

    python scripts/run_uncertainty.py \\
        --group "BayesBiNN=results/runs/mnist_bayesbinn_seed*/checkpoint.npz" \\
        --group "STE-Adam=results/runs/mnist_ste_seed*/checkpoint.npz" \\
        --group "Adam=results/runs/mnist_adam_seed*/checkpoint.npz" \\
        --group "VISPA=results/runs/mnist_vispa_seed*/checkpoint.npz"
    python scripts/run_uncertainty.py --group "X=results/runs/mnist_*/checkpoint.npz" --quick

Writes ``OUT/uncertainty_seeds.json`` (settings, per-checkpoint rows, the aggregate), and the
reliability diagram and entropy histograms of the first checkpoint of every group
(``OUT/reliability_seeds.png``, ``OUT/entropy_seeds.png``); ends with the table.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np

from refbinn.data.ood import OOD_SETS
from refbinn.options import MAX_BINS

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import DATA_ROOT_HELP, parse, run_main  # noqa: E402

# -- settings (issue 16) ----------------------------------------------------------------------------
OOD = ("uniform", "gaussian", "permuted", "fashion-mnist")   # fashion-mnist: skipped if absent
SAMPLES = (10, 100)                                           # C of the mean predictions
BINS = 15                                                     # equal-width ECE bins
SEED = 0                                                      # OOD noise and weight samples
OUT = "results/uncertainty"
METRICS = ("acc", "nll", "brier", "ece")
QUICK = dict(samples=(2,), max_test=500, out="results/runs/quick_uncertainty")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--group", action="append", required=True, metavar="LABEL=GLOB",
                   help="a method and the checkpoints of its seeds (repeat for each method)")
    p.add_argument("--ood", nargs="*", choices=OOD_SETS, help=f"OOD sets (default {list(OOD)})")
    p.add_argument("--samples", type=int, nargs="+", help=f"sample counts C (default {list(SAMPLES)})")
    p.add_argument("--bins", type=int, default=BINS)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--max-test", type=int, help="use the first N test inputs (default: all)")
    p.add_argument("--out", help=f"results folder (default {OUT}; with --quick {QUICK['out']})")
    p.add_argument("--data-root", help=DATA_ROOT_HELP)
    p.add_argument("--quick", action="store_true", help="smoke test: C = 2, 500 test inputs")
    return p.parse_args(argv)


def groups(specs):
    """[(label, sorted checkpoint paths)] from 'LABEL=GLOB' strings; ValueError if one matches nothing."""
    out = []
    for spec in specs:
        label, sep, pattern = spec.partition("=")
        if not sep or not label or not pattern:
            raise ValueError(f"--group must be LABEL=GLOB, got {spec!r}")
        paths = sorted(glob.glob(pattern))
        if not paths:
            raise ValueError(f"--group {label}: no checkpoint matches {pattern!r}")
        out.append((label, paths))
    return out


def mean_std(values):
    """(mean, sample std with ddof = 1; None for one value)."""
    v = np.asarray(values, float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)


def aggregate(rows, ood):
    """Rows of one (group, prediction, samples) averaged over their checkpoints, in first-seen order."""
    keys = list(dict.fromkeys((r["group"], r["prediction"], r["samples"]) for r in rows))
    out = []
    for g, pred, s in keys:
        mine = [r for r in rows if (r["group"], r["prediction"], r["samples"]) == (g, pred, s)]
        agg = {"group": g, "prediction": pred, "samples": s, "checkpoints": len(mine)}
        agg.update({m: mean_std([r["test"][m] for r in mine]) for m in METRICS})
        for name in ood:
            for m in ("auroc_entropy", "aupr_entropy", "auroc_maxprob", "aupr_maxprob"):
                if all(name in r["ood"] for r in mine):
                    agg[f"{name}/{m}"] = mean_std([r["ood"][name][m] for r in mine])
        out.append(agg)
    return out


def fmt(ms):
    m, s = ms
    return f"{m:.4f}" if s is None else f"{m:.4f} +- {s:.4f}"


def main(argv=None):
    a, command = parse(parse_args, argv, "run_uncertainty.py", samples=("int", 1, None), bins=("int", 1, MAX_BINS))
    from refbinn.experiments.uncertainty import evaluate_checkpoints, row_name
    from refbinn.experiments.uncertainty_plots import entropy_histograms, reliability_diagram
    from refbinn.io import write_json
    from refbinn.report import table
    q = QUICK if a.quick else {}
    ood = tuple(OOD if a.ood is None else a.ood)
    samples = tuple(a.samples or q.get("samples", SAMPLES))
    max_test, out = a.max_test or q.get("max_test"), a.out or q.get("out", OUT)
    try:
        todo = groups(a.group)
    except ValueError as e:                  # a malformed --group, or one matching nothing: was a traceback
        print(f"run_uncertainty.py: error: {e}", file=sys.stderr)
        return 2
    print(f"run_uncertainty: groups {[(g, len(p)) for g, p in todo]}; OOD {list(ood)}; samples {list(samples)}; "
          f"bins {a.bins}; seed {a.seed}; max_test {max_test}; out {out}", flush=True)

    rows, status, first = [], {}, []
    for label, paths in todo:
        res = evaluate_checkpoints(paths, ood=ood, samples=samples, bins=a.bins, seed=a.seed,
                                   max_test=max_test, root=a.data_root)
        for r in res["rows"]:
            r["group"] = label
        rows += res["rows"]
        status.update(res["ood_sets"])
        first += [dict(r, run=label) for r in res["rows"] if r["checkpoint"] == res["runs"][0]["checkpoint"]]
    present = [n for n in ood if any(n in r["ood"] for r in rows)]
    agg = aggregate(rows, present)

    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "uncertainty_seeds.json")
    write_json(path, {"command": command, "settings": {"groups": {g: p for g, p in todo}, "ood": list(ood),
                                                       "samples": list(samples), "bins": a.bins, "seed": a.seed,
                                                       "max_test": max_test},
                      "ood_sets": status, "aggregate": agg, "rows": rows})
    reliability_diagram(first, os.path.join(out, "reliability_seeds.png"),
                        title="Reliability diagram (test set, first seed of each method)")
    entropy_histograms(first, os.path.join(out, "entropy_seeds.png"))
    print(table([(r["group"], row_name(r), r["checkpoints"], *(fmt(r[m]) for m in METRICS),
                  *(fmt(r[f"{n}/auroc_entropy"]) if f"{n}/auroc_entropy" in r else None for n in present))
                 for r in agg],
                ("method", "prediction", "seeds", "acc", "NLL", "Brier", f"ECE ({a.bins} bins)",
                 *(f"AUROC(H) {n}" for n in present))))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main("run_uncertainty.py", main))
