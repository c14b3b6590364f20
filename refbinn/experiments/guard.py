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

The settings a checkpoint records: ``config`` (epochs, seed, batch_size, eval_samples) and
``config['meta']`` (dataset, optimizer, max_train, and the optimizer's settings: lr, tau, ...).
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

RUN = ("epochs", "seed", "batch_size", "eval_samples")              # in config
OPTIMIZER = ("lr", "tau", "samples", "numerics", "lam_init", "beta")  # in config['meta']['settings']
USED_BY = {"lr": ("bayesbinn", "ste", "pmf", "adam", "vispa"), "tau": ("bayesbinn",),
           "samples": ("bayesbinn",), "numerics": ("bayesbinn",), "lam_init": ("bayesbinn",),
           "beta": ("bayesbinn",)}
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
    if getattr(args, "max_train", None) is not None and dataset not in IMAGE_DATASETS:
        raise ValueError(f"--max-train does not apply to --dataset {dataset} "
                         f"(it applies to {', '.join(IMAGE_DATASETS)})")


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
           "max_train": meta.get("max_train", UNKNOWN)}
    out.update({k: config.get(k, UNKNOWN) for k in RUN})
    out.update({k: meta.get("settings", {}).get(k, UNKNOWN) for k in OPTIMIZER})
    return out


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
        return TrainPlan(a.dataset, a.optimizer, name,
                         {k: getattr(a, k) for k in RUN + OPTIMIZER + ("max_train",)})
    if not os.path.isfile(ckpt):
        raise ValueError(f"--resume: run '{name}' has no checkpoint ({ckpt} does not exist); "
                         "start it without --resume")
    config = read_config(ckpt)
    saved = recorded_settings(config)
    check_applicable(a, saved["dataset"], saved["optimizer"])
    diffs = [f"{_flag(k)} {getattr(a, k)!r} (checkpoint: {saved[k]!r})" for k in saved
             if getattr(a, k, None) is not None and _differs(getattr(a, k), saved[k])]
    if diffs:
        raise ValueError(f"--resume: the command line differs from the checkpoint {ckpt}: "
                         + ", ".join(diffs) + "; leave these out to continue with the checkpoint's")
    overrides = {**config["meta"].get("settings", {}),
                 **{k: v for k, v in saved.items() if k in RUN + ("max_train",) and v is not UNKNOWN}}
    if saved["max_train"] is UNKNOWN:
        overrides["max_train"] = a.max_train
    return TrainPlan(saved["dataset"], saved["optimizer"], name, overrides)
