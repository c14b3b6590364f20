"""What ``refbinn train`` starts from, decided before any work: a new run, its checkpoint, or nothing::

    plan_train(args) -> TrainPlan(dataset, optimizer, name, overrides, preset)

- ``--resume``: the run's checkpoint (``OUT/runs/NAME/checkpoint.npz``) must exist, and its
  settings are the run's: a setting given on the command line that differs from the
  checkpoint's is an error naming each one with both values. ``--dataset`` and
  ``--optimizer`` may then be left out when ``--name`` is given. The preset is a setting
  too: the checkpoint's (``config['meta']['preset']``; 'paper' in a file from before
  there was a choice), and a different ``--preset`` is an error.
- otherwise a name that already has a checkpoint is an error suggesting ``--resume`` or
  ``--overwrite``; ``--overwrite`` starts the run again (its files are replaced after epoch 1).
- a setting the optimizer or data set does not use (``--tau`` for STE, ``--max-train`` for
  two moons, ``--eval-samples`` for an optimizer without a mean prediction) is an error: it
  would be recorded but change nothing. Only what the command line gives is checked: the
  preset's values (None here) never count as set.

The settings a checkpoint records: ``config`` (epochs, seed, batch_size, eval_samples; what
each epoch records: eval_mean_every, recalibrate_bn, diagnostics, diagnostics_every; and
checkpoint_every), ``config['meta']`` (dataset, optimizer, preset, max_train, and the optimizer's
settings: lr, tau, ..., tau_end, reweight) and ``config['meta']['model']`` (the model's
keyword arguments: ``--hidden``).

What ``--resume`` may change: only ``--checkpoint-every`` (``FREE_ON_RESUME``): how often the
files are written changes nothing a run computes or records. Everything else must equal the
checkpoint's, the evaluation and diagnostics options too: they change no weight, but they
decide what each epoch's history holds, and a resumed run's results must be those of an
uninterrupted run. A setting an older checkpoint did not record is not compared (the
command line's value, or the default, is used); ``tau_end`` and ``reweight`` absent from the
recorded settings mean no annealing and 1.
"""
from __future__ import annotations

import inspect
import json
import os
from typing import NamedTuple

import numpy as np

from ..errors import reads_file
from ..models import MODELS
from ..optim.registry import OPTIMIZERS
from ..train.checkpoint_check import check_meta
from .datasets import DATASETS, IMAGE_DATASETS
from .presets import PAPER, PRESETS

RUN = ("epochs", "seed", "batch_size", "eval_samples")              # in config
RECORDING = ("eval_mean_every", "recalibrate_bn", "diagnostics", "diagnostics_every")   # in config
FREE_ON_RESUME = ("checkpoint_every",)                               # in config; may differ on resume
OPTIMIZER = ("lr", "tau", "samples", "numerics", "lam_init", "beta", "tau_end",
             "reweight")                                             # in config['meta']['settings']
SETTING_DEFAULTS = {"tau_end": None, "reweight": 1.0}                # what a setting left out means
# the optimizers with a mean prediction: a distribution to sample networks from (``sample_params``);
# for the others the mean of C samples is the mode, so --eval-samples / --eval-mean-every change nothing
SAMPLING = tuple(name for name, cls in OPTIMIZERS.items() if hasattr(cls, "sample_params"))
USED_BY = {"lr": ("bayesbinn", "ste", "pmf", "adam", "vispa"), "tau": ("bayesbinn",),
           "samples": ("bayesbinn",), "numerics": ("bayesbinn",), "lam_init": ("bayesbinn",),
           "beta": ("bayesbinn",), "tau_end": ("bayesbinn",), "reweight": ("bayesbinn",),
           "diagnostics_every": ("bayesbinn",), "eval_samples": SAMPLING, "eval_mean_every": SAMPLING}
