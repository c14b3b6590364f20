"""What ``refbinn train`` starts from, decided before any work: a new run, its checkpoint, or nothing::

    plan_train(args) -> TrainPlan(dataset, optimizer, name, overrides)

- ``--resume``: the run's checkpoint (``OUT/runs/NAME/checkpoint.npz``) must exist, and its
  settings are the run's: a setting given on the command line that differs from the
  checkpoint's is an error naming each one with both values. ``--dataset`` and
  ``--optimizer`` may then be left out when ``--name`` is given.
- otherwise a name that already has a checkpoint is an error suggesting ``--resume`` or
  ``--overwrite``; ``--overwrite`` starts the run again (its files are replaced after epoch 1).
- a setting the optimizer or data set does not use (``--tau`` for STE, ``--max-train`` for
  two moons) is an error: it would be recorded but change nothing.

The settings a checkpoint records: ``config`` (epochs, seed, batch_size, eval_samples,
checkpoint_every, eval_mean_every, recalibrate_bn, diagnostics, diagnostics_every) and
``config['meta']`` (dataset, optimizer, max_train, the model's arguments (hidden), and the
optimizer's settings: lr, tau, tau_end, samples, numerics, lam_init, beta, reweight).
"""
from __future__ import annotations

import json
import os
from typing import NamedTuple

import numpy as np

from ..errors import reads_file
from ..optim.registry import OPTIMIZERS
from ..train.checkpoint_check import check_meta
from .datasets import DATASETS, IMAGE_DATASETS

RUN = ("epochs", "seed", "batch_size", "eval_samples", "checkpoint_every", "eval_mean_every",
       "recalibrate_bn", "diagnostics_every")                                          # in config
OPTIMIZER = ("lr", "tau", "tau_end", "samples", "numerics", "lam_init", "beta", "reweight")  # in meta['settings']
BAYESBINN = ("bayesbinn",)
USED_BY = {"lr": ("bayesbinn", "ste", "pmf", "adam", "vispa"), "tau": BAYESBINN, "tau_end": BAYESBINN,
           "samples": BAYESBINN, "numerics": BAYESBINN, "lam_init": BAYESBINN, "beta": BAYESBINN,
           "reweight": BAYESBINN}
MLP_DATASETS = ("mnist", "fashion-mnist")         # whose model (mlp_mnist) takes --hidden
UNKNOWN = object()          # a setting an older checkpoint did not record


class TrainPlan(NamedTuple):
    """What ``refbinn train`` will run.

    Attributes
    ----------
    dataset, optimizer : str
        Keys of ``DATASETS`` and ``refbinn.optim.OPTIMIZERS``.
    name : str
        The run name (files ``OUT/NAME.json``, ``OUT/runs/NAME/``).
    overrides : dict
        Preset overrides for ``experiments.build``.
    """
    dataset: str
    optimizer: str
    name: str
    overrides: dict         # for ``experiments.build``


def _flag(dest):
    return "--" + dest.replace("_", "-")


def check_applicable(args, dataset, optimizer):
    """ValueError for a setting given on the command line that ``optimizer`` or ``dataset`` ignores.

    Parameters
    ----------
    args : argparse.Namespace
        ``refbinn train``'s parsed command line.
    dataset, optimizer : str
        What the run trains.
    """
    for dest, users in USED_BY.items():
        if getattr(args, dest, None) is not None and optimizer not in users:
            raise ValueError(f"{_flag(dest)} does not apply to --optimizer {optimizer} "
                             f"(it applies to {', '.join(users)})")
    for dest, users in (("max_train", IMAGE_DATASETS), ("hidden", MLP_DATASETS)):
        if getattr(args, dest, None) is not None and dataset not in users:
            raise ValueError(f"{_flag(dest)} does not apply to --dataset {dataset} "
                             f"(it applies to {', '.join(users)})")


@reads_file("checkpoint")
def read_config(path):
    """The ``config`` entry of a training checkpoint (read alone), with a known data set and model.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    dict
    """
    with np.load(path, allow_pickle=False) as z:
        config = json.loads(str(z["config"]))
    check_meta(path, config, tuple(DATASETS), seed=True)
    if config["meta"].get("optimizer") not in OPTIMIZERS:
        raise ValueError(f"{path}: config names optimizer {config['meta'].get('optimizer')!r}, "
                         f"not one of {', '.join(OPTIMIZERS)}")
    return config


