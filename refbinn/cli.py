"""The ``refbinn`` command: demo, train, continual, evaluate, download (and more).

Each subcommand writes its results under ``results/`` (or ``--out``) and prints
a summary table.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

import numpy as np

from .data.ood import OOD_SETS
from .checks import check_int
from .experiments import DATASETS
from .experiments.presets import CONTINUAL, PAPER, PRESETS
from .optim.bayesbinn import NUMERICS
from .optim.registry import OPTIMIZERS
from .errors import debug_requested, run_command
from .io import write_json as _write_json
from .options import Parser, check_options
from .report import table as _table


# -- train -----------------------------------------------------------------------------
def cmd_train(a):
    """``refbinn train``: train one network with one optimizer (``refbinn.experiments.run``).

    Writes ``OUT/NAME.json`` and the checkpoints under ``OUT/runs/NAME/``, and prints the
    test accuracies (mode at the best validation epoch, mode and mean at the last).

    Parameters
    ----------
    a : argparse.Namespace
        The parsed arguments of the subcommand: dataset, optimizer, preset (None: 'paper', or
        the checkpoint's with --resume), the preset overrides (epochs, lr, tau, ...), name,
        resume, overwrite, stop_after, out, data_root, quiet.

    Returns
    -------
    int
        The exit code: 0 (errors raise and become exit 2 or 1 in ``main``).
    """
    from .experiments import run
    from .experiments.guard import plan_train
    plan = plan_train(a)            # --resume: the checkpoint's settings; else a name with no checkpoint
    name = plan.name
    res = run(plan.dataset, plan.optimizer, name, plan.overrides, out=a.out, root=a.data_root,
              resume=a.resume, stop_after=a.stop_after, quiet=a.quiet, preset=plan.preset,
              command=a.command_line)
    summ = res["summary"]
    rows = [(name, summ.get("epochs_run"), summ.get("test_acc_mode_at_best_val"),
             summ.get("test_acc_mode_last"), summ.get("test_acc_mean_last"),
             round(summ.get("train_seconds", 0.0)))]
    print(_table(rows, ("run", "epochs", "test@best-val (mode)", "test last (mode)",
                        "test last (mean)", "seconds")))
    print(f"wrote {os.path.join(a.out, name + '.json')}")
    return 0


# -- evaluate -----------------------------------------------------------------------------
def cmd_evaluate(a):
    """``refbinn evaluate``: accuracy and NLL (mode and mean) of a checkpoint on validation and test.

    With ``--ood``, several checkpoints or several sample counts, hands over to
    ``refbinn.experiments.uncertainty.cli_evaluate`` (calibration and OOD detection).
    Otherwise writes ``OUT/evaluate_RUN.json`` and prints a table per split.

    Parameters
    ----------
    a : argparse.Namespace
        The parsed arguments of the subcommand: checkpoint (list), samples (list), average,
        seed, recalibrate_bn, ood, bins, max_test, name, out, data_root.

    Returns
    -------
    int
        The exit code: 0 (errors raise and become exit 2 or 1 in ``main``).
    """
    if a.ood is not None or len(a.checkpoint) > 1 or len(a.samples) > 1:
        # calibration and OOD detection of one or more checkpoints (refbinn/experiments/uncertainty.py)
        from .experiments.uncertainty import cli_evaluate
        for s in a.samples:                 # a row per count beside the mode's: 0 would repeat the mode
            check_int("--samples (with --ood, several checkpoints or several counts)", s, 1)
        return cli_evaluate(a, command=a.command_line)
    a.checkpoint, a.samples = a.checkpoint[0], a.samples[0]
    from .experiments import load_data
    from .bn_recalibration import calibration_batches
    from .io.outputs import check_output_file
    from .train import evaluate, load_checkpoint
    from .train.checkpoint_check import check_meta, check_state, model_of
    from .experiments.presets import preset_average
    path = os.path.join(a.out, f"evaluate_{os.path.basename(os.path.dirname(os.path.abspath(a.checkpoint)))}.json")
    check_output_file(path, "the results file", [a.checkpoint])
    ck = load_checkpoint(a.checkpoint)
    check_meta(a.checkpoint, ck["config"], tuple(DATASETS), seed=True)
    meta = ck["config"]["meta"]
    if PAPER[meta["dataset"]]["loss"] == "mse":       # no classes: no accuracy, and no val/test split
        raise ValueError(f"{a.checkpoint}: evaluate reports classification accuracy and NLL; the run was "
                         f"trained on {meta['dataset']!r}, a regression set with no validation or test split")
    model = model_of(a.checkpoint, ck["config"])
    check_state(a.checkpoint, ck, model)
    # the run's own split: --max-train cut the training images before the validation split
    data, _ = load_data(meta["dataset"], a.data_root, split=0.1, seed=ck["config"]["seed"],
                        max_train=meta.get("max_train"))
    if data.x_val is None and data.x_test is None:
        raise ValueError(f"{a.checkpoint}: the {meta['dataset']!r} data set has no validation or test split "
                         "to evaluate on")
    rng = np.random.default_rng(a.seed)
    calib = None
    if check_int("recalibrate_bn", a.recalibrate_bn):     # K batches of the run's batch size, own stream
        calib = calibration_batches(data.x_train, a.recalibrate_bn, ck["config"]["batch_size"],
                                    np.random.default_rng([a.seed, 3]))
    average = a.average or preset_average(meta)           # not given: the run's preset decides
    rows, out = [], {"checkpoint": a.checkpoint, "epoch": ck["epoch"], "meta": meta, "average": average}
    if calib:                             # without recalibration the output is what it always was
        out["recalibrate_bn"] = a.recalibrate_bn
    x_test, y_test = data.x_test, data.y_test
    if a.max_test is not None and x_test is not None:     # the first N test inputs (not the val split)
        x_test, y_test = x_test[:a.max_test], y_test[:a.max_test]
        out["max_test"] = a.max_test
    for split, x, y in (("val", data.x_val, data.y_val), ("test", x_test, y_test)):
        if x is None:
            continue
        ev = evaluate(model, ck["opt"], ck["opt_state"], ck["bn_state"], x, y, samples=a.samples,
                      rng=rng, average=average, calibration=calib)
        out[split] = ev
        rows.append((split, ev["acc_mode"], ev.get("acc_mean"), ev["nll_mode"], ev.get("nll_mean"))
                    + ((ev["acc_mode_trainbn"], ev.get("acc_mean_trainbn")) if calib else ()))
    head = ("split", "acc (mode)", "acc (mean)", "nll (mode)", "nll (mean)")
    if calib:                             # the first columns are recalibrated; these are not
        head += ("acc (mode, training BN)", "acc (mean, training BN)")
    print(_table(rows, head))
    _write_json(path, out)
    print(f"wrote {path}")
    return 0


# -- continual ----------------------------------------------------------------------------
def cmd_continual(a):
    """``refbinn continual``: permuted MNIST with BayesBiNN, previous-posterior prior vs zero prior.

    Runs ``refbinn.experiments.continual.run_continual`` per prior, writes ``OUT/NAME.json``
    and prints the accuracy matrix A[t, k] (mean prediction) of each prior. Every task keeps
    a checkpoint per epoch in ``OUT/runs/NAME/PRIOR/task<t>/``: ``--resume`` continues a run
    stopped anywhere (``--stop-after``, a crash) with the bits of an uninterrupted one; a
    name that has checkpoints needs ``--resume`` or ``--overwrite``.

    Parameters
    ----------
    a : argparse.Namespace
        The parsed arguments of the subcommand: tasks, epochs, lr, tau, test_samples, prior
        ('posterior', 'zero' or 'both'), reweight, lam_init, numerics, seed, preset ('paper'
        or 'authors', ``refbinn.experiments.presets.CONTINUAL``), max_train, name, resume,
        overwrite, stop_after, quiet, out, data_root.

    Returns
    -------
    int
        The exit code: 0 (errors raise and become exit 2 or 1 in ``main``).
    """
    from .experiments.continual import run_continual
    from . import data as D
    from .io.outputs import check_output_file
    path = os.path.join(a.out, a.name + ".json")
    check_output_file(path, "the results file")          # before hours of training, not after
    priors = ["posterior", "zero"] if a.prior == "both" else [a.prior]
    run_dir = os.path.join(a.out, "runs", a.name)
    found = [c for p in priors for c in _task_checkpoints(os.path.join(run_dir, p))]
    if a.resume and a.overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    if a.resume and not found:
        raise ValueError(f"--resume: run '{a.name}' has no checkpoint of prior {' or '.join(priors)} "
                         f"in {run_dir}; start it without --resume")
    if found and not (a.resume or a.overwrite):
        raise ValueError(f"run '{a.name}' already has checkpoints ({found[0]}): continue it with --resume, "
                         "or start it again with --overwrite")
    ds = D.load_mnist(a.data_root)
    x = D.normalize(ds.x_train, "mnist").reshape(len(ds.x_train), -1)
    xt = D.normalize(ds.x_test, "mnist").reshape(len(ds.x_test), -1)
    if a.max_train:
        x, y = x[:a.max_train], ds.y_train[:a.max_train]
    else:
        y = ds.y_train
    results, left = {}, a.stop_after
    for prior in priors:
        r = run_continual(x, y.astype(np.int64), xt, ds.y_test.astype(np.int64),
                          tasks=a.tasks, epochs=a.epochs, lr=a.lr, tau=a.tau,
                          test_samples=a.test_samples, prior=prior, seed=a.seed,
                          numerics=a.numerics, quiet=a.quiet, reweight=a.reweight,
                          lam_init=a.lam_init, preset=a.preset, out_dir=os.path.join(run_dir, prior),
                          resume=a.resume, stop_after=left)
        results[prior] = r
        left = None if left is None else left - r.pop("epochs_this_call")
        if r["tasks_done"] < a.tasks:               # --stop-after: the next prior waits too
            break
    complete = len(results) == len(priors) and all(r["tasks_done"] == a.tasks for r in results.values())
    _write_json(path, {"command": a.command_line, "complete": complete, **results})
    for prior, r in results.items():
        m = np.array(r["acc_mean"])
        print(f"\nprior = {prior}: accuracy (mean prediction) on task k (columns) after task t (rows)")
        print(_table([(t + 1, *[None if np.isnan(v) else float(v) for v in m[t]]) for t in range(len(m))],
                     ("after task", *[f"task {k + 1}" for k in range(len(m))])))
    print(f"wrote {path}")
    if not complete:
        print(f"stopped after {a.stop_after} epochs (checkpoints in {run_dir}); continue with --resume")
    return 0


def _task_checkpoints(prior_dir):
    """The task checkpoints of one prior of a continual run (``PRIOR/task<t>/checkpoint.npz``)."""
    from .experiments.continual import task_folders
    paths = (os.path.join(d, "checkpoint.npz") for _, d in sorted(task_folders(prior_dir).items()))
    return [p for p in paths if os.path.isfile(p)]


# -- demo ------------------------------------------------------------------------------------
def cmd_demo(a):
    """``refbinn demo``: two moons (Figure 3) and Snelson (Figure 2), no download needed.

    Parameters
    ----------
    a : argparse.Namespace
        The parsed arguments of the subcommand: out, data_root, quick.

    Returns
    -------
    int
        The exit code: 0 (``refbinn.experiments.demo.run_demo``).
    """
    from .experiments.demo import run_demo
    return run_demo(out=a.out, root=a.data_root, quick=a.quick)


# -- download --------------------------------------------------------------------------------
def cmd_download(a):
    """``refbinn download DATASET``: fetch a data set into the data root, verifying checksums.

    Parameters
    ----------
    a : argparse.Namespace
        The parsed arguments of the subcommand: dataset, data_root, base_url.

    Returns
    -------
    int
        The exit code: 0 (errors raise and become exit 2 or 1 in ``main``).
    """
    from .data import download
    path = download(a.dataset, root=a.data_root, base_url=a.base_url)
    print(f"{a.dataset}: ready in {path}")
    return 0


# -- packed inference ------------------------------------------------------------------------
def cmd_export(a):
    """``refbinn export CHECKPOINT OUT``: pack a checkpoint's mode weights, 1 bit per weight.

    Parameters
    ----------
    a : argparse.Namespace
        The parsed arguments of the subcommand: checkpoint, out.

    Returns
    -------
    int
        The exit code: 0 (``refbinn.packed.cli_export``).
    """
    from .packed import cli_export
    return cli_export(a)


def cmd_predict(a):
    """``refbinn predict PACKED``: test accuracy and images per second of a packed model.

    Parameters
    ----------
    a : argparse.Namespace
        The parsed arguments of the subcommand: packed, dataset, batch_size, out, data_root.

    Returns
    -------
    int
        The exit code: 0 (``refbinn.packed.cli_predict``).
    """
    from .packed import cli_predict
    return cli_predict(a)


# -- golden traces ---------------------------------------------------------------------------
def cmd_trace(a):
    """``refbinn trace``: write a golden trace (every tensor of K steps) to check a port against.

    Parameters
    ----------
    a : argparse.Namespace
        The parsed arguments of the subcommand: model, optimizer, steps, out, seed, dtype,
        samples, hparams.

    Returns
    -------
    int
        The exit code: 0 (``refbinn.train.trace.cli_trace``).
    """
    from .train.trace import cli_trace
    return cli_trace(a)


def cmd_check_trace(a):
    """``refbinn check-trace MINE THEIRS``: compare two traces, 'match' or the first divergence.

    Parameters
    ----------
    a : argparse.Namespace
        The parsed arguments of the subcommand: mine, theirs, rtol, atol.

    Returns
    -------
    int
        The exit code: 0 when the traces match, 1 when they differ
        (``refbinn.train.trace_check.cli_check_trace``).
    """
    from .train.trace_check import cli_check_trace
    return cli_check_trace(a)


def build_parser():
    """The ``refbinn`` argument parser: one subparser per command, each with ``func`` set to its
    ``cmd_*`` function (the sweep commands come from ``refbinn.sweep.cli.add_parsers``).

    Returns
    -------
    refbinn.options.Parser
        The parser (an ``argparse.ArgumentParser``); ``parse_args`` gives the Namespace that
        ``main`` passes to ``args.func``.
    """
    from .train import trace
    p = Parser(prog="refbinn", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="on an error, show the traceback "
                   "(also REFBINN_DEBUG=1)")
    sub = p.add_subparsers(dest="command", required=True)

    def common(q, out="results"):
        q.add_argument("--out", default=out, help="folder for results (default: %(default)s)")
        q.add_argument("--data-root", default=None, help="data folder (default: $REFBINN_DATA, "
                       "then the per-user cache)")

    q = sub.add_parser("demo", help="two moons (Figure 3) and Snelson (Figure 2): no download needed")
    common(q)
    q.add_argument("--quick", action="store_true", help="fewer epochs (for tests)")
    q.set_defaults(func=cmd_demo)

    q = sub.add_parser("train", help="train one network with one optimizer")
    common(q)
    q.add_argument("--dataset", choices=DATASETS, help="required unless --resume with --name")
    q.add_argument("--optimizer", choices=OPTIMIZERS, help="required unless --resume with --name")
    q.add_argument("--preset", choices=list(PRESETS),
                   help="settings table: 'paper' (default for a new run) or 'authors' (the authors' "
                   "scripts: cosine lr stepped at the start of each epoch to 1e-16, logits averaged "
                   "by the mean prediction); --resume continues with the checkpoint's")
    q.add_argument("--epochs", type=int)
    q.add_argument("--lr", type=float)
    q.add_argument("--tau", type=float)
    q.add_argument("--samples", type=int, help="BayesBiNN Monte Carlo samples S per step")
    q.add_argument("--numerics", choices=list(NUMERICS),
                   help="BayesBiNN numerics; 'exact-clipped' bounds the Lemma 1 scale "
                   "(not the paper's estimator)")
    q.add_argument("--tau-end", type=float,
                   help="BayesBiNN: anneal tau geometrically from --tau to this, step by step")
    q.add_argument("--lam-init", type=float)
    q.add_argument("--beta", type=float, help="BayesBiNN momentum")
    q.add_argument("--reweight", type=float, help="BayesBiNN: weight of the prior term "
                   "reweight*(lambda - lambda0) (default 1; < 1 tempers the KL term)")
    q.add_argument("--seed", type=int)
    q.add_argument("--batch-size", type=int)
    q.add_argument("--eval-samples", type=int, help="C hard samples for the mean prediction")
    q.add_argument("--max-train", type=int, help="use only the first N training images (smoke runs)")
    q.add_argument("--hidden", type=int, nargs="+", help="hidden widths of the MLP (default: the paper's)")
    q.add_argument("--eval-mean-every", type=int, help="evaluate the mean prediction every k epochs "
                   "(default: last epoch only)")
    q.add_argument("--recalibrate-bn", type=int, metavar="K",
                   help="evaluate with BatchNorm statistics recomputed from K training batches for each "
                   "evaluated network (also reports the training statistics' accuracy as *_trainbn; "
                   "default 0: the training's statistics)")
    q.add_argument("--no-diagnostics", action="store_true", help="do not record the per-epoch "
                   "diagnostics (Lemma 1 scale, sign flips, data/prior, mode-mean gap)")
    q.add_argument("--diagnostics-every", type=int, metavar="K",
                   help="also record the BayesBiNN diagnostics every K steps (default 0: once per epoch)")
    q.add_argument("--name", help="run name (default DATASET_OPTIMIZER)")
    q.add_argument("--resume", action="store_true", help="continue from the run's checkpoint, with "
                   "its settings (an option that differs from them is an error)")
    q.add_argument("--overwrite", action="store_true", help="start again a run that has a checkpoint")
    q.add_argument("--stop-after", type=int, help="stop after this many epochs (continue later "
                   "with --resume; the result is identical to an uninterrupted run)")
    q.add_argument("--checkpoint-every", type=int, help="write the checkpoint every k epochs "
                   "(default 1; the last epoch always)")
    q.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    q.set_defaults(func=cmd_train)

    # -- sweeps (issue 14): `refbinn sweep SPEC.toml` and `refbinn report DIR`, in refbinn/sweep/
    from .sweep.cli import add_parsers as add_sweep_parsers
    add_sweep_parsers(sub, common)

    q = sub.add_parser("continual", help="permuted MNIST: previous-posterior prior vs zero prior")
    common(q)
    q.add_argument("--tasks", type=int, default=5)
    q.add_argument("--epochs", type=int, default=100)
    q.add_argument("--lr", type=float, default=1e-3)
    q.add_argument("--tau", type=float, default=1e-2)
    q.add_argument("--test-samples", type=int, default=100)
    q.add_argument("--prior", choices=["posterior", "zero", "both"], default="both")
    q.add_argument("--reweight", type=float, default=1.0, help="weight of the prior term "
                   "reweight*(lambda - lambda0) in every update (default 1: the paper)")
    q.add_argument("--lam-init", type=float, default=10.0, help="|lambda| at initialisation (default 10)")
    q.add_argument("--numerics", choices=list(NUMERICS), default="official",
                   help="BayesBiNN numerics (default: the authors', as in the paper preset; with the "
                   "exact math at tau=1e-2 and |lambda|=10 the Lemma 1 scale underflows to 0)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--preset", choices=list(CONTINUAL), default="paper",
                   help="'paper' (default) or 'authors': BatchNorm momentum 0.15 and eps 1e-4, cosine lr "
                   "stepped at the start of each epoch to 1e-16, logits averaged over the test samples, "
                   "task permutations from --seed (the paper preset's ignore it)")
    q.add_argument("--max-train", type=int, help="use only the first N training images (N becomes the "
                   "BayesBiNN N; the test set stays whole; smoke runs)")
    q.add_argument("--name", default="continual_permuted_mnist")
    q.add_argument("--resume", action="store_true", help="continue from the run's checkpoints "
                   "(OUT/runs/NAME/PRIOR/task<t>/), with the same settings")
    q.add_argument("--overwrite", action="store_true", help="start again a run that has checkpoints")
    q.add_argument("--stop-after", type=int, help="stop after this many epochs (over the tasks and "
                   "priors; continue later with --resume: the result is identical to an uninterrupted run)")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_continual)

    q = sub.add_parser("evaluate", help="evaluate checkpoints (mode and mean): accuracy and NLL on "
                       "validation and test; with --ood, calibration and OOD detection")
    common(q)
    q.add_argument("checkpoint", nargs="+", help="one or more results/runs/NAME/checkpoint.npz")
    q.add_argument("--samples", type=int, nargs="+", default=[10],
                   help="C, weight samples of the mean prediction (several: one row each)")
    q.add_argument("--average", choices=["prob", "logits"], default=None,
                   help="how the mean prediction averages its samples: probabilities (the predictive) "
                   "or logits; default: the run's preset ('logits' for image runs under --preset "
                   "authors, else 'prob')")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--ood", nargs="*", choices=OOD_SETS, metavar="NAME",
                   help=f"OOD sets ({', '.join(OOD_SETS)}); given (even empty), or with several "
                   "checkpoints or sample counts: calibration/OOD tables, JSON and PNGs")
    q.add_argument("--bins", type=int, default=15, help="equal-width ECE bins (default: %(default)s)")
    q.add_argument("--max-test", type=int, help="use the first N test inputs (and N per OOD set)")
    q.add_argument("--name", help="output name: uncertainty_NAME.json, reliability_NAME.png, "
                   "entropy_NAME.png (default: the run's folder, or 'uncertainty')")
    q.add_argument("--recalibrate-bn", type=int, default=0, metavar="K",
                   help="recompute BatchNorm statistics from K training batches for each evaluated "
                   "network (the mode, each sample of the mean); see refbinn/bn_recalibration.py")
    q.set_defaults(func=cmd_evaluate)

    q = sub.add_parser("download", help="fetch a data set (needs internet), verifying checksums")
    q.add_argument("dataset", choices=["mnist", "fashion-mnist", "cifar10", "cifar100", "snelson"])
    q.add_argument("--data-root", default=None)
    q.add_argument("--base-url", default=None, help="mirror to fetch from instead of the canonical one")
    q.set_defaults(func=cmd_download)

    q = sub.add_parser("export", help="pack a checkpoint's mode weights: 1 bit per weight, one .npz")
    q.add_argument("checkpoint", help="a training checkpoint (results/runs/NAME/checkpoint.npz)")
    q.add_argument("out", help="the packed model to write (.npz)")
    q.set_defaults(func=cmd_export)

    q = sub.add_parser("predict", help="test accuracy and images/s of a packed model")
    common(q)
    q.add_argument("packed", help="a packed model from 'refbinn export'")
    q.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    q.add_argument("--batch-size", type=int, default=1000)
    q.add_argument("--against", default=None, metavar="CHECKPOINT",
                   help="the checkpoint it was exported from: compare with the float model's logits")
    q.set_defaults(func=cmd_predict)

    q = sub.add_parser("trace", help="write a golden trace (every tensor of K steps) to check a port against")
    q.add_argument("--model", default="mlp", choices=trace.MODELS)
    q.add_argument("--optimizer", default="bayesbinn-official", choices=trace.OPTIMIZERS)
    q.add_argument("--steps", type=int, default=10, help="K, the number of updates")
    q.add_argument("--out", default="trace.npz", help="the .npz to write (default: %(default)s)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    q.add_argument("--samples", type=int, default=None,
                   help="BayesBiNN: S, the Monte Carlo passes per step (default 1)")
    q.add_argument("--hparams", default=None,
                   help="optimizer settings over the defaults, a JSON object, e.g. '{\"tau\": 0.7, \"beta\": 0.9}'")
    q.set_defaults(func=cmd_trace)

    q = sub.add_parser("check-trace", help="compare two traces: 'match' or the first divergence (exit 1)")
    q.add_argument("mine")
    q.add_argument("theirs")
    q.add_argument("--rtol", type=float, default=None,
                   help="relative to each tensor's largest |value| (default 1e-9 for float64, else 1e-4)")
    q.add_argument("--atol", type=float, default=0.0)
    q.add_argument("--partial", action="store_true",
                   help="a port that computes part of each step: tensors only THEIRS holds are listed, not "
                        "mismatches (MINE's must all be in THEIRS and agree)")
    q.set_defaults(func=cmd_check_trace)
    for q in sub.choices.values():          # --debug after the subcommand too
        q.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return p


def main(argv=None):
    """Run one subcommand: its exit code; bad input: one line on stderr and 2; a bug: one line and 1.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after ``refbinn`` (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code (``refbinn.errors.run_command``); a usage error exits 2 inside argparse.
    """
    argv = sys.argv[1:] if argv is None else [str(v) for v in argv]
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["refbinn", *argv])      # recorded in the results: these arguments
    return run_command(args.command, lambda a: check_options(a) or a.func(a), args, debug_requested(args))


if __name__ == "__main__":
    sys.exit(main())