HIDDEN_MODELS = ("mlp_mnist",)          # preset models whose ``hidden`` is a list of widths
FLAGS = {"diagnostics": "--no-diagnostics"}     # settings whose option is not named after them
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
    preset : str
        A key of ``refbinn.experiments.presets.PRESETS``: 'paper' or 'authors'.
    """
    dataset: str
    optimizer: str
    name: str
    overrides: dict         # for ``experiments.build``
    preset: str = "paper"


def _flag(dest):
    return FLAGS.get(dest) or "--" + dest.replace("_", "-")


def given_settings(args):
    """dest -> value of every setting of ``refbinn train``'s command line (None where not given).

    ``--no-diagnostics`` gives ``diagnostics=False``; ``--hidden`` gives ``hidden`` as a tuple.

    Parameters
    ----------
    args : argparse.Namespace
        ``refbinn train``'s parsed command line.

    Returns
    -------
    dict
        Keyed by setting: RUN, OPTIMIZER, RECORDING, FREE_ON_RESUME, max_train and hidden.
    """
    out = {k: getattr(args, k, None) for k in RUN + OPTIMIZER + RECORDING + FREE_ON_RESUME + ("max_train",)}
    out["diagnostics"] = False if getattr(args, "no_diagnostics", False) else None
    hidden = getattr(args, "hidden", None)
    out["hidden"] = tuple(hidden) if hidden else None
    return out


def overrides_of(settings):
    """The ``overrides`` of ``experiments.build`` for settings ``settings`` (None: the preset's).

    Parameters
    ----------
    settings : dict
        As ``given_settings`` returns (``hidden`` becomes ``model_kwargs={'hidden': ...}``).

    Returns
    -------
    dict
    """
    out = {k: v for k, v in settings.items() if k != "hidden"}
    if settings.get("hidden") is not None:
        out["model_kwargs"] = {"hidden": tuple(settings["hidden"])}
    return out


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
    if getattr(args, "hidden", None) and PAPER[dataset]["model"][0] not in HIDDEN_MODELS:
        users = [d for d in PAPER if PAPER[d]["model"][0] in HIDDEN_MODELS]
        raise ValueError(f"--hidden does not apply to --dataset {dataset} (it applies to {', '.join(users)})")
    if getattr(args, "diagnostics_every", None) is not None and getattr(args, "no_diagnostics", False):
        raise ValueError("--diagnostics-every does not apply with --no-diagnostics")


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
        Keyed like ``refbinn train``'s options: dataset, optimizer, preset, max_train, epochs,
        seed, ...
    """
    meta = config["meta"]
    out = {"dataset": meta["dataset"], "optimizer": meta.get("optimizer"),
           "preset": meta.get("preset", "paper"), "max_train": meta.get("max_train", UNKNOWN)}
    out.update({k: config.get(k, UNKNOWN) for k in RUN + RECORDING + FREE_ON_RESUME})
    settings = meta.get("settings", {})
    out.update({k: settings.get(k, SETTING_DEFAULTS.get(k, UNKNOWN)) for k in OPTIMIZER})
    out["hidden"] = _recorded_hidden(meta["model"])
    return out


def _recorded_hidden(model):
    """The hidden widths of a recorded ``[name, kwargs]`` as a tuple (UNKNOWN if not a list of widths)."""
    name, kw = model
    if name not in HIDDEN_MODELS:
        return UNKNOWN
    hidden = kw.get("hidden", inspect.signature(MODELS[name]).parameters["hidden"].default)
    return tuple(hidden) if isinstance(hidden, (list, tuple)) else UNKNOWN


def _differs(given, saved):
    if saved is UNKNOWN:
        return False                        # nothing to compare with; fit() checks n_train
    if given is None or saved is None:
        return given is not saved
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
        return TrainPlan(a.dataset, a.optimizer, name, overrides_of(given_settings(a)), _preset(a) or "paper")
    if not os.path.isfile(ckpt):
        raise ValueError(f"--resume: run '{name}' has no checkpoint ({ckpt} does not exist); "
                         "start it without --resume")
    config = read_config(ckpt)
    saved = recorded_settings(config)
    check_applicable(a, saved["dataset"], saved["optimizer"])
    given = {"dataset": a.dataset, "optimizer": a.optimizer, "preset": _preset(a), **given_settings(a)}
    diffs = [_difference(k, given[k], saved[k]) for k in saved
             if k not in FREE_ON_RESUME and given.get(k) is not None and _differs(given[k], saved[k])]
    if diffs:
        raise ValueError(f"--resume: the command line differs from the checkpoint {ckpt}: "
                         + ", ".join(diffs) + "; leave these out to continue with the checkpoint's")
    # the checkpoint's settings; what it did not record (an older file) from the command line
    run = {k: given[k] if saved[k] is UNKNOWN or (k in FREE_ON_RESUME and given[k] is not None)
           else saved[k] for k in RUN + RECORDING + FREE_ON_RESUME + ("max_train",)}
    overrides = {**config["meta"].get("settings", {}), **run}
    overrides["model_kwargs"] = dict(config["meta"]["model"][1])
    return TrainPlan(saved["dataset"], saved["optimizer"], name, overrides, saved["preset"])


def _preset(a):
    """``--preset`` (None if not given), checked against ``PRESETS``."""
    preset = getattr(a, "preset", None)
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    return preset


def _difference(dest, given, saved):
    if dest == "diagnostics":
        return f"--no-diagnostics (the checkpoint's run records diagnostics: {saved!r})"
    if dest == "hidden":
        return f"--hidden {' '.join(map(str, given))} (checkpoint: {' '.join(map(str, saved))})"
    return f"{_flag(dest)} {given!r} (checkpoint: {saved!r})"
