"""Calibration and out-of-distribution detection of trained checkpoints (``refbinn evaluate --ood``).

For each checkpoint, on its data set's test images and on each OOD set (``refbinn.data.ood``)::

    mode:          p(y|x) = softmax(f_{w*}(x)),  w* = opt.params(state)             (every optimizer)
    mean (C=S):    p(y|x) = (1/S) sum_c softmax(f_{w_c}(x)),  w_c = opt.sample_params  (BayesBiNN;
                   for VISPA the same average over sampled binary networks is its "ensemble");
                   with average='logits' (the authors' preset) softmax((1/S) sum_c f_{w_c}(x))

every softmax in float64 (``refbinn.predict.class_probs`` of the float32 logits),

and the numbers of ``refbinn.metrics`` for each: accuracy, NLL, Brier, ECE (with its bins) and
mean entropy on the test set; AUROC and AUPR of the entropy and of 1 - max p, test set vs OOD set.

Every mean prediction of one checkpoint draws its weight samples from
``np.random.default_rng([seed, 1])``, seed = ``refbinn evaluate --seed`` (default 0, not the
training seed): the test set and every OOD set see the same S networks, and the mean over
10 samples uses the first 10 of the 100 of the mean over 100.

With ``recalibrate_bn`` = K > 0 every evaluated network (the mode, each sampled network)
gets BatchNorm statistics recomputed from the same K training batches
(``refbinn.bn_recalibration``; drawn from ``np.random.default_rng([seed, 3])``, as ``refbinn
evaluate`` without ``--ood`` draws them, out of the run's own training rows:
``load_data(dataset, split=0.1, seed=<the training seed>, max_train=<the run's>).x_train``,
the training part after the validation split) instead of the running statistics saved by
training.
"""
from __future__ import annotations

import os

import numpy as np

from ..bn_recalibration import calibration_batches, recalibrator
from ..checks import check_choice, check_int
from ..data.errors import DatasetNotFound
from ..data.ood import OOD_SETS, ood_set
from ..metrics import DEFAULT_BINS, classification_metrics, entropy, ood_metrics
from ..predict import AVERAGES, predict_mean, predict_mode
from ..report import table
from .presets import preset_average
from ..train import load_checkpoint
from ..train.checkpoint_check import check_meta, check_state, model_of
from .datasets import DATASETS, IMAGE_DATASETS, load_data

HIST_BINS = 30          # entropy histogram bins on [0, log K]


def can_sample(opt):
    """Whether ``opt`` has a distribution to sample networks from (BayesBiNN, VISPA; also
    inside a Partition), i.e. whether a mean prediction differs from the mode.

    Parameters
    ----------
    opt : Optimizer
        An optimizer or a ``Partition`` (whose ``binary_opt`` is asked).

    Returns
    -------
    bool
        True if it has ``sample_params``.
    """
    return hasattr(getattr(opt, "binary_opt", opt), "sample_params")


def run_label(path):
    """The label of checkpoint ``path`` in tables and file names: its folder's name.

    Parameters
    ----------
    path : str or PathLike
        A training checkpoint (``results/runs/NAME/checkpoint.npz``).

    Returns
    -------
    str
        NAME (``path`` itself when it has no folder name).
    """
    return os.path.basename(os.path.dirname(os.path.abspath(path))) or str(path)


def load_run(path):
    """A checkpoint with its model rebuilt: dict of label, path, model, opt, opt_state,
    bn_state, dataset, optimizer, seed, epoch, batch_size, meta (the checkpoint's config["meta"]).

    Parameters
    ----------
    path : str
        A training checkpoint (``results/runs/NAME/checkpoint.npz``); a damaged one raises
        one error naming the file.

    Returns
    -------
    dict
        ``label`` (the checkpoint's folder name), ``path``, ``model``, ``opt``,
        ``opt_state``, ``bn_state``, ``dataset``, ``optimizer``, ``seed`` (the training
        seed), ``epoch`` and ``batch_size`` (the training's).
    """
    ck = load_checkpoint(path)
    check_meta(path, ck["config"], tuple(DATASETS))        # damage: one error naming the file
    meta = ck["config"]["meta"]
    model = model_of(path, ck["config"])
    check_state(path, ck, model)
    return {"label": run_label(path), "path": str(path), "model": model,
            "opt": ck["opt"], "opt_state": ck["opt_state"], "bn_state": ck["bn_state"],
            "dataset": meta["dataset"], "optimizer": meta.get("optimizer"),
            "seed": ck["config"].get("seed"), "epoch": ck["epoch"],
            "batch_size": ck["config"].get("batch_size", 100), "meta": meta}


