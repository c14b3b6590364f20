"""``refbinn report DIR``: a sweep's runs aggregated over seeds, in the paper's format.

For each setting (a run name less its seed) and each quantity, the mean +- sample standard
deviation (ddof = 1) over the seeds that finished::

    mean = (1/n) sum_i x_i,    std = sqrt( sum_i (x_i - mean)^2 / (n - 1) )     (blank for n = 1)

of: test accuracy of the mode at the epoch of best validation accuracy (the paper's rule),
test accuracy of the mode and of the mean prediction at the last epoch, the test NLL of
both, the last epoch's training loss (the MSE for Snelson), and the seconds per epoch.
Writes ``report.md`` (a Markdown table), ``report.json`` (every value, per seed too) and
``curves.png`` (training loss and accuracies per epoch: mean line and a +-1 std band per
setting; a positive loss on a log axis, in log space) into the sweep folder (or ``out``).
"""
from __future__ import annotations

import glob
import json
import os

import numpy as np

from ..checks import is_integer
from ..errors import FileFormatError
from ..io import atomic_write, save_figure, write_json
from ..io.outputs import check_output_file

# quantity -> (column header, how a run gives it, percent?)
QUANTITIES = {
    "test_acc_at_best_val": ("test @ best val (%)", lambda r: r["summary"].get("test_acc_mode_at_best_val"), True),
    "test_acc_last": ("test, last epoch (%)", lambda r: r["summary"].get("test_acc_mode_last"), True),
    "test_acc_mean_last": ("test, mean prediction (%)", lambda r: r["summary"].get("test_acc_mean_last"), True),
    "test_nll_last": ("test NLL", lambda r: r["history"][-1].get("test_nll_mode"), False),
    "test_nll_mean_last": ("test NLL, mean prediction", lambda r: r["history"][-1].get("test_nll_mean"), False),
    "train_loss_last": ("train loss, last epoch", lambda r: r["history"][-1].get("train_loss"), False),
    "seconds_per_epoch": ("s / epoch", lambda r: float(np.mean([e["seconds"] for e in r["history"]])), False),
}
CURVES = (("train_loss", "training loss"), ("val_acc_mode", "validation accuracy (mode)"),
          ("test_acc_mode", "test accuracy (mode)"))


def _read_json(path, what):
    """The JSON object in ``path``; FileFormatError naming it if the file is not one."""
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except ValueError as e:                     # cut short, empty, not text
        raise FileFormatError(f"{path}: not a valid {what} ({e})") from None
    if not isinstance(obj, dict):
        raise FileFormatError(f"{path}: not a valid {what} (a JSON {type(obj).__name__}, not an object)")
    return obj


def _is_number(v):
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _check_run(path, r):
    """FileFormatError naming ``path`` unless the finished run ``r`` has every entry the report reads."""
    def bad(why):
        return FileFormatError(f"{path}: not a valid sweep run result ({why})")
    for key, inner in (("settings", ("dataset", "optimizer")), ("summary", ("epochs_run",)),
                       ("sweep_run", ("setting", "seed", "point"))):
        if not isinstance(r.get(key), dict):
            raise bad(f"{key} must be an object, got {r.get(key)!r}")
        for k in inner:
            if k not in r[key]:
                raise bad(f"no entry {key}.{k}")
    if not isinstance(r["sweep_run"]["setting"], str) or not is_integer(r["sweep_run"]["seed"]):
        raise bad(f"sweep_run.setting must be a string and sweep_run.seed an integer, got "
                  f"{r['sweep_run']['setting']!r} and {r['sweep_run']['seed']!r}")
    if not isinstance(r["history"], list) or not all(isinstance(e, dict) for e in r["history"]):
        raise bad("history must be a list of objects, one per epoch")
    for i, e in enumerate(r["history"]):
        for k in ("seconds", *(k for k, _ in CURVES)):
            if (k == "seconds" and k not in e) or not _is_number(e.get(k)):
                raise bad(f"history[{i}].{k} must be a number, got {e.get(k)!r}")
    for q, (_, get, _) in QUANTITIES.items():
        if not _is_number(get(r)):
            raise bad(f"{q} must be a number, got {get(r)!r}")


