"""Issue 15's tables and figure, "What the paper's math does, measured", from the sweeps' files.

Reads the runs of the issue-15 sweeps (``results/sweeps/issue15_*/runs/*/history.json``, written
by ``refbinn sweep sweeps/issue15_*.toml``) and, when present, the side-by-side permuted-MNIST
runs (``results/retention/retention.json``, ``python -m validate.authors_cl``) and the reweighted
continual runs (``results/continual_ratio.json``, ``scripts/run_continual_ratio.py``). Writes

- ``OUT/summary.json``: one row per setting (mean, sample std and values over the seeds);
- ``OUT/summary.md``: the same as Markdown tables (the README quotes them);
- ``OUT/curves.png``: test accuracy per epoch of every 512-MLP setting, and the Lemma 1
  scale's 99th percentile and |lambda|'s maximum every 100 steps for the BN/scale sweep.

Nothing is trained here. Per run it takes the mode's test accuracy at the epoch of best
validation accuracy, with BatchNorm recalibrated from 10 training batches (``recal``) and with
the training's running statistics (``trainbn``, same weights); the mean prediction of 10
samples at the last epoch (both ways); and the last epoch's diagnostics totals
(``refbinn.train.diagnostics``).

    python scripts/paper_math.py                     # -> results/paper_math/
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys

import numpy as np

from refbinn.io import atomic_write, save_figure, write_json

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import run_main  # noqa: E402

SWEEPS = ("bn_scale", "clipped", "anneal", "samples", "lam_lr", "reweight", "candidate")
DIAG = ("active_frac", "scale_median", "scale_p99", "scale_max", "lam_abs_max", "flip_frac",
        "data_over_prior")


def stat(values):
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return None
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else None,
            "values": [float(x) for x in v]}


def run_row(h):
    """The numbers of one run's history.json."""
    s, ep = h["summary"], h["epochs"]
    b = s["best_val_epoch"] - 1
    last = ep[-1].get("diagnostics", {}).get("all", {})
    gap = ep[-1].get("diagnostics", {}).get("gap_test")
    return {"epochs": len(ep),
            "test_mode_recal": s.get("test_acc_mode_at_best_val"),
            "test_mode_trainbn": ep[b].get("test_acc_mode_trainbn"),
            "test_mean_recal_last": s.get("test_acc_mean_last"),
            "test_mean_trainbn_last": s.get("test_acc_mean_trainbn_last"),
            "test_mode_last": s.get("test_acc_mode_last"),
            "peak_epoch": int(np.argmax(np.array([e.get("test_acc_mode", 0) for e in ep], dtype=float))) + 1,
            "curve": [e.get("test_acc_mode") for e in ep],
            "curve_trainbn": [e.get("test_acc_mode_trainbn") for e in ep],
            "mean_minus_mode_test": gap,
            "seconds_per_epoch": float(np.median([e["seconds"] for e in ep])),
            "steps": global_steps(h),
            **{k: last.get(k) for k in DIAG}}