def _listed(name, value):
    """``list(value)`` for a list, tuple or 1-d array; ValueError naming ``name`` for anything else
    (a str would be read letter by letter, a number or None is not a list)."""
    if not (isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 1)):
        raise ValueError(f"{name} must be a list, got {type(value).__name__} {value!r:.60}")
    return list(value)


def evaluation_sets(dataset, names, *, root=None, seed=0, max_test=None, data_seed=0, log=print):
    """The test set of ``dataset`` and the OOD sets ``names`` built from it.

    ``seed`` draws the OOD noise and permutation; ``data_seed`` is the training run's seed,
    which the image test sets do not depend on (two moons draws its test points from it).

    Parameters
    ----------
    dataset : str
        The checkpoint's data set (a key of ``DATASETS``); OOD sets need an image data set.
    names : list of str
        OOD sets from ``refbinn.data.ood.OOD_SETS``, none the data set itself; may be empty.
    root : str, optional
        The data folder (see ``load_data``).
    seed : int
        >= 0; seeds each OOD set's stream, ``np.random.default_rng([seed, 2, i])``, i = the
        index of the set's name in ``OOD_SETS`` (not its place in ``names``).
    max_test : int, optional
        Use the first ``max_test`` test inputs (>= 1); None: all.
    data_seed : int
        >= 0; the training run's seed, for ``load_data``.
    log : callable
        ``log(str)``, told about every set skipped; default print.

    Returns
    -------
    x_test, y_test : numpy.ndarray
        The first ``max_test`` test inputs (all if None) and their labels.
    sets : dict name -> numpy.ndarray
        The OOD inputs (at most len(x_test) of a named set).
    status : dict name -> str
        "n = ..." or "skipped: reason" (a named set that is not present).
    """
    seed, data_seed = check_int("seed", seed, 0), check_int("data_seed", data_seed, 0)
    names = _listed("names", names)
    if max_test is not None:
        max_test = check_int("max_test", max_test, 1)
    data, _ = load_data(dataset, root, split=0.1, seed=data_seed)
    if data.x_test is None or not np.issubdtype(data.y_test.dtype, np.integer):
        raise ValueError(f"calibration and OOD metrics need a classification test set; "
                         f"{dataset!r} has none")
    x, y = data.x_test[:max_test], data.y_test[:max_test]
    if names and dataset not in IMAGE_DATASETS:
        raise ValueError(f"OOD sets need an image data set ({', '.join(IMAGE_DATASETS)}); "
                         f"the checkpoint was trained on {dataset!r}")
    sets, status = {}, {}
    for name in names:
        check_choice("OOD set", name, OOD_SETS)
        if name == dataset:
            raise ValueError(f"OOD set {name!r} is the checkpoint's own data set")
        # each set's stream depends on (seed, its name) only, not on which others are asked for
        rng = np.random.default_rng([seed, 2, OOD_SETS.index(name)])
        try:
            sets[name] = ood_set(name, x, dataset, rng, root)[:len(x)]
        except DatasetNotFound as e:
            status[name] = (f"skipped: not found in {', '.join(map(str, e.searched))} "
                            f"(get it with `refbinn download {name}`)")
            log(f"OOD set {name}: {status[name]}")
            continue
        status[name] = f"n = {len(sets[name])}"
    return x, y, sets, status


def _histograms(p_test, p_sets):
    k = p_test.shape[1]
    edges = np.linspace(0.0, np.log(k), HIST_BINS + 1)
    count = lambda p: np.histogram(np.clip(entropy(p), 0.0, np.log(k)), edges)[0].tolist()
    return {"edges": edges.tolist(), "test": count(p_test), **{n: count(p) for n, p in p_sets.items()}}


