"""``refbinn demo``: the paper's synthetic experiments, on data that needs no download.

1. Two moons (Figure 3): BayesBiNN (mode and mean over 10 samples) vs STE-Adam on a
   2-64-64-1 tanh MLP with every parameter binary, logistic loss, full batch.
2. Snelson 1-D regression (Figure 2), from a data root or else the copy shipped inside
   refbinn: BayesBiNN mean +- 2 std over 10 samples vs STE-Adam on a 1-64-64-1 tanh MLP
   with an output BN.

Writes ``demo.json`` and the PNGs (with the ``plots`` extra) under ``out``.
"""
from __future__ import annotations

import itertools
import os
import time

import numpy as np

from ..checks import check_int
from .setup import build
from ..io import save_figure
from ..predict import predict_logits, predict_mean, predict_mode
from ..train import fit


def _grid(lo=-3.0, hi=3.0, n=121):
    g = np.linspace(lo, hi, n)
    xx, yy = np.meshgrid(g, g)
    return xx, yy, np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)   # (n*n, 2)


def _overrides(seed, quick):
    """The preset overrides of every demo run: the seed, 300 epochs if ``quick``, and no
    training diagnostics (the demo shows none, and in its full-batch runs, one step an epoch,
    recording them every epoch costs more than the training; results are the same)."""
    if not isinstance(quick, (bool, np.bool_)):            # 'no' would be quick
        raise ValueError(f"quick must be True or False, got {quick!r}")
    return {"seed": check_int("seed", seed, 0), "diagnostics": False, **({"epochs": 300} if quick else {})}


def two_moons(out, quick=False, seed=0):
    """Figure 3: BayesBiNN (mode and mean over C samples) vs STE-Adam on two moons.

    Each optimizer trains the paper preset's 2-64-64-1 all-binary MLP, full batch; the
    predictive P(y = 1 | x) is drawn on a 121 x 121 grid over [-3, 3]^2 (standardised inputs).

    Parameters
    ----------
    out : str
        Folder for ``two_moons.png``; it must exist.
    quick : bool
        300 epochs instead of the preset's 3000 (for tests).
    seed : int
        Training seed; the mean prediction's samples come from ``Generator(seed + 7)``.

    Returns
    -------
    rows : list of tuple
        (method, test accuracy, test NLL, training seconds) for BayesBiNN (mode),
        BayesBiNN (mean) and STE-Adam.
    png : str or None
        The PNG written, or None without matplotlib.
    """
    rows, maps = [], {}
    xx, yy, grid = _grid()
    for optimizer in ("bayesbinn", "ste"):
        over = _overrides(seed, quick)
        s = build("two-moons", optimizer, overrides=over, quiet=True)
        t0 = time.perf_counter()
        res = fit(s.model, s.opt, s.data, s.loss_fn, s.cfg, schedule=s.schedule, log=lambda m: None)
        secs = time.perf_counter() - t0
        st, bn = res["opt_state"], res["bn_state"]
        whole = dict(link="classes", batch_size=len(grid))
        p_mode = predict_mode(s.model, s.opt, st, bn, grid, **whole)[:, 1]
        ev = res["history"]["epochs"][-1]
        if optimizer == "bayesbinn":
            rng = np.random.default_rng(seed + 7)
            p_mean = predict_mean(s.model, s.opt, st, bn, grid, s.cfg.eval_samples, rng, **whole)[:, 1]
            maps["BayesBiNN (mode)"], maps["BayesBiNN (mean)"] = p_mode, p_mean
            rows.append(("BayesBiNN (mode)", ev["test_acc_mode"], ev["test_nll_mode"], secs))
            rows.append(("BayesBiNN (mean)", ev["test_acc_mean"], ev["test_nll_mean"], secs))
        else:
            maps["STE-Adam"] = p_mode
            rows.append(("STE-Adam", ev["test_acc_mode"], ev["test_nll_mode"], secs))
        data = s.data
    png = os.path.join(out, "two_moons.png")
    drawn = _plot_moons(png, xx, yy, maps, data)
    return rows, (png if drawn else None)