def recorded_settings(config):
    """dest -> value of every setting the checkpoint's ``config`` records (UNKNOWN if it does not).

    Parameters
    ----------
    config : dict
        A checkpoint's ``config`` (``read_config``).

    Returns
    -------
    dict
        Keyed like ``refbinn train``'s options: dataset, optimizer, max_train, epochs, seed, ...
    """
    meta = config["meta"]
    out = {"dataset": meta["dataset"], "optimizer": meta.get("optimizer"),
           "max_train": meta.get("max_train", UNKNOWN), "hidden": meta["model"][1].get("hidden")}
    out.update({k: config.get(k, UNKNOWN) for k in RUN})
    out.update({k: meta.get("settings", {}).get(k, UNKNOWN) for k in OPTIMIZER})
    out["no_diagnostics"] = (not config["diagnostics"]) if "diagnostics" in config else UNKNOWN
    return out


def _given(a, dest):
    """The value of option ``dest`` if the command line gave it, else None (a False flag: not given)."""
    v = getattr(a, dest, None)
    return None if v is None or v is False else (list(v) if isinstance(v, tuple) else v)


def _differs(given, saved):
    if saved is UNKNOWN:
        return False                        # nothing to compare with; fit() checks n_train
    if isinstance(given, float) or isinstance(saved, float):
        try:
            return float(given) != float(saved)
        except (TypeError, ValueError):
            return True
    return given != saved


def plan_train(a):
    """The run ``refbinn train`` args ``a`` ask for; ValueError for a clash with what is on disk.

    Parameters
    ----------
    a : argparse.Namespace
        ``refbinn train``'s parsed command line.

    Returns
    -------
    TrainPlan
    """
    if not a.name and not (a.dataset and a.optimizer):
        raise ValueError("--dataset and --optimizer are required (with --resume, --name is enough)")
    if a.resume and a.overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    name = a.name or f"{a.dataset}_{a.optimizer}"
    ckpt = os.path.join(a.out, "runs", name, "checkpoint.npz")
    if not a.resume:
        if not (a.dataset and a.optimizer):
            raise ValueError("--dataset and --optimizer are required to start a run")
        if os.path.exists(ckpt) and not a.overwrite:
            raise ValueError(f"run '{name}' already has a checkpoint ({ckpt}): continue it with --resume, "
                             "or start it again with --overwrite")
        check_applicable(a, a.dataset, a.optimizer)
        over = {k: getattr(a, k, None) for k in RUN + OPTIMIZER + ("max_train",)}
        over["diagnostics"] = not getattr(a, "no_diagnostics", False)
        if _given(a, "hidden"):
            over["model_kwargs"] = {"hidden": tuple(a.hidden)}
        return TrainPlan(a.dataset, a.optimizer, name, over)
    if not os.path.isfile(ckpt):
        raise ValueError(f"--resume: run '{name}' has no checkpoint ({ckpt} does not exist); "
                         "start it without --resume")
    config = read_config(ckpt)
    saved = recorded_settings(config)
    check_applicable(a, saved["dataset"], saved["optimizer"])
    diffs = [f"{_flag(k)} {_given(a, k)!r} (checkpoint: {saved[k]!r})" for k in saved
             if _given(a, k) is not None and _differs(_given(a, k), saved[k])]
    if diffs:
        raise ValueError(f"--resume: the command line differs from the checkpoint {ckpt}: "
                         + ", ".join(diffs) + "; leave these out to continue with the checkpoint's")
    overrides = {**config["meta"].get("settings", {}),
                 **{k: v for k, v in saved.items() if k in RUN + ("max_train",) and v is not UNKNOWN},
                 "model_kwargs": config["meta"]["model"][1]}
    if saved["no_diagnostics"] is not UNKNOWN:
        overrides["diagnostics"] = not saved["no_diagnostics"]
    if saved["max_train"] is UNKNOWN:
        overrides["max_train"] = a.max_train
    return TrainPlan(saved["dataset"], saved["optimizer"], name, overrides)