def prediction_rows(run, x, y, sets, *, samples=(10,), seed=0, average="prob", bins=DEFAULT_BINS,
                    batch_size=1000, bn_state_for=None):
    """One row per prediction of ``run`` (``load_run``): the mode, then the mean for each count.

    The mode is p = softmax(f_{w*}(x)); each mean is (1/S) sum_c softmax(f_{w_c}(x)) over S
    samples drawn from ``np.random.default_rng([seed, 1])`` (the same networks for the test set and
    every OOD set). An optimizer without samples (``can_sample``) gets the mode only.

    Parameters
    ----------
    run : dict
        A checkpoint from ``load_run``.
    x, y : numpy.ndarray
        Test inputs (n, ...) and integer labels (n,).
    sets : dict name -> numpy.ndarray
        OOD inputs (``evaluation_sets``); may be empty.
    samples : sequence of int
        The counts S >= 1 of the mean predictions, one row each; default (10,).
    seed : int
        >= 0; seeds the weight samples.
    average : {'prob', 'logits'}
        Average probabilities (the predictive) or logits (the authors' image scripts).
    bins : int
        B >= 1, equal-width ECE bins; default 15.
    batch_size : int
        Inputs per forward pass, >= 1; default 1000.
    bn_state_for : callable weights -> BatchNorm state, optional
        Recalibrated statistics for each evaluated network (``bn_recalibration.recalibrator``);
        None: the checkpoint's running statistics.

    Returns
    -------
    list of dict
        Per prediction: run, checkpoint, dataset, optimizer, seed, epoch, prediction
        ('mode', 'mean', or 'ensemble' for VISPA), samples (None for the mode), test
        (``classification_metrics``), ood (name -> ``ood_metrics``), entropy_hist (edges,
        test and per-set counts of ``HIST_BINS`` bins on [0, log K]).
    """
    seed = check_int("seed", seed, 0)
    samples = [check_int("samples", s, 1) for s in _listed("samples", samples)]
    if not isinstance(sets, dict):
        raise ValueError(f"sets must be a dict name -> inputs, got {type(sets).__name__}")
    m, o, st, bn = run["model"], run["opt"], run["opt_state"], run["bn_state"]
    kinds = [("mode", None)]
    if can_sample(o):
        kinds += [("ensemble" if run["optimizer"] == "vispa" else "mean", s) for s in samples]
    rows = []
    for kind, s in kinds:
        def probs(inputs):
            if s is None:
                return predict_mode(m, o, st, bn, inputs, link="classes", batch_size=batch_size,
                                    bn_state_for=bn_state_for)
            return predict_mean(m, o, st, bn, inputs, s, np.random.default_rng([seed, 1]),
                                average=average, link="classes", batch_size=batch_size,
                                bn_state_for=bn_state_for)
        p_test = probs(x)                                                  # (n, K) float64
        p_sets = {name: probs(xo) for name, xo in sets.items()}
        rows.append({"run": run["label"], "checkpoint": run["path"], "dataset": run["dataset"],
                     "optimizer": run["optimizer"], "seed": run["seed"], "epoch": run["epoch"],
                     "prediction": kind, "samples": s,
                     "test": classification_metrics(p_test, y, bins),
                     "ood": {name: ood_metrics(p_test, p) for name, p in p_sets.items()},
                     "entropy_hist": _histograms(p_test, p_sets)})
    return rows