def _plot_moons(path, xx, yy, maps, data):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'refbinn[plots]'): no PNG written")
        return False
    fig, axes = plt.subplots(1, len(maps), figsize=(4.2 * len(maps), 4), sharey=True, squeeze=False)
    axes = list(axes[0])                        # (1, n) Axes -> n, also for one map (a bare Axes otherwise)
    for ax, (title, p) in zip(axes, maps.items()):
        cs = ax.contourf(xx, yy, p.reshape(xx.shape), levels=np.linspace(0, 1, 11), cmap="RdBu_r")
        for lab, mk in ((0, "o"), (1, "s")):
            sel = data.y_train == lab
            ax.scatter(data.x_train[sel, 0], data.x_train[sel, 1], s=12, marker=mk,
                       edgecolors="k", linewidths=0.4, c="C1" if lab else "C0")
        ax.set_title(title)
    fig.colorbar(cs, ax=axes, label="P(y = 1 | x)")
    save_figure(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def snelson(out, root=None, quick=False, seed=0):
    """Figure 2: BayesBiNN's mean +- 2 std over C samples vs STE-Adam on Snelson 1-D regression.

    Each optimizer trains the paper preset's 1-64-64-1 all-binary MLP with an output
    BatchNorm on the standardised data, full batch, MSE loss; curves are drawn on the
    Snelson grid.

    Parameters
    ----------
    out : str
        Folder for ``snelson.png``; it must exist.
    root : str, optional
        The data folder; None: ``$REFBINN_DATA``, the per-user cache, then the copy
        shipped inside refbinn.
    quick : bool
        300 epochs instead of the preset's 5000 (for tests).
    seed : int
        Training seed; BayesBiNN's weight samples come from ``Generator(seed + 7)``.

    Returns
    -------
    rows : list of tuple
        (method, training MSE of the mode on standardised targets, training seconds) for
        BayesBiNN and STE-Adam.
    png : str or None
        The PNG written, or None without matplotlib.
    """
    from ..data import snelson_grid
    rows, curves = [], {}
    for optimizer in ("bayesbinn", "ste"):
        over = _overrides(seed, quick)
        s = build("snelson", optimizer, overrides=over, root=root, quiet=True)
        t0 = time.perf_counter()
        res = fit(s.model, s.opt, s.data, s.loss_fn, s.cfg, schedule=s.schedule, log=lambda m: None)
        secs = time.perf_counter() - t0
        sn = s.settings["extra"]
        xg = sn.standardize_x(snelson_grid()).astype(np.float32).reshape(-1, 1)     # (301, 1)
        st, bn = res["opt_state"], res["bn_state"]
        x = s.data.x_train
        train_mse = float(np.mean((predict_logits(s.model, s.opt.params(st), bn, x, len(x))
                                   - s.data.y_train) ** 2))
        if optimizer == "bayesbinn":
            rng = np.random.default_rng(seed + 7)
            preds = np.stack([predict_logits(s.model, s.opt.sample_params(st, rng), bn, xg, len(xg))[:, 0]
                              for _ in range(s.cfg.eval_samples)])                    # (C, 301)
            curves["BayesBiNN"] = (preds.mean(0), preds.std(0))
            rows.append(("BayesBiNN (mode)", train_mse, secs))
        else:
            curves["STE-Adam"] = (predict_logits(s.model, s.opt.params(st), bn, xg, len(xg))[:, 0], None)
            rows.append(("STE-Adam", train_mse, secs))
        data = s.data
    png = os.path.join(out, "snelson.png")
    drawn = _plot_snelson(png, xg[:, 0], curves, data)
    return rows, (png if drawn else None)


def _plot_snelson(path, xg, curves, data):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'refbinn[plots]'): no PNG written")
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(data.x_train[:, 0], data.y_train[:, 0], s=8, c="k", alpha=0.5, label="data")
    colours = ("C0", "C3", "C1", "C2", "C4", "C5", "C6", "C7", "C8", "C9")   # BayesBiNN, STE, then any others
    for (name, (m, sd)), c in zip(curves.items(), itertools.cycle(colours)):
        ax.plot(xg, m, c=c, label=name + (" mean" if sd is not None else ""))
        if sd is not None:
            ax.fill_between(xg, m - 2 * sd, m + 2 * sd, color=c, alpha=0.25, label=name + " +- 2 std")
    ax.set_xlabel("x (standardised)")
    ax.set_ylabel("y (standardised)")
    ax.legend(loc="upper left", fontsize=8)
    save_figure(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def run_demo(out="results", root=None, quick=False, seed=0):
    """``refbinn demo``: ``two_moons`` then ``snelson``; prints their tables, writes ``demo.json``.

    Snelson is skipped (recorded as None) when its data cannot be found.

    Parameters
    ----------
    out : str
        Folder for ``demo.json`` and the PNGs, created if missing; default ``results``.
    root : str, optional
        The data folder for Snelson.
    quick : bool
        300 epochs per run (for tests).
    seed : int
        Training seed of every run.

    Returns
    -------
    int
        0, the command's exit code.
    """
    from ..io import write_json as _write_json
    from ..report import table as _table
    from ..data import DatasetNotFound
    from ..io.outputs import check_output_file
    _overrides(seed, quick)                  # a bad seed or quick: refused before the folder is made
    for name in ("demo.json", "two_moons.png", "snelson.png"):     # before the training, not after
        check_output_file(os.path.join(out, name), "the output file")
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    result = {"quick": quick, "seed": seed}
    rows, png = two_moons(out, quick=quick, seed=seed)
    result["two_moons"] = {"rows": [dict(zip(("method", "test_acc", "test_nll", "seconds"), r)) for r in rows],
                           "png": png}
    print("Two moons (Figure 3): 200 training points, 50 test points")
    print(_table(rows, ("method", "test acc", "test NLL", "seconds")))
    try:
        srows, spng = snelson(out, root=root, quick=quick, seed=seed)
        result["snelson"] = {"rows": [dict(zip(("method", "train_mse", "seconds"), r)) for r in srows],
                             "png": spng}
        print("\nSnelson 1-D regression (Figure 2)")
        print(_table(srows, ("method", "train MSE (standardised)", "seconds")))
    except DatasetNotFound as e:
        print(f"\nSnelson skipped: {e}")
        result["snelson"] = None
    result["seconds"] = time.perf_counter() - t0
    path = os.path.join(out, "demo.json")
    _write_json(path, result)
    print(f"\nwrote {path}" + "".join(f", {p}" for p in (png, result["snelson"] and result["snelson"]["png"]) if p))
    return 0
