"""The two figures of ``refbinn evaluate --ood``, drawn from its JSON rows alone.

    reliability diagram:  acc_b against conf_b per ECE bin, one line per (run, prediction),
                          the diagonal acc = conf is perfect calibration; below it the
                          fraction of test inputs in each bin (log scale)
    entropy histograms:   per (run, prediction) row and OOD set, the histogram of the predictive
                          entropy on the test set and on the OOD set (densities on [0, log K])

Both need matplotlib (the ``plots`` extra); without it they print a note and return False.
"""
from __future__ import annotations

import numpy as np

from ..io import save_figure


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'refbinn[plots]'): no PNG written")
        return None
    return plt


def _label(row):
    what = row["prediction"] if row["samples"] is None else f"{row['prediction']} (C={row['samples']})"
    return f"{row['run']}: {what}"


def reliability_diagram(rows, path, title=None):
    """Write the reliability diagram of every row (one figure) to ``path``; True if written.

    Parameters
    ----------
    rows : list of dict, rows of ``evaluate_checkpoints`` (``test.calibration`` is read)
    path : str, the PNG to write
    title : str, optional

    Returns
    -------
    bool
        True if the PNG was written; False without matplotlib.
    """
    plt = _pyplot()
    if plt is None:
        return False
    fig, (ax, axn) = plt.subplots(2, 1, figsize=(6, 7), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], c="0.6", ls="--", lw=1, label="perfect calibration")
    for i, row in enumerate(rows):
        cal = row["test"]["calibration"]
        conf = np.array([np.nan if v is None else v for v in cal["confidence"]])
        acc = np.array([np.nan if v is None else v for v in cal["accuracy"]])
        full = ~np.isnan(conf)
        c = f"C{i % 10}"
        ax.plot(conf[full], acc[full], "o-", c=c, ms=4, lw=1.2,
                label=f"{_label(row)}  ECE {row['test']['ece']:.4f}")
        counts = np.asarray(cal["counts"], float)
        mids = 0.5 * (np.asarray(cal["edges"][:-1]) + np.asarray(cal["edges"][1:]))
        axn.step(mids, counts / counts.sum(), where="mid", c=c, lw=1.2)
    ax.set_ylabel("accuracy in bin")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(title or "Reliability diagram (test set)")
    axn.set_yscale("log")
    axn.set_xlabel("confidence (max p) of the bin")
    axn.set_ylabel("fraction of inputs")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return True


def entropy_histograms(rows, path, title=None):
    """Write the grid (rows x OOD sets) of entropy histograms, test vs OOD, to ``path``; True if written.

    Parameters
    ----------
    rows : list of dict, rows of ``evaluate_checkpoints`` (``entropy_hist`` and ``ood`` are read)
    path : str, the PNG to write
    title : str, optional

    Returns
    -------
    bool
        True if the PNG was written; False when the rows have no OOD set or without
        matplotlib.
    """
    sets = [name for name in rows[0]["ood"]] if rows else []
    if not sets:
        print("no OOD set: no entropy histogram written")
        return False
    plt = _pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(len(rows), len(sets), figsize=(3.2 * len(sets), 2.2 * len(rows)),
                             squeeze=False, sharex=True)
    for i, row in enumerate(rows):
        h = row["entropy_hist"]
        edges = np.asarray(h["edges"])
        width = np.diff(edges)
        density = lambda c: np.asarray(c, float) / max(np.sum(c), 1) / width
        for j, name in enumerate(sets):
            ax = axes[i, j]
            ax.stairs(density(h["test"]), edges, fill=True, alpha=0.45, color="C0", label="test")
            ax.stairs(density(h[name]), edges, fill=True, alpha=0.45, color="C3", label=name)
            auroc = row["ood"][name]["auroc_entropy"]
            ax.set_title(f"{_label(row)}\nvs {name}: AUROC {auroc:.3f}", fontsize=7)
            ax.set_yscale("log")
            ax.tick_params(labelsize=7)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
            elif i == 0:
                ax.legend(fontsize=7, loc="upper left")
            if i == len(rows) - 1:
                ax.set_xlabel("predictive entropy (nats)", fontsize=7)
    fig.suptitle(title or "Predictive entropy: test set vs OOD sets", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return True