def evaluate_checkpoints(paths, *, ood=(), samples=(10,), bins=DEFAULT_BINS, seed=0, average=None,
                         max_test=None, root=None, batch_size=1000, recalibrate_bn=0, log=print):
    """Rows of ``prediction_rows`` for every checkpoint in ``paths``, in one result.

    Parameters
    ----------
    paths : sequence of str
        Checkpoint paths (``results/runs/NAME/checkpoint.npz``), at least one.
    ood : sequence of str
        Names from ``refbinn.data.ood.OOD_SETS``; default none.
    samples : sequence of int
        The counts S >= 1 of the mean predictions; default (10,).
    bins : int
        B >= 1, equal-width ECE bins; default 15.
    seed : int
        >= 0; seeds the OOD sets and the weight samples.
    average : {'prob', 'logits'}, optional
        'prob' (the predictive) or 'logits' (the authors' image scripts); None: each run's
        preset decides (``presets.preset_average``).
    max_test : int, optional
        Use the first N >= 1 test images (and N inputs per OOD set); None: all.
    root : str, optional
        The data folder (see ``load_data``).
    batch_size : int
        Inputs per forward pass, >= 1; default 1000.
    recalibrate_bn : int
        K >= 0: recompute every evaluated network's BatchNorm statistics from K training
        batches of the run's batch size (see the module docstring); 0: the saved ones.
    log : callable
        ``log(str)`` for one line per checkpoint; default print.

    Returns
    -------
    dict
        ``settings``, ``ood_sets`` (dataset -> name -> status), ``runs`` (label and
        checkpoint per path), ``rows`` (``prediction_rows`` of every checkpoint).
    """
    paths, ood = _listed("paths", paths), _listed("ood", ood)
    if not paths:
        raise ValueError("evaluate needs at least one checkpoint")
    samples = [check_int("samples", s, 1) for s in _listed("samples", samples)]
    bins, seed = check_int("bins", bins, 1), check_int("seed", seed, 0)
    if average is not None:
        check_choice("average", average, AVERAGES)
    if max_test is not None:
        max_test = check_int("max_test", max_test, 1)
    recalibrate_bn = check_int("recalibrate_bn", recalibrate_bn, 0)
    for name in ood:
        check_choice("OOD set", name, OOD_SETS)
    runs, seen, cache, status, rows = [], {}, {}, {}, []
    for path in paths:
        run = load_run(path)
        seen[run["label"]] = seen.get(run["label"], 0) + 1
        if seen[run["label"]] > 1:                        # two folders of one name: keep rows apart
            run["label"] = f"{run['label']}#{seen[run['label']]}"
        # image test sets are the same for every run; a toy set is drawn from the run's seed
        key = (run["dataset"], None if run["dataset"] in IMAGE_DATASETS else run["seed"])
        if key not in cache:
            x, y, sets, status[run["dataset"]] = evaluation_sets(
                run["dataset"], list(ood), root=root, seed=seed, max_test=max_test,
                data_seed=run["seed"] or 0, log=log)
            cache[key] = (x, y, sets)
        x, y, sets = cache[key]
        log(f"{run['label']}: {run['optimizer']} on {run['dataset']}, epoch {run['epoch']}; "
            f"{len(x)} test inputs, OOD sets {', '.join(sets) or 'none'}")
        recal = None
        if recalibrate_bn:
            # the run's own training split (--max-train cut the images before the split)
            train, _ = load_data(run["dataset"], root, split=0.1, seed=run["seed"] or 0,
                                 max_train=run["meta"].get("max_train"))
            batches = calibration_batches(train.x_train, recalibrate_bn, run["batch_size"],
                                          np.random.default_rng([seed, 3]))
            recal = recalibrator(run["model"], batches, run["bn_state"])
        run_average = average or preset_average(run["meta"])
        rows += prediction_rows(run, x, y, sets, samples=samples, seed=seed, average=run_average,
                                bins=bins, batch_size=batch_size, bn_state_for=recal)
        runs.append({"label": run["label"], "checkpoint": run["path"], "average": run_average})
    return {"settings": {"ood": list(ood), "samples": samples, "bins": bins, "seed": seed,
                         "average": average, "max_test": max_test, "recalibrate_bn": recalibrate_bn},
            "ood_sets": status, "runs": runs, "rows": rows}


def row_name(row):
    """'mode', 'mean (C=10)' or 'ensemble (C=10)'.

    Parameters
    ----------
    row : dict
        A row of ``prediction_rows`` (its ``prediction`` and ``samples`` are read).

    Returns
    -------
    str
        The prediction's name, with its sample count C for a mean or ensemble.
    """
    return row["prediction"] if row["samples"] is None else f"{row['prediction']} (C={row['samples']})"