def load_runs(sweep_dir):
    """The sweep's finished runs (``DIR/runs/*.json`` with a ``sweep_run`` entry), in the sweep's order.

    Parameters
    ----------
    sweep_dir : str
        The sweep's folder (``results/sweeps/NAME``); its ``sweep.json``, if present, gives
        the order.

    Returns
    -------
    list of dict
        The result JSONs (as ``refbinn train`` writes them, plus ``sweep_run``) of the runs
        with a non-empty history.

    Raises
    ------
    FileNotFoundError
        If ``sweep_dir`` does not exist ("no such folder"), or no run has finished.
    NotADirectoryError
        If ``sweep_dir`` is a file.
    refbinn.errors.FileFormatError
        If a run's JSON or ``sweep.json`` is damaged (the message starts with its path).
    """
    if not os.path.exists(sweep_dir):
        raise FileNotFoundError(f"{sweep_dir}: no such folder")
    if not os.path.isdir(sweep_dir):
        raise NotADirectoryError(f"{sweep_dir} is a file, not a sweep folder")
    runs = []
    for path in sorted(glob.glob(os.path.join(sweep_dir, "runs", "*.json"))):
        r = _read_json(path, "sweep run result")
        if "sweep_run" in r and r.get("history"):
            _check_run(path, r)
            runs.append(r)
    if not runs:
        raise FileNotFoundError(f"{sweep_dir}: no finished sweep runs (runs/*.json); run `refbinn sweep` first")
    state = _read_state(sweep_dir)
    if state is not None:
        order = {r["name"]: i for i, r in enumerate(state["runs"])}
        runs.sort(key=lambda r: order.get(r["name"], len(order)))
    return runs


def _read_state(sweep_dir):
    """``DIR/sweep.json`` checked for what the report reads (None if there is none)."""
    path = os.path.join(sweep_dir, "sweep.json")
    if not os.path.exists(path):
        return None
    s = _read_json(path, "sweep state file")
    if (not isinstance(s.get("runs"), list) or not all(isinstance(r, dict) and "name" in r for r in s["runs"])
            or not isinstance(s.get("name", ""), str) or not isinstance(s.get("description", ""), str)):
        raise FileFormatError(f"{path}: not a valid sweep state file (it needs runs, a list of objects with "
                              "a name, and name and description strings)")
    return s


def mean_std(values):
    """(mean, sample std with ddof=1 or None for one value) of the non-None ``values``; (None, None) if none.

    mean = (1/n) sum_i x_i, std = sqrt(sum_i (x_i - mean)^2 / (n - 1)).

    Parameters
    ----------
    values : iterable of float or None
        One value per seed; None (a run that lacks the quantity) is left out.

    Returns
    -------
    mean : float or None
        None when no value is given.
    std : float or None
        None for fewer than two values.
    """
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return None, None
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None)


def aggregate(runs):
    """One row per setting: seeds, epochs, and per quantity its mean, std and per-seed values.

    Parameters
    ----------
    runs : list of dict
        Finished runs (``load_runs``); grouped by ``sweep_run.setting``.

    Returns
    -------
    list of dict
        Per setting, in first-seen order: setting, dataset, optimizer, point (the grid
        values), seeds (sorted), n, epochs (the distinct epoch counts), quantities (name of
        ``QUANTITIES`` -> {mean, std, values}; a quantity no run has is left out).
    """
    groups = {}
    for r in runs:
        groups.setdefault(r["sweep_run"]["setting"], []).append(r)
    rows = []
    for setting, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["sweep_run"]["seed"])
        row = {"setting": setting, "dataset": rs[0]["settings"]["dataset"],
               "optimizer": rs[0]["settings"]["optimizer"], "point": rs[0]["sweep_run"]["point"],
               "seeds": [r["sweep_run"]["seed"] for r in rs], "n": len(rs),
               "epochs": sorted({r["summary"]["epochs_run"] for r in rs}), "quantities": {}}
        for q, (_, get, _) in QUANTITIES.items():
            vals = [get(r) for r in rs]
            m, s = mean_std(vals)
            if m is not None:
                row["quantities"][q] = {"mean": m, "std": s, "values": vals}
        rows.append(row)
    return rows


def _cell(q, percent):
    if q is None:
        return ""
    f = (lambda x: f"{100 * x:.2f}") if percent else (lambda x: f"{x:.4g}" if abs(x) < 100 else f"{x:.1f}")
    return f(q["mean"]) + ("" if q["std"] is None else f" +- {f(q['std'])}")


