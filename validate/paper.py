"""refbinn's accuracies next to the paper's (spec section 10).

Reads every ``results/*.json`` written by ``refbinn train``::

    {"name": ..., "settings": {"dataset", "optimizer", "optimizer_settings", "epochs", ...},
     "summary": {"test_acc_mode_at_best_val", "test_acc_mode_last", "test_acc_mean_last", ...}}

and fills the rows of the paper's Table 2 and its two MNIST sweeps. Runs that
match a row (same data set and optimizer; for BayesBiNN also lr and tau, and
one row per ``numerics``) are averaged over seeds: mean +- std (n runs).
Figures: mode rows use ``test_acc_mode_at_best_val`` (the paper's rule), the
BayesBiNN mean row ``test_acc_mean_last`` (the only mean figure the runs
record). Accuracies stored as fractions are shown in percent. Rows without a
matching run say "not run"; JSON files that are not training results (no
``settings.dataset`` / ``summary``) are ignored, files that are not JSON fail. Runs with fewer epochs than the paper's 500 are
marked, since they are not expected to reach its figures.

``python -m validate.paper [folder]`` prints the table alone.
"""
from __future__ import annotations

import glob
import json
import math
import os
import sys

import numpy as np

from .common import Row

TABLE2 = {   # (dataset, optimizer): (mean, std), test accuracy %
    ("mnist", "ste"): (98.85, 0.09), ("cifar10", "ste"): (93.55, 0.15), ("cifar100", "ste"): (72.89, 0.21),
    ("mnist", "bop"): (98.47, 0.02), ("cifar10", "bop"): (93.00, 0.11), ("cifar100", "bop"): (69.58, 0.15),
    ("mnist", "pmf"): (98.80, 0.06), ("cifar10", "pmf"): (91.43, 0.14), ("cifar100", "pmf"): (70.45, 0.25),
    ("mnist", "bayesbinn"): (98.86, 0.05), ("cifar10", "bayesbinn"): (93.72, 0.16),
    ("cifar100", "bayesbinn"): (73.68, 0.31),
    ("mnist", "bayesbinn-mean"): (98.86, 0.05), ("cifar10", "bayesbinn-mean"): (93.72, 0.15),
    ("cifar100", "bayesbinn-mean"): (73.65, 0.41),
    ("mnist", "adam"): (99.01, 0.06), ("cifar10", "adam"): (93.90, 0.17), ("cifar100", "adam"): (74.83, 0.26),
}
BAYESBINN_DEFAULT = {"mnist": (1e-4, 1e-10), "cifar10": (3e-4, 1e-10), "cifar100": (3e-4, 1e-8)}
LR_SWEEP = {3e-3: 98.81, 1e-3: 98.83, 3e-4: 98.84, 1e-4: 98.86, 3e-5: 98.86, 1e-5: 98.84, 1e-6: 98.85}
TAU_SWEEP = {1e-3: 90.40, 1e-4: 90.72, 1e-5: 93.67, 1e-6: 98.01, 1e-7: 98.41, 1e-8: 98.82,
             1e-9: 98.81, 1e-10: 98.86, 1e-11: 98.86, 1e-12: 98.84}
LABELS = {"ste": "STE Adam", "bop": "Bop", "pmf": "PMF", "bayesbinn": "BayesBiNN (mode)",
          "bayesbinn-mean": "BayesBiNN (mean)", "adam": "Full precision"}
PAPER_EPOCHS = 500


def _is_train_result(r):
    s = r.get("settings") if isinstance(r, dict) else None
    return (isinstance(s, dict) and "dataset" in s and "optimizer" in s
            and isinstance(r.get("summary"), dict))


def load_results(folder="results"):
    """(runs, errors, others): training results (the keys above), 'path: reason' for files
    that are not valid JSON, and the paths of other JSON files (e.g. estimator tables), ignored."""
    runs, errors, others = [], [], []
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        try:
            with open(path) as fh:
                r = json.load(fh)
        except (OSError, ValueError) as exc:
            errors.append(f"{path}: {type(exc).__name__}: {exc}")
            continue
        if _is_train_result(r):
            r["_path"] = path
            runs.append(r)
        else:
            others.append(path)
    return runs, errors, others


def _close(a, b):
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-6)
    except (TypeError, ValueError):
        return False


def _pct(v):
    return None if v is None else (100.0 * v if v <= 1.0 else float(v))


