"""The training loop: epochs of minibatches, S Monte Carlo samples per step,
evaluation in mode and mean, history as JSON, atomic checkpoints and resume.

One step, for any refbinn optimizer (see refbinn/optim/base.py)::

    noise = opt.sample(state, rng_noise)          # S entries for BayesBiNN, [None] otherwise
    for n in noise:
        p = opt.forward_params(state, n)          # relaxed / binary / latent weights
        loss, grads_n, bn_state = forward+backward of the model at p
    state = opt.update(grads, state, noise, lr=schedule(epoch))

Randomness comes from three Generators spawned from the seed (data order and
augmentation, optimizer noise, dropout masks). Their states are saved in every
checkpoint, so ``resume`` continues bit-identically to an uninterrupted run.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..checks import check_choice, check_int, is_integer
from ..io import remove_partials, write_json
from ..bn_recalibration import calibration_batches
from .anneal import set_tau
from .checkpoint import load_checkpoint, save_checkpoint
from .checkpoint_check import check_resume
from .diagnostics import Diagnostics, summary_line
from .evaluate import evaluate
from .step import train_step


@dataclass
class Data:
    """Arrays of one experiment; x already normalised float, y integer labels (or targets).

    Parameters
    ----------
    x_train : ndarray, (N, ...), float
        Training inputs, in the layout the model takes ((N, D) or (N, C, H, W)).
    y_train : ndarray, (N,) or (N, ...)
        Integer class labels (or the targets ``loss_fn`` expects).
    x_val, y_val : ndarray, optional
        Validation split (None: not evaluated, and ``summarize`` has no best-validation entry).
    x_test, y_test : ndarray, optional
        Test split (None: not evaluated).
    augment : callable (x_batch, rng) -> x_batch, optional
        Applied to every training minibatch with the data stream (e.g. CIFAR-10 random
        crops and flips); None: no augmentation.
    """
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    augment: object = None          # callable (x_batch, rng) -> x_batch, or None

    @property
    def n_train(self):
        """N, the number of training examples (``len(x_train)``)."""
        return int(len(self.x_train))


@dataclass
class TrainConfig:
    """The loop's settings; saved in every checkpoint (with ``n_train``); ``resume`` refuses a
    checkpoint whose settings differ (``quiet`` and ``checkpoint_every`` excepted).

    Parameters
    ----------
    epochs : int >= 1
        Epochs in total (a resumed run continues up to this number).
    batch_size : int >= 1
        Minibatch size; an epoch has ceil(N / batch_size) steps, the last one smaller.
    seed : int, optional
        Root of every stream: ``default_rng(seed).spawn(4)`` gives, in this order, the streams
        of the initialisation (``model.init`` draws first, then ``opt.init``), the data order
        and augmentation (one permutation per epoch), the optimizer's noise and the dropout
        masks (one stream for every pass and step); evaluation draws from
        ``default_rng([seed, 1, epoch])`` with epoch counted from 0 (the history's ``epoch``
        minus 1), one Generator per epoch, the validation set's mean prediction drawing first,
        then the test set's; BatchNorm recalibration batches from ``[seed, 3, epoch]``, the
        diagnostics from ``[seed, 2, ...]``.
    eval_samples : int >= 0, optional
        C, hard weight samples for the 'mean' prediction (0: the mode only).
    eval_mean_every : int >= 0, optional
        Evaluate the mean prediction every k epochs as well as after the last (0: the last only):
        after the epochs whose history ``epoch`` is a multiple of k.
    average : {'prob', 'logits'}, optional
        Average the C samples' probabilities or their logits for the mean prediction.
    eval_batch : int >= 1, optional
        Rows per forward pass during evaluation.
    recalibrate_bn : int >= 0, optional
        K > 0: evaluate with BatchNorm statistics recomputed from K training batches (and
        also report the training's statistics as ``*_trainbn``); 0: no recalibration.
    diagnostics : bool, optional
        Record ``refbinn.train.diagnostics`` in each epoch's history.
    diagnostics_every : int >= 0, optional
        Also record the diagnostics every k steps (0: once per epoch).
    quiet : bool, optional
        No progress bar and no per-epoch lines (``log`` still reports a resume).
    checkpoint_every : int >= 1, optional
        Write ``checkpoint.npz`` and ``history.json`` every k epochs and after the last
        epoch of a call.
    meta : dict, optional
        Free-form, JSON-able facts saved with the config (builder, dataset, optimizer, preset);
        the commands that read a checkpoint of ``refbinn train`` rebuild its model from
        ``meta["model"]`` (``[name, kwargs]``) and its data from ``meta["dataset"]``.
    """
    epochs: int
    batch_size: int
    seed: int = 0
    eval_samples: int = 0           # C: hard samples for the 'mean' prediction (0: mode only)
    eval_mean_every: int = 0        # evaluate 'mean' every k epochs (0: last epoch only)
    average: str = "prob"           # 'prob' or 'logits' for the mean prediction
    eval_batch: int = 1000
    recalibrate_bn: int = 0         # K: evaluate with BatchNorm statistics from K training batches
    diagnostics: bool = True        # record refbinn.train.diagnostics in each epoch's history
    diagnostics_every: int = 0      # ... also every k steps (0: once per epoch)
    quiet: bool = False
    checkpoint_every: int = 1       # write checkpoint.npz and history.json every k epochs (and the last)
    meta: dict = field(default_factory=dict)   # free-form: builder, dataset, optimizer, preset

    def __post_init__(self):
        """ValueError naming the first setting out of its range (counts become Python ints, flags bools)."""
        for name, lo in (("epochs", 1), ("batch_size", 1), ("seed", 0), ("eval_samples", 0),
                         ("eval_mean_every", 0), ("eval_batch", 1), ("recalibrate_bn", 0),
                         ("diagnostics_every", 0), ("checkpoint_every", 1)):
            setattr(self, name, check_int(name, getattr(self, name), lo))
        check_choice("average", self.average, ("prob", "logits"))
        for name in ("diagnostics", "quiet"):        # 1 and 0 too, as before these checks
            flag = getattr(self, name)
            if not (isinstance(flag, (bool, np.bool_)) or (is_integer(flag) and flag in (0, 1))):
                raise ValueError(f"{name} must be True or False, got {flag!r}")
            setattr(self, name, bool(flag))
        if not isinstance(self.meta, dict):
            raise ValueError(f"meta must be a dict, got {type(self.meta).__name__}")


def summarize(history):
    """Test accuracy at the epoch of best validation accuracy (the paper's rule) and at the last epoch
    (with BatchNorm recalibration, also those of the training's statistics: ``*_trainbn``).

    best = argmax_e val_acc_mode[e] (the first such epoch on ties).

    Parameters
    ----------
    history : dict
        ``fit``'s history: ``"epochs"`` is a list of per-epoch records (``epoch``, ``seconds``,
        and ``val_*`` / ``test_*`` metrics where those splits exist).

    Returns
    -------
    dict
        Empty for no epochs; else ``epochs_run``, ``last`` (the last epoch's val/test
        metrics), ``test_acc_mode_last``, ``test_acc_mean_last``, ``train_seconds`` (sum of
        the epochs' seconds) and, with a validation split, ``best_val_epoch`` (from 1),
        ``val_acc_mode_best``, ``test_acc_mode_at_best_val`` (plus the ``*_trainbn``
        counterparts with BatchNorm recalibration). Missing metrics are None.
    """
    ep = history["epochs"]
    if not ep:
        return {}
    out = {"epochs_run": len(ep), "last": {k: v for k, v in ep[-1].items() if k.startswith(("test", "val"))}}
    if ep[0].get("val_acc_mode") is not None:
        best = max(range(len(ep)), key=lambda i: ep[i]["val_acc_mode"])
        out["best_val_epoch"] = ep[best]["epoch"]
        out["val_acc_mode_best"] = ep[best]["val_acc_mode"]
        out["test_acc_mode_at_best_val"] = ep[best].get("test_acc_mode")
    if ep[0].get("val_acc_mode_trainbn") is not None:     # BN recalibration: the same, without it
        best = max(range(len(ep)), key=lambda i: ep[i]["val_acc_mode_trainbn"])
        out["test_acc_mode_trainbn_at_best_val"] = ep[best].get("test_acc_mode_trainbn")
        out["test_acc_mode_trainbn_last"] = ep[-1].get("test_acc_mode_trainbn")
        out["test_acc_mean_trainbn_last"] = ep[-1].get("test_acc_mean_trainbn")
    out["test_acc_mode_last"] = ep[-1].get("test_acc_mode")
    out["test_acc_mean_last"] = ep[-1].get("test_acc_mean")
    out["train_seconds"] = float(sum(e["seconds"] for e in ep))
    return out


# -- minibatches a BatchNorm layer can train on ----------------------------------------------
def one_row_minibatch(model, n_train, batch_size):
    """True if an epoch would hand a BatchNorm layer a minibatch of one row.

    An epoch visits every training row once, in minibatches of ``batch_size`` rows and a last
    one of ``n_train % batch_size`` rows (``data.transforms.batches``, no drop_last). A
    BatchNorm layer in training mode normalises by the batch variance, which one row does not
    have (torch raises "Expected more than 1 value per channel when training"); so a model
    with BatchNorm needs batch_size >= 2 and n_train % batch_size != 1.

    Parameters
    ----------
    model : Sequential
        The network (its ``layers`` are searched for ``BatchNorm``).
    n_train : int
        Training rows per epoch.
    batch_size : int
        Rows per minibatch, >= 1.

    Returns
    -------
    bool
    """
    from ..nn import BatchNorm
    has_bn = any(isinstance(layer, BatchNorm) for layer in getattr(model, "layers", ()))
    return has_bn and (batch_size == 1 or n_train % batch_size == 1)


def minibatch_error(n_train, batch_size, *, batch_name="batch_size", size_note="", fix=""):
    """The ValueError message for ``one_row_minibatch``: the batch size, the training-set size,
    and what to change.

    Parameters
    ----------
    n_train, batch_size : int
        As ``one_row_minibatch``.
    batch_name : str
        How the caller names the batch size ('--batch-size' on the command line).
    size_note : str
        Where ``n_train`` comes from, e.g. ' (--max-train 1001 less the 10% validation split)'.
    fix : str
        The options to change; default: ``batch_name``.

    Returns
    -------
    str
    """
    which = ("every minibatch has" if batch_size == 1 else
             f"the last minibatch of each epoch has {n_train} - {n_train // batch_size}*{batch_size} =")
    return (f"{batch_name} {batch_size} with {n_train} training rows{size_note}: {which} 1 row, and "
            f"BatchNorm cannot train on one row (it has no batch variance); choose another {fix or batch_name}")


# -- the loop ----------------------------------------------------------------------------
def _check_fit_args(opt, data, loss_fn, cfg, schedule, stop_after, tau_schedule):
    """ValueError naming ``fit``'s first argument of the wrong kind, before any work."""
    from ..optim import Optimizer
    for name, value, kind in (("opt", opt, Optimizer), ("data", data, Data), ("cfg", cfg, TrainConfig)):
        if not isinstance(value, kind):
            raise ValueError(f"fit: {name} must be of type {kind.__name__}, got {type(value).__name__}")
    for name, fn in (("loss_fn", loss_fn), ("schedule", schedule), ("tau_schedule", tau_schedule),
                     ("data.augment", data.augment)):
        if not (callable(fn) or (fn is None and name != "loss_fn")):
            raise ValueError(f"fit: {name} must be a callable{'' if name == 'loss_fn' else ' or None'}, "
                             f"got {type(fn).__name__}")
    if stop_after is not None:
        check_int("stop_after", stop_after, 0)     # 0: nothing to train (continual, a stop between tasks)
    for split in ("train", "val", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if (x is None) != (y is None):
            raise ValueError(f"fit: data.x_{split} and data.y_{split} must both be given or both be None")
        if x is None:
            continue
        if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)):
            raise ValueError(f"fit: data.x_{split} and data.y_{split} must be NumPy arrays, got "
                             f"{type(x).__name__} and {type(y).__name__}")
        if x.ndim < 1 or y.ndim < 1 or len(x) != len(y) or len(x) == 0:
            raise ValueError(f"fit: data.x_{split} and data.y_{split} must have the same number of rows, "
                             f"at least 1, got shapes {x.shape} and {y.shape}")


def fit(model, opt, data, loss_fn, cfg, *, schedule=None, out_dir=None, resume=False,
        dtype=np.float32, init_state=None, log=print, stop_after=None, tau_schedule=None):
    """Train ``model`` with ``opt`` on ``data`` for ``cfg.epochs`` epochs.

    Parameters
    ----------
    model : Sequential
        The network (its ``init``, ``forward`` and ``backward``).
    opt : Optimizer
        Any refbinn optimizer (a ``Partition`` for mixed binary and real parameters); on
        resume the checkpoint's optimizer is used instead.
    data : Data
        The splits; val and test are evaluated after every epoch when present.
    loss_fn : callable (out, y) -> (loss, d loss/d out)
        E.g. ``refbinn.nn.softmax_cross_entropy`` (minibatch mean).
    cfg : TrainConfig
        Epochs, batch size, seed, evaluation and checkpoint settings.
    schedule : callable epoch -> lr (or a pair for a Partition), optional
        Epoch from 0; None: the optimizer's own lr.
    out_dir : str, optional
        Folder for ``history.json`` and ``checkpoint.npz`` (written every
        ``cfg.checkpoint_every`` epochs and after the last epoch of this call); None: no files.
    resume : bool, optional
        Continue from ``out_dir/checkpoint.npz`` if it exists (its config must match ``cfg``).
    dtype : numpy float dtype, optional
        Of the freshly initialised parameters (unused on resume or with ``init_state``).
    init_state : (opt_state, bn_state), optional
        To start from instead of a fresh init (continual learning).
    log : callable str -> None, optional
        Receives the per-epoch lines and the resume notice (default ``print``).
    stop_after : int, optional
        Stop after this many epochs in this call (an interruption: ``resume``
        continues exactly as if the run had not stopped).
    tau_schedule : callable fractional epoch -> tau, optional
        BayesBiNN temperature annealing (``refbinn.train.anneal``), set before every step.

    Returns
    -------
    dict
        ``history`` (config and per-epoch records: ``train_loss`` is the epoch's mean over
        examples of each step's loss, itself the mean of its S passes' minibatch-mean losses
        (a short last batch weighs by its rows); ``train_acc_running`` the fraction of training
        rows that the last pass's training-mode output (dropout on) classifies right;
        validation and test figures from ``refbinn.train.evaluate``, probabilities in float64
        (``refbinn.predict.class_probs``)), ``summary`` (``summarize(history)``: the test figures
        at the first epoch of highest validation accuracy of the mode, and the last epoch's),
        ``opt`` (the optimizer used), ``opt_state`` and ``bn_state`` after the last epoch,
        ``epochs_this_call`` (the epochs trained by this call: fewer than ``history`` holds
        after a resume).
    """
    from ..data.transforms import batches   # local import keeps the loop usable without data extras

    _check_fit_args(opt, data, loss_fn, cfg, schedule, stop_after, tau_schedule)
    if one_row_minibatch(model, data.n_train, cfg.batch_size):      # before any work, not after an epoch
        raise ValueError(minibatch_error(data.n_train, cfg.batch_size))
    if cfg.recalibrate_bn and cfg.batch_size < 2:
        raise ValueError(f"recalibrate_bn needs batch_size >= 2 (calibration batches of the run's "
                         f"batch size), got {cfg.batch_size}")
    ckpt_path = os.path.join(out_dir, "checkpoint.npz") if out_dir else None
    config = {**asdict(cfg), "n_train": data.n_train}
    if out_dir:
        try:                                     # the checkpoint stores it with json.dumps, after an epoch
            json.dumps(config)
        except (TypeError, ValueError) as e:
            raise ValueError(f"cfg.meta must be JSON-able (it is saved in every checkpoint): {e}") from None
    if out_dir:                                  # what a killed earlier run left half-written
        remove_partials(ckpt_path)
        remove_partials(os.path.join(out_dir, "history.json"))
    if resume and ckpt_path and os.path.exists(ckpt_path):
        ck = load_checkpoint(ckpt_path)
        check_resume(ckpt_path, ck, config, model)
        opt_state, bn_state, rngs = ck["opt_state"], ck["bn_state"], ck["rngs"]
        opt = ck["opt"]
        start, history = ck["epoch"], ck["history"]
        log(f"resumed from {ckpt_path} at epoch {start}")
    else:
        root = np.random.default_rng(cfg.seed)
        r_init, r_data, r_noise, r_drop = root.spawn(4)
        rngs = {"data": r_data, "noise": r_noise, "drop": r_drop}
        if init_state is None:
            params, bn_state = model.init(r_init, dtype)
            opt_state = opt.init(params, r_init)
        else:
            opt_state, bn_state = init_state
        start, history = 0, {"config": config, "epochs": []}

    show = not cfg.quiet and sys.stderr.isatty()
    if show:
        from tqdm.auto import tqdm
    n = data.n_train
    steps = -(-n // cfg.batch_size)
    diag = Diagnostics(model, opt, loss_fn, cfg.seed, cfg.diagnostics_every) if cfg.diagnostics else None
    end = cfg.epochs if stop_after is None else min(cfg.epochs, start + int(stop_after))
    for epoch in range(start, end):
        lr = schedule(epoch) if schedule is not None else None
        t0 = time.perf_counter()
        tot_loss = tot_correct = seen = 0
        it = batches(data.x_train, data.y_train, cfg.batch_size, rng=rngs["data"], shuffle=True)
        bar = tqdm(it, total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   leave=False, file=sys.stderr) if show else it
        if diag:
            diag.start_epoch(epoch, opt_state)
        for i, (xb, yb) in enumerate(bar):
            if data.augment is not None:
                xb = data.augment(xb, rngs["data"])
            if tau_schedule is not None:
                set_tau(opt, tau_schedule(epoch + i / steps))
            opt_state, bn_state, loss, out = train_step(
                model, opt, opt_state, bn_state, xb, yb, loss_fn,
                rng_noise=rngs["noise"], rng_drop=rngs["drop"], lr=lr)
            if diag:
                diag.step(opt_state, bn_state, xb, yb, lr)
            b = len(yb)
            tot_loss += loss * b
            seen += b
            if out.ndim == 2 and out.shape[1] > 1:
                tot_correct += int(np.sum(out.argmax(1) == yb))
            if show:
                el = time.perf_counter() - t0
                bar.set_postfix(loss=f"{tot_loss / seen:.4f}", acc=f"{tot_correct / seen:.4f}",
                                ex_s=f"{seen / el:.0f}")
        train_secs = time.perf_counter() - t0
        rec = {"epoch": epoch + 1, "lr": None if lr is None else (list(lr) if isinstance(lr, tuple) else float(lr)),
               "train_loss": tot_loss / max(seen, 1), "train_acc_running": tot_correct / max(seen, 1),
               "examples_per_s": seen / train_secs}
        do_mean = cfg.eval_samples > 0 and (
            epoch + 1 == cfg.epochs or (cfg.eval_mean_every and (epoch + 1) % cfg.eval_mean_every == 0))
        # The evaluation stream depends on (seed, epoch) only, so an evaluation never
        # depends on which earlier epochs were evaluated or where a run was resumed.
        r_eval = np.random.default_rng([cfg.seed, 1, epoch])
        calib = None if not cfg.recalibrate_bn else calibration_batches(
            data.x_train, cfg.recalibrate_bn, cfg.batch_size, np.random.default_rng([cfg.seed, 3, epoch]))
        for split, xs, ys in (("val", data.x_val, data.y_val), ("test", data.x_test, data.y_test)):
            if xs is None:
                continue
            ev = evaluate(model, opt, opt_state, bn_state, xs, ys,
                          samples=cfg.eval_samples if do_mean else 0, rng=r_eval,
                          average=cfg.average, batch=cfg.eval_batch, calibration=calib)
            rec.update({f"{split}_{k}": v for k, v in ev.items()})
        if tau_schedule is not None:
            rec["tau"] = float(tau_schedule(epoch + (steps - 1) / steps))      # the epoch's last step
        if diag:
            d, secs = diag.end_epoch(opt_state, bn_state, xb, yb, lr, rec)
            rec["diagnostics"], rec["seconds_diagnostics"] = d, secs
        rec["seconds"] = time.perf_counter() - t0
        history["epochs"].append(rec)
        if not cfg.quiet:
            msg = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in rec.items() if k not in ("lr", "diagnostics"))
            log(f"[epoch {epoch + 1}/{cfg.epochs}] {msg}")
            if diag:
                log(f"[epoch {epoch + 1}/{cfg.epochs}] "
                    f"{summary_line(rec['diagnostics'], rec['seconds_diagnostics'])}")
        # a checkpoint every k epochs and at the end of this call (the full history is
        # rewritten each time, so k > 1 saves much time on toy runs of thousands of epochs)
        if out_dir and ((epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == end):
            os.makedirs(out_dir, exist_ok=True)
            history["summary"] = summarize(history)          # current in both files (it lagged an epoch)
            save_checkpoint(ckpt_path, opt=opt, opt_state=opt_state, bn_state=bn_state, rngs=rngs,
                            epoch=epoch + 1, history=history, config=config)
            write_json(os.path.join(out_dir, "history.json"), history)
    history["summary"] = summarize(history)
    return {"history": history, "summary": history["summary"], "opt": opt,
            "opt_state": opt_state, "bn_state": bn_state, "epochs_this_call": end - start}