def markdown(rows, title, description=""):
    """The report table in Markdown: one row per setting, mean +- std over seeds.

    Accuracies print in percent with 2 decimals; only the quantities some row has get a column.

    Parameters
    ----------
    rows : list of dict
        What ``aggregate`` returns.
    title : str
        The page's ``#`` heading.
    description : str
        A paragraph under the title (the sweep file's description); default none.

    Returns
    -------
    str
        The Markdown text, ending with a newline.
    """
    used = [q for q in QUANTITIES if any(q in r["quantities"] for r in rows)]
    head = ["setting", "seeds", "epochs"] + [QUANTITIES[q][0] for q in used]
    lines = [f"# {title}", ""]
    if description:
        lines += [description.strip(), ""]
    lines += ["Mean +- sample standard deviation (ddof = 1) over the seeds listed; accuracies of the "
              "mode (sign of the latent weights) unless marked 'mean prediction'.", "",
              "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["setting"], ", ".join(map(str, r["seeds"])),
                 "/".join(map(str, r["epochs"]))]
        cells += [_cell(r["quantities"].get(q), QUANTITIES[q][2]) for q in used]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(runs, path, title):
    """Per setting and per-epoch quantity: the mean over seeds and a +-1 std band (PNG, Agg).

    One panel per quantity of ``CURVES`` that the runs record; a positive training loss
    spanning more than a decade is drawn on a log axis as the geometric mean times/over
    exp(std of the log). Seeds are cut to the shortest history of their setting.

    Parameters
    ----------
    runs : list of dict
        Finished runs (``load_runs``).
    path : str
        The PNG to write.
    title : str
        The figure's title.

    Raises
    ------
    ImportError
        Without matplotlib (the ``plots`` extra).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    keys = [(k, label) for k, label in CURVES if any(r["history"][0].get(k) is not None for r in runs)]
    groups = {}
    for r in runs:
        groups.setdefault(r["sweep_run"]["setting"], []).append(r)
    fig = Figure(figsize=(5.0 * len(keys), 4.2 + 0.16 * len(groups)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, (k, label) in zip(axes, keys):
        # a positive loss spanning decades is drawn on a log axis, as the geometric mean times/over
        # exp(std of the log) (an arithmetic band would reach below zero)
        # (a null loss, written for a NaN or inf, reads as NaN and is left out)
        losses = np.array([e["train_loss"] for r in runs for e in r["history"]] if k == "train_loss" else [0.0],
                          dtype=np.float64)
        losses = losses[np.isfinite(losses)]
        log = losses.size > 0 and losses.min() > 0 and losses.max() > 10 * losses.min()
        for i, (setting, rs) in enumerate(groups.items()):
            n = min(len(r["history"]) for r in rs)
            y = np.array([[e.get(k, np.nan) for e in r["history"][:n]] for r in rs], dtype=np.float64)  # (seeds, epochs)
            y = np.log(y) if log else y
            x = np.arange(1, n + 1)
            m = np.nanmean(y, axis=0)
            # ten colours, then the same colours dashed and dotted (the tau sweep has 22 settings)
            back = np.exp if log else (lambda v: v)
            line, = ax.plot(x, back(m), lw=1.0, color=f"C{i % 10}", ls=("-", "--", ":")[i // 10 % 3],
                            label=f"{setting} (n={len(rs)})")
            if len(rs) > 1:
                s = np.nanstd(y, axis=0, ddof=1)
                ax.fill_between(x, back(m - s), back(m + s), color=line.get_color(), alpha=0.2, lw=0)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(label + (" (geometric mean)" if log else ""))
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.045 * -(-len(labels) // 3), 1, 0.95))
    save_figure(fig, path, dpi=110)


def write_report(sweep_dir, out=None):
    """Aggregate the sweep in ``sweep_dir``; write report.md, report.json, curves.png -> (rows, paths).

    Parameters
    ----------
    sweep_dir : str
        The sweep's folder (``results/sweeps/NAME``).
    out : str, optional
        The report's folder, created if missing (None: ``sweep_dir``).

    Returns
    -------
    rows : list of dict
        What ``aggregate`` returns.
    paths : dict
        ``md``, ``json`` and (with matplotlib) ``png`` -> the path written.
    """
    out = out or sweep_dir
    runs = load_runs(sweep_dir)
    name, description = os.path.basename(os.path.abspath(sweep_dir)), ""
    s = _read_state(sweep_dir)
    if s is not None:
        name, description = s.get("name", name), s.get("description", "")
    rows = aggregate(runs)
    paths = {k: os.path.join(out, f) for k, f in (("md", "report.md"), ("json", "report.json"),
                                                   ("png", "curves.png"))}
    for p in paths.values():               # all three or none: a folder in the way fails before any write
        check_output_file(p, "the report file")
    os.makedirs(out, exist_ok=True)
    atomic_write(paths["md"], markdown(rows, f"Sweep {name}", description))
    write_json(paths["json"], {"sweep": name, "description": description,
                               "std": "sample standard deviation over seeds (ddof = 1); null for one seed",
                               "quantities": {q: v[0] for q, v in QUANTITIES.items()}, "rows": rows})
    try:
        plot_curves(runs, paths["png"], f"sweep {name}: mean and +-1 std over seeds")
    except ImportError:         # matplotlib is the 'plots' extra
        del paths["png"]
    return rows, paths