def _rows_for(runs, label, paper, match, metric):
    """Output rows (one per numerics found, or one 'not run' row) for one table entry.

    A re-run with the same settings, seed included (e.g. the seed-0 run repeated on another
    CPU), counts once, as the first file in name order: the mean is over seeds, not files.
    Results that record no seed are all counted."""
    found, seen = [], set()
    for r in runs:
        key = json.dumps(r["settings"], sort_keys=True, default=str) if "seed" in r["settings"] else id(r)
        if match(r) and key not in seen:
            seen.add(key)
            found.append(r)
    groups = {}
    for r in found:
        groups.setdefault(r["settings"].get("optimizer_settings", {}).get("numerics"), []).append(r)
    if not groups:
        return [{"label": label, "paper": paper, "ours": None}]
    out = []
    for numerics, rs in groups.items():
        vals = [_pct(r["summary"].get(metric)) for r in rs]
        vals = [v for v in vals if v is not None]
        epochs = sorted({int(r["settings"].get("epochs", 0)) for r in rs})
        name = label + (f" [{numerics}]" if numerics else "")
        if not vals:
            out.append({"label": name, "paper": paper, "ours": None, "why": f"no '{metric}' in {len(rs)} run(s)"})
            continue
        out.append({"label": name, "paper": paper, "ours": float(np.mean(vals)),
                    "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan"),
                    "n": len(vals), "epochs": epochs})
    return out


def paper_rows(runs):
    """Every table entry: dicts with label, paper (mean, std or None), ours, std, n, epochs."""
    out = []

    def is_(r, ds, opt):
        return r["settings"]["dataset"] == ds and r["settings"]["optimizer"] == opt

    def settings(r):
        return r["settings"].get("optimizer_settings", {})

    for ds in ("mnist", "cifar10", "cifar100"):
        for opt in ("ste", "bop", "pmf", "bayesbinn", "bayesbinn-mean", "adam"):
            base = opt.split("-")[0]
            if base == "bayesbinn":
                lr, tau = BAYESBINN_DEFAULT[ds]
                match = (lambda r, ds=ds, lr=lr, tau=tau: is_(r, ds, "bayesbinn")
                         and _close(settings(r).get("lr"), lr) and _close(settings(r).get("tau"), tau))
            else:
                match = lambda r, ds=ds, base=base: is_(r, ds, base)
            metric = "test_acc_mean_last" if opt == "bayesbinn-mean" else "test_acc_mode_at_best_val"
            out += _rows_for(runs, f"Table 2 {ds} {LABELS[opt]}", TABLE2[(ds, opt)], match, metric)
    for lr, acc in LR_SWEEP.items():
        out += _rows_for(runs, f"MNIST lr sweep lr={lr:g} (tau 1e-10)", (acc, None),
                         lambda r, lr=lr: is_(r, "mnist", "bayesbinn") and _close(settings(r).get("lr"), lr)
                         and _close(settings(r).get("tau"), 1e-10), "test_acc_mode_at_best_val")
    for tau, acc in TAU_SWEEP.items():
        out += _rows_for(runs, f"MNIST tau sweep tau={tau:g} (lr 1e-4)", (acc, None),
                         lambda r, tau=tau: is_(r, "mnist", "bayesbinn") and _close(settings(r).get("tau"), tau)
                         and _close(settings(r).get("lr"), 1e-4), "test_acc_mode_at_best_val")
    return out


def _fmt(e):
    pm, ps = e["paper"]
    paper = f"{pm:.2f}" + (f" +- {ps:.2f}" if ps is not None else "")
    if e["ours"] is None:
        return paper, e.get("why", "not run"), ""
    ours = f"{e['ours']:.2f}" + ("" if math.isnan(e["std"]) else f" +- {e['std']:.2f}")
    ours += f" (n={e['n']}, {'/'.join(map(str, e['epochs']))} ep"
    ours += ", fewer epochs than the paper)" if max(e["epochs"]) < PAPER_EPOCHS else ")"
    return paper, ours, f"{e['ours'] - pm:+.2f}"


def run(folder="results"):
    """Rows for the validate table: informational (never failures), except unreadable files."""
    runs, errors, others = load_results(folder)
    rows = [Row("paper", f"unreadable {p}", float("nan"), float("nan"), "", ok=False) for p in errors]
    rows.append(Row("paper", f"{len(runs)} training result(s) in {folder}/", float("nan"), float("nan"),
                    f"{len(others)} other JSON file(s) ignored" + (f": {', '.join(map(os.path.basename, others))}"
                                                                 if others else ""), ok=True, label="info"))
    for e in paper_rows(runs):
        paper, ours, diff = _fmt(e)
        status = "not run" if e["ours"] is None else "info"
        d = float("nan") if e["ours"] is None else abs(e["ours"] - e["paper"][0])
        rows.append(Row("paper", e["label"], d, float("nan"),
                        f"paper {paper} | refbinn {ours}" + (f" | diff {diff} points" if diff else ""),
                        ok=True, label=status))
    return rows


def format_paper(folder="results"):
    runs, errors, _ = load_results(folder)
    body = [("entry", "paper %", "refbinn %", "diff")] + [(e["label"], *_fmt(e)) for e in paper_rows(runs)]
    w = [max(len(r[i]) for r in body) for i in range(4)]
    lines = ["  ".join(c.ljust(wi) for c, wi in zip(r, w)) for r in body]
    lines.insert(1, "-" * (sum(w) + 6))
    lines += [f"unreadable: {e}" for e in errors]
    lines.append(f"{len(runs)} result file(s) read from {os.path.abspath(folder)}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_paper(sys.argv[1] if len(sys.argv) > 1 else "results"))