def tables(result):
    """Two plain-text tables: calibration on the test set, and OOD separation per set.

    Parameters
    ----------
    result : dict
        What ``evaluate_checkpoints`` returns.

    Returns
    -------
    str
        Accuracy, NLL, Brier, ECE and entropy per row; then, when OOD sets were evaluated,
        AUROC/AUPR of the entropy and of 1 - max p and the OOD entropy per row and set.
    """
    cal = [(r["run"], row_name(r), r["test"]["acc"], r["test"]["nll"], r["test"]["brier"],
            r["test"]["ece"], r["test"]["entropy"]) for r in result["rows"]]
    text = table(cal, ("run", "prediction", "acc", "NLL", "Brier", f"ECE ({result['settings']['bins']} bins)",
                       "entropy"))
    ood = [(r["run"], row_name(r), name, v["auroc_entropy"], v["aupr_entropy"], v["auroc_maxprob"],
            v["aupr_maxprob"], v["entropy_out"]) for r in result["rows"] for name, v in r["ood"].items()]
    if ood:
        text += "\n\n" + table(ood, ("run", "prediction", "OOD set", "AUROC (H)", "AUPR (H)",
                                     "AUROC (1-max p)", "AUPR (1-max p)", "entropy (OOD)"))
    return text


def output_paths(out, name):
    """The files ``write_outputs`` may write under ``out``.

    Parameters
    ----------
    out : str
        The folder.
    name : str
        The files' name part.

    Returns
    -------
    tuple of str
        ``uncertainty_NAME.json``, ``reliability_NAME.png``, ``entropy_NAME.png``.
    """
    return tuple(os.path.join(out, f"{kind}_{name}.{ext}")
                 for kind, ext in (("uncertainty", "json"), ("reliability", "png"), ("entropy", "png")))


def write_outputs(result, out, name, log=print):
    """Write ``uncertainty_NAME.json``, ``reliability_NAME.png`` and (with OOD sets)
    ``entropy_NAME.png`` under ``out``; returns the paths written.

    The PNGs need matplotlib; without it only the JSON is written.

    Parameters
    ----------
    result : dict
        What ``evaluate_checkpoints`` returns (with ``command`` added by the CLI).
    out : str
        The folder, created if missing.
    name : str
        The files' name part.
    log : callable
        ``log(str)``, told each path written; default print.

    Returns
    -------
    list of str
        The paths written, the JSON first.
    """
    from ..io import write_json
    from .uncertainty_plots import entropy_histograms, reliability_diagram
    os.makedirs(out, exist_ok=True)
    js, reliability, entropy = output_paths(out, name)
    write_json(js, result)
    paths = [js]
    if reliability_diagram(result["rows"], reliability):
        paths.append(reliability)
    if entropy_histograms(result["rows"], entropy):
        paths.append(entropy)
    for p in paths:
        log(f"wrote {p}")
    return paths


def cli_evaluate(a, command=None):
    """``refbinn evaluate CHECKPOINT [...] --ood [NAME ...] --samples S [S ...]``: tables, JSON, PNGs.

    Runs ``evaluate_checkpoints``, prints ``tables`` and writes ``write_outputs`` under
    ``--out``, named by ``--name``, else the run's folder (one checkpoint), else 'uncertainty'.

    Parameters
    ----------
    a : argparse.Namespace
        The parsed ``refbinn evaluate`` arguments: checkpoint, ood, samples, bins, seed,
        average, max_test, recalibrate_bn, data_root, out, name.
    command : str, optional
        The command line, recorded in the JSON.

    Returns
    -------
    int
        0, the command's exit code.
    """
    from ..io.outputs import check_output_file
    name = a.name or (run_label(a.checkpoint[0]) if len(a.checkpoint) == 1 else "uncertainty")
    for path in output_paths(a.out, name):              # before the evaluation, not after
        check_output_file(path, "the output file", a.checkpoint)
    result = evaluate_checkpoints(a.checkpoint, ood=a.ood or (), samples=a.samples, bins=a.bins,
                                  seed=a.seed, average=a.average, max_test=a.max_test,
                                  root=a.data_root, recalibrate_bn=a.recalibrate_bn)
    result["command"] = command
    print(tables(result))
    write_outputs(result, a.out, name)
    return 0