def global_steps(h):
    """[(step since the start, diagnostics totals)]: every diagnostics_every steps and each epoch's end.

    The history numbers the in-epoch records from the epoch's start; an epoch has
    ceil(n_train / batch_size) steps.
    """
    cfg = h["config"]
    spe = -(-int(cfg.get("n_train", 0)) // int(cfg.get("batch_size", 1)))
    out = []
    for i, e in enumerate(h["epochs"]):
        d = e.get("diagnostics", {})
        out += [(i * spe + s["step"], s["all"]) for s in d.get("steps", [])]
        if d.get("all"):
            out.append(((i + 1) * spe, d["all"]))
    return out


def read_json(path):
    """The JSON document in ``path``; ValueError naming the file if it is not JSON (cut short, another kind)."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except ValueError as e:                     # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{path}: not a valid JSON file ({e})") from None


def load_sweep(root, sweep):
    """{setting: [run rows]} for one sweep folder; the setting is the run name without _sSEED."""
    out = {}
    for path in sorted(glob.glob(os.path.join(root, f"issue15_{sweep}", "runs", "*", "history.json"))):
        name = os.path.basename(os.path.dirname(path))
        h = read_json(path)
        try:
            if not h.get("summary"):
                continue                                # a run still in progress
            cfg = h["config"]
            if len(h["epochs"]) < cfg["epochs"]:
                continue
            row = run_row(h)
            row["seed"] = cfg["seed"]
        except (AttributeError, KeyError, IndexError, TypeError) as e:     # was a traceback
            raise ValueError(f"{path}: not a refbinn run history ({type(e).__name__}: {e})") from None
        setting = re.sub(r"_s\d+$", "", name)
        spec = os.path.join(os.path.dirname(path), "run.json")
        row["settings"] = read_json(spec).get("overrides", {}) if os.path.exists(spec) else {}
        out.setdefault(setting, []).append(row)
    return out


def aggregate(runs):
    keys = ("test_mode_recal", "test_mode_trainbn", "test_mean_recal_last", "test_mean_trainbn_last",
            "test_mode_last", "peak_epoch", "mean_minus_mode_test", "seconds_per_epoch") + DIAG
    agg = {"seeds": [r["seed"] for r in runs], "n": len(runs), "epochs": runs[0]["epochs"],
           "point": runs[0]["settings"]}
    for k in keys:
        agg[k] = stat([r[k] for r in runs])
    agg["curve_mean"] = np.nanmean(np.array([r["curve"] for r in runs], dtype=float), axis=0).tolist()
    agg["curve_trainbn_mean"] = np.nanmean(np.array([r["curve_trainbn"] for r in runs], dtype=float), axis=0).tolist()
    agg["steps_mean"] = steps_mean(runs)
    return agg


def steps_mean(runs):
    """[[step, scale_p99, lam_abs_max], ...] every diagnostics_every steps, mean over the seeds."""
    st = [np.array([(s, d.get("scale_p99", np.nan), d.get("lam_abs_max", np.nan)) for s, d in r["steps"]],
                   dtype=float) for r in runs if r["steps"]]
    if not st:
        return []
    n = min(len(x) for x in st)
    return np.mean([x[:n] for x in st], axis=0).tolist()


def pm(s, scale=100.0, digits=2):
    if s is None:
        return "-"
    if s["std"] is None:
        return f"{s['mean'] * scale:.{digits}f}"
    return f"{s['mean'] * scale:.{digits}f} +- {s['std'] * scale:.{digits}f}"


def sci(s):
    return "-" if s is None else f"{s['mean']:.3g}"


def table(rows):
    head = ("| sweep: setting | seeds | epochs | test, mode @ best val, BN recal (%) | same, training BN (%) "
            "| mean of 10, last, recal (%) | peak epoch | active frac | scale median | scale p99 "
            "| max abs lambda | flips / epoch | data / prior |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for key, r in rows.items():
        lines.append(f"| {key} | {r['n']} | {r['epochs']} | {pm(r['test_mode_recal'])} | {pm(r['test_mode_trainbn'])} "
                     f"| {pm(r['test_mean_recal_last'])} | {sci(r['peak_epoch'])} | {sci(r['active_frac'])} "
                     f"| {sci(r['scale_median'])} | {sci(r['scale_p99'])} | {sci(r['lam_abs_max'])} "
                     f"| {sci(r['flip_frac'])} | {sci(r['data_over_prior'])} |")
    return "\n".join(lines)


def per_task(diags_list, key, tasks):
    """Mean over runs of one diagnostics key per task (runs that did not record it are left out;
    a null value, a NaN or inf when written, counts as NaN)."""
    out = []
    for k in range(tasks):
        v = [d[k][key] for d in diags_list if d and len(d) > k and d[k] and key in d[k]]
        out.append(float(np.mean(np.array(v, dtype=float))) if v else None)
    return out


def fmt_tasks(vals):
    return " ".join("-" if v is None else f"{v:.2g}" for v in vals) if vals else "-"


def continual_tables(root):
    """Permuted MNIST: the side-by-side runs (retention.json) and the reweighted prior (continual_ratio.json)."""
    out, md = {}, []
    head = ("| permuted MNIST, 5 tasks x 10 epochs, prior = previous posterior | seeds | average after task 5 (%) "
            "| per seed (%) | task 1 after task 5 (%) | data / prior, RMS, per task | median of abs(data) / abs(prior), per task |")
    rows = []
    path = os.path.join(root, "retention", "retention.json")
    res = {}
    if os.path.exists(path):
        doc = read_json(path)
        tasks = doc.get("tasks", 5)
        runs = doc.get("runs", {})
        for side in ("authors", "refbinn"):
            rs = sorted((r for r in runs.values() if r["side"] == side), key=lambda r: r["seed"])
            if not rs:
                continue
            diags = [r.get("diagnostics") for r in rs]
            res[side] = {"seeds": [r["seed"] for r in rs], "avg_after_last": stat([r["avg_after_last"] for r in rs]),
                         "task1_after_last": stat([r["task1_after_last"] for r in rs]),
                         "data_over_prior_per_task": per_task(diags, "data_over_prior", tasks) if side == "refbinn" else None,
                         "ratio_median_per_task": per_task(diags, "ratio_median", tasks) if side == "refbinn" else None,
                         "ratio_median_seeds": [r["seed"] for r in rs if r.get("diagnostics")
                                                and "ratio_median" in (r["diagnostics"][-1] or {})]}
            label = "the authors' script" if side == "authors" else "refbinn, `--preset authors`"
            rows.append((label, res[side]))
        if len(res) == 2:
            a, b = res["authors"]["avg_after_last"], res["refbinn"]["avg_after_last"]
            if a["std"] is not None and b["std"] is not None:
                d = b["mean"] - a["mean"]
                se = float(np.sqrt(a["std"] ** 2 / len(a["values"]) + b["std"] ** 2 / len(b["values"])))
                res["refbinn_minus_authors"] = {"mean": d, "se": se}
        out["retention"] = res
    path = os.path.join(root, "retention", "continual_ratio.json")
    if os.path.exists(path):
        doc = read_json(path)
        tasks = doc["settings"]["tasks"]
        out["continual_ratio"] = {"settings": doc.get("settings"), "configs": doc.get("configs")}
        for name, by_seed in doc.get("runs", {}).items():
            rs = list(by_seed.values())
            diags = [r.get("diagnostics") for r in rs]
            r = {"seeds": [int(s) for s in by_seed],
                 "avg_after_last": stat([float(np.mean(np.array(x["acc_mean"], dtype=float)[-1])) for x in rs]),
                 "task1_after_last": stat([float(np.array(x["acc_mean"], dtype=float)[-1][0]) for x in rs]),
                 "data_over_prior_per_task": per_task(diags, "data_over_prior", tasks),
                 "ratio_median_per_task": per_task(diags, "ratio_median", tasks)}
            out["continual_ratio"][name] = r
            rows.append((f"refbinn, `--preset authors`, {name} ({doc['configs'][name].get('reweight')} x the prior term)", r))
    if rows:
        md = [head, "|---|---|---|---|---|---|---|"]
        for label, r in rows:
            vals = ", ".join(f"{100 * x:.1f}" for x in r["avg_after_last"]["values"])
            md.append(f"| {label} | {', '.join(str(s) for s in r['seeds'])} | {pm(r['avg_after_last'])} | {vals} "
                      f"| {pm(r['task1_after_last'])} | {fmt_tasks(r.get('data_over_prior_per_task'))} "
                      f"| {fmt_tasks(r.get('ratio_median_per_task'))} |")
        if "refbinn_minus_authors" in res:
            d = res["refbinn_minus_authors"]
            md.append(f"| refbinn - the authors' script | | {100 * d['mean']:+.2f} +- {100 * d['se']:.2f} (standard error) | | | | |")
    return out, "\n".join(md)


def figure(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(12, 4.5))
    a0.set_prop_cycle(color=plt.cm.tab20(np.linspace(0, 1, 20)))      # one colour per setting
    for key, r in rows.items():
        if key.startswith("candidate"):
            continue
        c = np.array(r["curve_mean"]) * 100
        l, = a0.plot(np.arange(1, len(c) + 1), c, marker="o", ms=3, label=key)
        if key.startswith("bn_scale"):
            c = np.array(r["curve_trainbn_mean"]) * 100
            a0.plot(np.arange(1, len(c) + 1), c, ls="--", color=l.get_color(), label=f"{key}, training BN")
    a0.set_xlabel("epoch"); a0.set_ylabel("test accuracy of the mode (%)")
    a0.set_title("784-512-512-512-10 MLP, mean of the seeds; BN recalibrated (solid)")
    a0.legend(fontsize=6, ncol=2); a0.grid(alpha=0.3)
    for key, r in rows.items():
        if not (key.startswith("bn_scale") or key.startswith("clipped")) or not r["steps_mean"]:
            continue
        m = np.array(r["steps_mean"])
        l, = a1.plot(m[:, 0], m[:, 1], label=f"{key}: scale p99")
        a1.plot(m[:, 0], m[:, 2], ls="--", color=l.get_color(), label=f"{key}: max |lambda|")
    a1.set_yscale("log"); a1.set_xlabel("step"); a1.set_title("Lemma 1 scale (p99) and max |lambda|, every 100 steps")
    a1.legend(fontsize=6); a1.grid(alpha=0.3)
    fig.tight_layout(); save_figure(fig, path, dpi=110); plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default="results")
    ap.add_argument("--out", default="results/paper_math")
    a = ap.parse_args(argv)
    for flag, path in (("--results", a.results), ("--out", a.out)):    # a file as --out failed at the end
        if not path:
            ap.error(f"{flag} is empty; give a folder")
        if os.path.exists(path) and not os.path.isdir(path):
            ap.error(f"{flag} {path} is a file; give a folder")
    rows = {}
    try:
        for sweep in SWEEPS:
            for setting, runs in load_sweep(os.path.join(a.results, "sweeps"), sweep).items():
                key = f"{sweep}: {setting.replace('mnist_bayesbinn', '').strip('_') or 'base'}"
                rows[key] = aggregate(runs)
        if not rows:
            print("no finished issue-15 sweep runs under", a.results, file=sys.stderr)
            return 1
        cont, cont_md = continual_tables(a.results)
    except ValueError as e:                                              # a damaged results file
        print(f"paper_math.py: error: {e}", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    doc = {"description": __doc__.split("\n\n")[0], "command": "python scripts/paper_math.py",
           "settings": rows, **cont}
    write_json(os.path.join(a.out, "summary.json"), doc)
    md = table(rows) + ("\n\n" + cont_md if cont_md else "") + "\n"
    atomic_write(os.path.join(a.out, "summary.md"), md)
    figure(rows, os.path.join(a.out, "curves.png"))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(run_main("paper_math.py", main))
