"""Continual learning on permuted MNIST with BayesBiNN (spec section 9).

For task t > 1 the prior natural parameter is the posterior of task t-1
(lam0 <- lam), versus lam0 = 0 for every task. As in the authors' code the
learning-rate schedule restarts per task while the momentum and the step
counter carry over. The result is an accuracy matrix A[t, k]: accuracy on
task k after training task t (k <= t; NaN above the diagonal).

``preset`` picks ``refbinn.experiments.presets.CONTINUAL[preset]``: 'paper' (torch's
BatchNorm defaults, cosine from lr to 0 stepped after each epoch, probabilities averaged,
permutations from perm_seed 0 whatever the seed) or 'authors' (their
main_permute_mnist_CL.py: BatchNorm momentum 0.15 and eps 1e-4, cosine stepped before each
epoch to 1e-16, logits averaged, permutations from ``RandomState(seed)``).
"""
from __future__ import annotations

import os
import re
import shutil

import numpy as np

from .. import models
from ..checks import check_choice, check_int
from ..train import schedules
from ..nn.losses import softmax_cross_entropy
from ..optim.bayesbinn import BayesBiNN
from ..train import Data, TrainConfig, evaluate, fit
from ..train.loop import minibatch_error, one_row_minibatch
from .presets import CONTINUAL


