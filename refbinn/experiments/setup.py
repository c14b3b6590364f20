"""Build an experiment (model, optimizer, data, loss, schedule) from a data set name,
an optimizer name, a preset ('paper' or 'authors') and overrides of it
(refbinn/experiments/presets.py)."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

import numpy as np

from ..checks import check_choice, check_int, check_range
from ..models import build_model
from ..nn import losses
from ..optim.partition import Partition
from ..optim.registry import OPTIMIZERS, make
from .datasets import IMAGE_DATASETS, load_data
from .presets import PAPER, PRESETS
from ..train import Data, TrainConfig, schedules
from ..train.anneal import anneal_tau
from ..train.loop import minibatch_error, one_row_minibatch

LOSSES = {"cross_entropy": losses.softmax_cross_entropy, "logistic": losses.logistic_loss,
          "mse": losses.mse}
# the overrides ``build`` reads: for the run, and optimizer settings any preset may lack
RUN_KEYS = ("epochs", "batch_size", "seed", "max_train", "model_kwargs", "eval_samples", "average",
            "checkpoint_every", "eval_mean_every", "recalibrate_bn", "diagnostics", "diagnostics_every")
OPTIMIZER_KEYS = ("lr", "tau", "samples", "numerics", "N", "lam_init", "lam_init_std", "beta", "clip_value",
                  "clip_norm", "schedule", "eta_min", "off_by_one", "real_lr", "tau_end", "reweight")


def _preset_keys(optimizer=None):
    """Every setting of ``optimizer`` (None: of any optimizer) in any preset of any data set."""
    names = [optimizer] if optimizer else list(OPTIMIZERS)
    return {k for table in PRESETS.values() for p in table.values()
            for opt in names if isinstance(p.get(opt), dict) for k in p[opt]}


@dataclass
class Setup:
    """Everything ``refbinn.train.fit`` needs for one run, as ``build`` assembles it.

    Attributes
    ----------
    model : Sequential
        The network of the preset (``refbinn.models.build_model``).
    opt : Optimizer
        The optimizer; a ``Partition`` (binary weights to it, real parameters to Adam) when
        the model has real parameters and the optimizer is not Adam.
    data : refbinn.train.Data
        Training, validation and test arrays.
    loss_fn : callable
        ``loss_fn(out, target) -> (loss, dout)``, one of ``LOSSES``.
    cfg : refbinn.train.TrainConfig
        Epochs, batch size, seed, evaluation settings and the run's metadata.
    schedule : callable
        epoch -> learning rate (gamma for Bop; a pair for a ``Partition``).
    settings : dict
        What was built: dataset, optimizer, preset, epochs, batch_size, seed, optimizer_settings,
        model, extra (``load_data``'s second value), eval_samples, max_train.
    tau_schedule : callable or None
        epoch -> tau, BayesBiNN's temperature annealing when ``tau_end`` is set, else None.
    """

    model: object
    opt: object
    data: Data
    loss_fn: object
    cfg: TrainConfig
    schedule: object
    settings: dict
    tau_schedule: object = None     # BayesBiNN temperature annealing (``tau_end`` set), else None


def _hyper(name, s, n_train):
    """Constructor arguments of optimizer ``name`` from preset settings ``s``."""
    if name == "bayesbinn":
        return dict(lr=s["lr"], beta=s.get("beta", 0.0), tau=s["tau"], samples=s.get("samples", 1),
                    N=s.get("N", n_train), lam_init=s.get("lam_init", 10.0),
                    lam_init_std=s.get("lam_init_std", 0.0), numerics=s.get("numerics", "exact"),
                    reweight=s.get("reweight", 1.0))
    if name == "ste":
        return dict(lr=s["lr"], clip_value=s.get("clip_value"), clip_norm=s.get("clip_norm"))
    if name == "bop":
        return dict(threshold=s["threshold"], gamma=s["gamma"])
    if name == "pmf":
        return dict(lr=s["lr"], rho=s["rho"], weight_decay=s.get("weight_decay", 0.0))
    if name == "adam":
        return dict(lr=s["lr"], weight_decay=s.get("weight_decay", 0.0))
    return dict(lr=s["lr"], rank=s.get("rank", 8), scale=s.get("scale", 100.0),          # vispa
                momentum=s.get("momentum", 0.9), weight_decay=s.get("weight_decay", 5e-4))


SCHEDULES = ("cosine", "milestones", "geometric", "constant")


def _schedule(name, s, epochs, steps_per_epoch):
    """The per-epoch schedule (callable epoch -> lr, or gamma for Bop) from preset settings ``s``."""
    if name == "bop":
        g0 = s["gamma"]
        if "gamma_decay_per_epoch" in s:
            d = check_range("gamma_decay_per_epoch", s["gamma_decay_per_epoch"], 0, lo_open=True)
            return lambda e, g0=g0, d=d: g0 * d ** e
        if "gamma_step_every" in s:
            return schedules.step_decay(g0, s["gamma_step_every"], s["gamma_step_factor"])
        return lambda e, g0=g0: g0
    if name == "pmf":
        every = max(1, round(check_int("step_every_iters", s["step_every_iters"], 1) / steps_per_epoch))
        return schedules.step_decay(s["lr"], every, s["step_factor"])
    if name == "vispa":
        warmup = check_int("warmup_epochs", s.get("warmup_epochs", 1))
        return schedules.warmup_cosine(s["lr"], epochs, warmup=min(warmup, epochs - 1))
    kind, lr = check_choice("schedule", s.get("schedule", "cosine"), SCHEDULES), s["lr"]
    if kind == "cosine":
        off = s.get("off_by_one", False)
        if not isinstance(off, (bool, np.bool_)):            # 'no' would be True
            raise ValueError(f"off_by_one must be True or False, got {off!r}")
        return schedules.cosine(lr, epochs, eta_min=s.get("eta_min", 0.0), off_by_one=bool(off))
    if kind == "milestones":
        return schedules.milestones(lr, at=tuple(s.get("milestones", (1500, 2500))), factor=0.1)
    if kind == "geometric":
        return schedules.geometric(lr, s["lr_end"], epochs)
    return lambda epoch: lr


def make_optimizer(name, s, *, n_train, kinds, epochs, steps_per_epoch):
    """Optimizer ``name`` (a key of ``refbinn.optim.OPTIMIZERS``) and its per-epoch schedule from
    preset settings ``s``; real parameters in ``kinds`` go to Adam (``Partition``).

    The real parameters' Adam has lr = ``s["real_lr"]`` (default 1e-3) on a cosine schedule.

    Parameters
    ----------
    name : str
        'bayesbinn', 'ste', 'bop', 'pmf', 'adam' or 'vispa'.
    s : dict
        The optimizer's preset settings (``PAPER[dataset][name]`` with overrides): lr, tau,
        gamma, schedule, ... as the optimizer needs them.
    n_train : int
        N, the training-set size in BayesBiNN's update (unless ``s`` sets ``N``).
    kinds : dict name -> {'binary', 'real'}
        The kind of each parameter.
    epochs : int
        Epochs of the run, >= 1 (the length of the schedules).
    steps_per_epoch : int
        Minibatches per epoch, >= 1 (PMF's step decay is given in iterations).

    Returns
    -------
    opt : Optimizer
        The optimizer, or a ``Partition`` of it and Adam.
    schedule : callable
        epoch -> lr (gamma for Bop); for a ``Partition``, epoch -> (binary lr, real lr).
    """
    check_choice("optimizer", name, tuple(OPTIMIZERS))
    if not isinstance(s, dict) or not isinstance(kinds, dict):
        raise ValueError(f"make_optimizer: s and kinds must be dicts, got {type(s).__name__}, {type(kinds).__name__}")
    check_int("steps_per_epoch", steps_per_epoch, 1)
    try:
        opt = make(name, **_hyper(name, s, n_train))
        sched = _schedule(name, s, epochs, steps_per_epoch)
    except KeyError as e:                    # a setting the preset has and ``s`` lacks
        raise ValueError(f"optimizer {name!r}: its settings lack {e}") from None
    if name != "adam" and any(k == "real" for k in kinds.values()):
        real_lr = s.get("real_lr", 1e-3)
        real_sched = schedules.cosine(real_lr, epochs)
        opt = Partition(opt, make("adam", lr=real_lr), kinds)
        sched = (lambda e, a=sched, b=real_sched: (a(e), b(e)))
    return opt, sched


def build(dataset, optimizer, *, preset="paper", overrides=None, root=None, quiet=False):
    """Return a ``Setup``; ``overrides`` (dict) replaces preset values: epochs, batch_size,
    seed, lr, tau, samples, numerics, N, lam_init, eval_samples, max_train, checkpoint_every, model kwargs;
    tau_end (BayesBiNN: tau annealed geometrically from tau to tau_end, ``train.anneal``),
    reweight; recalibrate_bn, diagnostics, diagnostics_every, eval_mean_every (``TrainConfig``).

    Parameters
    ----------
    dataset : str
        A key of ``PAPER``: 'mnist', 'fashion-mnist', 'cifar10', 'cifar100', 'two-moons',
        'snelson'.
    optimizer : str
        'bayesbinn', 'ste', 'bop', 'pmf', 'adam' or 'vispa'.
    preset : {'paper', 'authors'}
        The settings table (``refbinn.experiments.presets.PRESETS``): 'paper' (default) or
        'authors' (the authors' scripts: cosine stepped at the start of each epoch to eta_min
        1e-16, logits averaged by the mean prediction); recorded in ``cfg.meta['preset']``.
    overrides : dict, optional
        Values replacing the preset's (keys above; None values are ignored); epochs,
        batch_size >= 1, seed >= 0.
    root : str, optional
        The data folder (see ``load_data``).
    quiet : bool
        Passed to ``TrainConfig``: no progress bar or per-epoch lines.

    Returns
    -------
    Setup
        Model, optimizer, data, loss, config, schedule, settings and tau schedule.
    """
    check_choice("dataset", dataset, tuple(PAPER))
    check_choice("optimizer", optimizer, tuple(OPTIMIZERS))
    check_choice("preset", preset, tuple(PRESETS))
    p = PRESETS[preset][dataset]
    if overrides is not None and not isinstance(overrides, dict):
        raise ValueError(f"overrides must be a dict setting -> value, got {type(overrides).__name__}")
    # NumPy numbers as Python's: they reach the log line and the checkpoint's JSON meta
    o = {k: v.item() if isinstance(v, np.generic) else v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(map(str, set(o) - set(RUN_KEYS) - set(OPTIMIZER_KEYS) - _preset_keys()))
    if unknown:                              # a typo ('lrr') would be ignored: a run of other settings
        raise ValueError(f"overrides: unknown setting(s) {', '.join(map(repr, unknown))}; known: "
                         f"{', '.join(sorted(set(RUN_KEYS) | set(OPTIMIZER_KEYS) | _preset_keys()))}")
    if not isinstance(o.get("model_kwargs", {}), dict):
        raise ValueError(f"overrides: model_kwargs must be a dict, got {type(o['model_kwargs']).__name__}")
    mine = set(p[optimizer]) | set(OPTIMIZER_KEYS) | _preset_keys(optimizer)
    other = sorted(k for k in o if k not in mine and k not in RUN_KEYS)
    if other:                                # 'rho' for BayesBiNN: not used, but not an error before
        raise ValueError(f"overrides: {', '.join(map(repr, other))} does not apply to optimizer {optimizer!r}")
    s = {**p[optimizer], **{k: o[k] for k in o if k in mine}}
    epochs = check_int("epochs", o.get("epochs", p["epochs"]), 1)
    batch = check_int("batch_size", o.get("batch_size", p["batch_size"]), 1)
    seed = check_int("seed", o.get("seed", 0), 0)
    if check_int("recalibrate_bn", o.get("recalibrate_bn", 0)) and batch < 2:
        raise ValueError(f"--recalibrate-bn needs --batch-size >= 2 (its calibration batches have the "
                         f"run's batch size, and a batch variance needs two rows), got --batch-size {batch}")
    data, extra = load_data(dataset, root, split=p["split"], seed=seed, max_train=o.get("max_train"))
    name, kw = p["model"]
    kw = {**kw, **o.get("model_kwargs", {})}
    model = build_model(name, kw)
    if one_row_minibatch(model, data.n_train, batch):     # BatchNorm would fail after an epoch's work
        mt = o.get("max_train")
        note = (f" (--max-train {mt} less the {p['split']:.0%} validation split)" if mt else
                f" (the {dataset} training set less the {p['split']:.0%} validation split)"
                if dataset in IMAGE_DATASETS else f" (the {dataset} data set)")
        raise ValueError(minibatch_error(data.n_train, batch, batch_name="--batch-size", size_note=note,
                                         fix="--batch-size" + (" or --max-train" if dataset in IMAGE_DATASETS else "")))
    if optimizer == "adam" or p.get("binary_all"):
        kinds = {k: ("real" if optimizer == "adam" else "binary") for k in model.kinds}
    else:
        kinds = model.kinds
    steps = -(-data.n_train // batch)
    n_train = data.n_train * p.get("n_scale", 1)
    opt, sched = make_optimizer(optimizer, s, n_train=n_train, kinds=kinds, epochs=epochs,
                                steps_per_epoch=steps)
    cfg = TrainConfig(epochs=epochs, batch_size=batch, seed=seed,
                      eval_samples=check_int("eval_samples", o.get("eval_samples", p["eval_samples"])),
                      average=o.get("average", p.get("average", "prob")), quiet=quiet,
                      checkpoint_every=check_int("checkpoint_every", o.get("checkpoint_every", 1), 1),
                      eval_mean_every=check_int("eval_mean_every", o.get("eval_mean_every", 0)),
                      recalibrate_bn=check_int("recalibrate_bn", o.get("recalibrate_bn", 0)),
                      diagnostics=bool(o.get("diagnostics", True)),
                      diagnostics_every=check_int("diagnostics_every", o.get("diagnostics_every", 0)),
                      meta={"dataset": dataset, "optimizer": optimizer, "preset": preset,
                            "model": [name, kw], "settings": {k: v for k, v in s.items()},
                            "max_train": o.get("max_train")})
    tau_sched = None
    if s.get("tau_end") is not None:
        check_choice("optimizer (with tau_end)", optimizer, ("bayesbinn",))
        tau_sched = anneal_tau(s["tau"], s["tau_end"], epochs)
    return Setup(model, opt, data, LOSSES[p["loss"]], cfg, sched,
                 {"dataset": dataset, "optimizer": optimizer, "preset": preset, "epochs": epochs,
                  "batch_size": batch,
                  "seed": seed, "optimizer_settings": s, "model": [name, kw], "extra": extra,
                  "eval_samples": cfg.eval_samples, "max_train": o.get("max_train")},
                 tau_sched)


def run(dataset, optimizer, name, overrides, *, out="results", root=None, resume=False,
        stop_after=None, quiet=False, command=None, run_dir=None, write=True, log=None,
        preset="paper"):
    """One training run as ``refbinn train`` does it: build -> fit (a checkpoint every epoch) -> JSON.

    Parameters
    ----------
    dataset, optimizer : str
        Names from ``refbinn.experiments.presets.PAPER`` (see ``build``).
    name : str
        The run name; files ``out/NAME.json`` and ``out/runs/NAME/``.
    overrides : dict
        Passed to ``build`` (epochs, seed, lr, model_kwargs, ...).
    out : str
        Folder for the results JSON (and, by default, the checkpoints); default ``results``.
    root : str, optional
        The data folder (see ``load_data``).
    resume : bool
        Continue from ``run_dir/checkpoint.npz`` if it exists (``fit``).
    stop_after : int, optional
        Stop after this many epochs in this call; continue later with ``resume``.
    quiet : bool
        No progress bar or per-epoch lines.
    command : str, optional
        The command line, recorded in the result.
    run_dir : str, optional
        Checkpoint folder (default ``out/runs/NAME``).
    write : bool
        Write ``out/NAME.json`` (sweeps collect rows instead); default True.
    log : callable, optional
        ``log(str)`` for the progress lines; default print with flush.
    preset : {'paper', 'authors'}
        The settings table (see ``build``); default 'paper'. A resumed run must pass its
        checkpoint's (``config['meta']['preset']``), as ``refbinn train --resume`` does.

    Returns
    -------
    dict with name, command, settings, summary, wall_seconds_this_invocation, history
    """
    from ..io import remove_partials, write_json
    from ..io.outputs import check_output_file
    from ..train import fit
    log = log or (lambda m: print(m, flush=True))
    if write:
        check_output_file(os.path.join(out, f"{name}.json"), "the results file")    # not after training
        remove_partials(os.path.join(out, f"{name}.json"))
    setup = build(dataset, optimizer, preset=preset, overrides=overrides, root=root, quiet=quiet)
    run_dir = run_dir or os.path.join(out, "runs", name)
    log(f"{name}: {optimizer} {json.dumps(setup.settings['optimizer_settings'])}; "
        f"model {setup.settings['model']}; epochs {setup.cfg.epochs}, batch {setup.cfg.batch_size}, "
        f"seed {setup.cfg.seed}, n_train {setup.data.n_train}; checkpoints in {run_dir}")
    t0 = time.time()
    res = fit(setup.model, setup.opt, setup.data, setup.loss_fn, setup.cfg, schedule=setup.schedule,
              out_dir=run_dir, resume=resume, stop_after=stop_after, log=log,
              tau_schedule=setup.tau_schedule)
    result = {"name": name, "command": command,
              "settings": {k: v for k, v in setup.settings.items() if k != "extra"},
              "summary": res["summary"], "wall_seconds_this_invocation": time.time() - t0,
              "history": res["history"]["epochs"]}
    if write:
        write_json(os.path.join(out, f"{name}.json"), result)
    return result