def run_continual(x_train, y_train, x_test, y_test, *, tasks=5, epochs=100, batch_size=100, lr=1e-3,
                  tau=1e-2, lam_init=10.0, test_samples=100, prior="posterior", seed=0,
                  numerics="official", quiet=True, log=print, perm_seed=None, reweight=1.0,
                  preset="paper", out_dir=None, resume=False, stop_after=None):
    """Train ``tasks`` permuted-MNIST tasks in sequence; return the accuracy matrix and timings.

    With ``out_dir``, task t keeps ``fit``'s checkpoint (every epoch) in ``out_dir/task<t>/``;
    ``resume`` continues from those: a finished task is loaded, not trained again, and every
    evaluation is run again in order (they share one stream), so a run stopped anywhere and
    resumed gives the bits of an uninterrupted one. A task that starts afresh removes the
    folders of the tasks after it: they belong to another run.

    ``prior`` is ``'posterior'`` (lam0 = previous task's lam) or ``'zero'`` (lam0 = 0).
    Accuracy uses the mean prediction over ``test_samples`` hard samples (mode too).
    ``reweight`` multiplies the prior term reweight*(lam - lam0) of every update.
    ``diagnostics`` in the result: per task, the training diagnostics' totals of its last
    epoch (``refbinn.train.diagnostics``: data_over_prior, flip_frac, ...).

    Each task t trains a fresh ``BayesBiNN`` (beta = 0, S = 1, N = len(x_train)) on the
    inputs permuted by permutation t, starting from the previous task's optimizer and
    BatchNorm state, with a cosine learning-rate schedule over ``epochs`` (the preset's).

    Parameters
    ----------
    x_train : numpy.ndarray, float, (N, D)
        Flattened, normalised training images (D = 784 for MNIST).
    y_train : numpy.ndarray, int64, (N,)
        Training labels in [0, 10).
    x_test : numpy.ndarray, float, (N_test, D)
        Flattened, normalised test images (x_train's D), permuted per task like the training images.
    y_test : numpy.ndarray, int64, (N_test,)
        Test labels.
    tasks : int
        T >= 1, the number of permutations (tasks) trained in sequence; default 5.
    epochs : int
        Epochs per task, >= 1; default 100.
    batch_size : int
        Minibatch size, >= 1; default 100.
    lr : float
        BayesBiNN learning rate, > 0, the start of each task's cosine schedule; default 1e-3.
    tau : float
        BayesBiNN temperature, > 0; default 1e-2.
    lam_init : float
        The magnitude of lambda at the first task's initialisation, > 0; default 10.
    test_samples : int
        C >= 1, hard weight samples of the mean prediction; default 100.
    prior : {'posterior', 'zero'}
        lam0 of task t > 1: the posterior lambda after task t - 1, or 0.
    seed : int
        >= 0; task t (from 1) trains with ``TrainConfig(seed=seed + t - 1)``; the evaluation's
        weight samples come from one ``np.random.default_rng(seed + 1000)`` per call (per
        prior), shared: after task t it evaluates tasks 1..t in order, drawing as it goes.
    numerics : {'exact', 'official', 'exact-clipped'}
        BayesBiNN numerics (``refbinn.optim.bayesbinn.NUMERICS``); default 'official', as
        ``refbinn continual`` and the paper (with 'exact' at tau = 1e-2 and lambda = +-10 the
        Lemma 1 scale underflows to 0 and the tasks do not train).
    quiet : bool
        No progress bar or per-epoch lines; default True.
    log : callable
        ``log(str)``, receives the per-task accuracy lines (and ``fit``'s lines); default print.
    perm_seed : int, optional
        Seed of the task permutations, >= 0; default None: the preset's, 0 under 'paper'
        (``refbinn.data.permuted_mnist_tasks``, the same tasks whatever ``seed``) and ``seed``
        under 'authors' (``refbinn.data.legacy_pixel_permutations``).
    reweight : float
        Weight of the prior term reweight*(lam - lam0), >= 0; default 1 (the paper).
    preset : {'paper', 'authors'}
        BatchNorm momentum and eps, the cosine schedule, the mean prediction's averaging and
        the permutations (``refbinn.experiments.presets.CONTINUAL``); default 'paper'.
    out_dir : str, optional
        Folder for the tasks' checkpoints (``task1/``, ``task2/``, ...); None: no files.
    resume : bool
        Continue from the checkpoints in ``out_dir``; their settings must be these (``fit``).
    stop_after : int >= 0, optional
        Stop after this many training epochs in this call (counted over the tasks); continue
        later with ``resume``.

    Returns
    -------
    dict
        ``prior``; ``acc_mean`` and ``acc_mode``: the (T, T) accuracy matrices A[t][k] as
        lists (NaN above the diagonal; rows of tasks not finished are NaN); ``tasks_done``;
        ``epochs_this_call``: the epochs trained by this call (all tasks);
        ``seconds_per_task``: the training seconds of each finished task, summed over the calls
        that trained it; ``diagnostics`` (one dict or None per finished task); ``settings``: the
        arguments above.
    """
    from ..data import legacy_pixel_permutations, permuted_mnist_tasks
    if prior not in ("posterior", "zero"):
        raise ValueError(f"prior must be 'posterior' or 'zero', got {prior!r}")
    c = CONTINUAL[check_choice("preset", preset, tuple(CONTINUAL))]
    tasks, batch_size = check_int("tasks", tasks, 1), check_int("batch_size", batch_size, 1)
    test_samples, seed = check_int("test_samples", test_samples, 1), check_int("seed", seed, 0)
    if perm_seed is not None:
        perm_seed = check_int("perm_seed", perm_seed, 0)
    if stop_after is not None:
        stop_after = check_int("stop_after", stop_after, 0)
    x_train, x_test = np.asarray(x_train), np.asarray(x_test)
    if x_train.ndim != 2 or len(x_train) < 1:    # the permutations are of x_train's columns
        raise ValueError(f"x_train must be (N, D) with N >= 1, got shape {x_train.shape}")
    if x_test.shape[1:] != x_train.shape[1:]:     # the test images are permuted by the same pixels
        raise ValueError(f"x_test must have x_train's columns: x_train has shape {x_train.shape}, "
                         f"x_test {x_test.shape}")
    if c["permutations"] == "seeded":         # the authors': np.random.seed(seed), one draw per task
        perm_seed = seed if perm_seed is None else perm_seed
        perms = legacy_pixel_permutations(x_train.shape[1], tasks, perm_seed)  # (tasks, 784)
    else:
        perm_seed = 0 if perm_seed is None else perm_seed
        perms = permuted_mnist_tasks(x_train.shape[1], tasks, seed=perm_seed)  # (tasks, 784)
    model = models.mlp_continual(bn_momentum=c["bn_momentum"], bn_eps=c["bn_eps"])
    n = len(x_train)
    if one_row_minibatch(model, n, batch_size):         # BatchNorm would fail after a whole epoch
        raise ValueError(minibatch_error(n, batch_size, batch_name="batch_size",
                                         size_note=" (x_train; --max-train on the command line)",
                                         fix="--max-train (or batch_size)"))
    settings = dict(tasks=tasks, epochs=epochs, batch_size=batch_size, lr=lr, tau=tau, lam_init=lam_init,
                    test_samples=test_samples, seed=seed, numerics=numerics, perm_seed=perm_seed,
                    reweight=reweight, preset=preset)
    acc_mean = np.full((tasks, tasks), np.nan)
    acc_mode = np.full((tasks, tasks), np.nan)
    state, lam0, seconds, diags, done, trained = None, 0.0, [], [], 0, 0
    rng_eval = np.random.default_rng(seed + 1000)
    for t in range(tasks):
        opt = BayesBiNN(lr=lr, beta=0.0, tau=tau, samples=1, N=n, lam_init=lam_init,
                        lam0=lam0, numerics=numerics, reweight=reweight)
        data = Data(x_train[:, perms[t]], y_train)
        # the whole run's settings in every task's checkpoint: a resume with others is refused
        cfg = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed + t, quiet=quiet,
                          meta={"continual": {**settings, "prior": prior, "task": t + 1}})
        task_dir = None if out_dir is None else os.path.join(out_dir, f"task{t + 1}")
        if task_dir is not None and not (resume and os.path.exists(os.path.join(task_dir, "checkpoint.npz"))):
            _remove_later_tasks(out_dir, t + 1)
        res = fit(model, opt, data, softmax_cross_entropy, cfg,
                  schedule=schedules.cosine(lr, epochs, eta_min=c["eta_min"], off_by_one=c["off_by_one"]),
                  init_state=state, log=log, out_dir=task_dir, resume=resume,
                  stop_after=None if stop_after is None else stop_after - trained)
        history, trained = res["history"]["epochs"], trained + res["epochs_this_call"]
        if len(history) < epochs:                       # stopped inside this task
            break
        seconds.append(float(sum(rec["seconds"] for rec in history)))
        state = (res["opt_state"], res["bn_state"])
        diags.append(res["history"]["epochs"][-1].get("diagnostics", {}).get("all"))
        for k in range(t + 1):
            ev = evaluate(model, opt, state[0], state[1], x_test[:, perms[k]], y_test,
                          samples=test_samples, rng=rng_eval, average=c["average"])
            acc_mean[t, k] = ev.get("acc_mean", np.nan)
            acc_mode[t, k] = ev["acc_mode"]
        log(f"[{prior}] after task {t + 1}: mean acc per task "
            + " ".join(f"{a:.4f}" for a in acc_mean[t, :t + 1]))
        if prior == "posterior":
            lam0 = {k: v.copy() for k, v in res["opt_state"].lam.items()}
        done = t + 1
    return {"prior": prior, "acc_mean": acc_mean.tolist(), "acc_mode": acc_mode.tolist(),
            "tasks_done": done, "epochs_this_call": trained, "seconds_per_task": seconds,
            "diagnostics": diags, "settings": settings}


def task_folders(out_dir):
    """The task folders a continual run keeps in ``out_dir``: {t: ``out_dir/task<t>``}.

    Parameters
    ----------
    out_dir : str
        A prior's checkpoint folder (``run_continual``'s ``out_dir``); missing: none.

    Returns
    -------
    dict int -> str
    """
    if not os.path.isdir(out_dir):
        return {}
    return {int(m.group(1)): os.path.join(out_dir, d) for d in sorted(os.listdir(out_dir))
            if (m := re.fullmatch(r"task([0-9]+)", d)) and os.path.isdir(os.path.join(out_dir, d))}


def _remove_later_tasks(out_dir, task):
    """Remove ``out_dir/task<k>/`` for k > ``task``: left by another run once ``task`` starts afresh."""
    for k, path in task_folders(out_dir).items():
        if k > task:
            shutil.rmtree(path)
