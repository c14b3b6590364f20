"""Learning-rate schedules: each maker returns a callable ``epoch -> lr``.

    cosine      lr_e = eta_min + (lr - eta_min) * (1 + cos(pi * t / epochs)) / 2,  t = e (or e + 1)
    step_decay  lr_e = lr * factor ** (e // every)
    geometric   lr_e = lr_start * (lr_end / lr_start) ** (e / epochs)
    milestones  lr_e = lr * factor ** #{m in at : m <= e}
    per_task    lr_e = schedule(e mod epochs_per_task)
    warmup_cosine  lr_e = lr * (e + 1) / warmup for e < warmup, then a cosine to eta_min

``e`` counts from 0 and is the epoch being trained: the training loop calls the schedule
once per epoch (a schedule stated per iteration, such as PMF's "x0.2 every 7k
iterations", is stepped every round(7000 / steps per epoch) epochs: see
``refbinn.experiments.presets``) and passes the value as ``update(..., lr=...)``;
nothing about the schedule lives in optimizer state. Values are Python floats,
so they never change the dtype of float32 arithmetic.

Each maker returns a ``functools.partial`` of the module-level closed form
(``cosine_lr`` and so on), so the settings show in its repr.
"""
from __future__ import annotations

import bisect
import functools
import math

from ..checks import check_int, check_range


# -- cosine -------------------------------------------------------------------
def cosine_lr(epoch, *, lr, epochs, eta_min=0.0, off_by_one=False):
    """eta_min + (lr - eta_min) * (1 + cos(pi * t / epochs)) / 2 with t = epoch (+1 if off_by_one).

    This is the closed form of torch's ``CosineAnnealingLR(T_max=epochs, eta_min)``
    at ``last_epoch = t``. Past t = epochs it continues the cosine (the value rises
    again), as torch's does.

    Parameters
    ----------
    epoch : int, >= 0
        The epoch being trained, from 0 (or the iteration).
    lr, epochs, eta_min, off_by_one
        As in ``cosine``.

    Returns
    -------
    float
        The learning rate.
    """
    t = check_int("epoch", epoch) + (1 if off_by_one else 0)
    return eta_min + (lr - eta_min) * (1.0 + math.cos(math.pi * t / epochs)) / 2.0


def cosine(lr, epochs, eta_min=0.0, off_by_one=False):
    """Cosine decay from ``lr`` at epoch 0 to ``eta_min`` at epoch ``epochs``.

    Parameters
    ----------
    lr : float, >= 0
    epochs : int, >= 1
        torch's ``T_max``.
    eta_min : float, >= 0
        The paper's image runs decay to ~1e-16.
    off_by_one : bool
        False: epoch e trains with torch's value at ``last_epoch = e`` (the torch
        convention: ``scheduler.step()`` at the END of each epoch), so epoch 0 uses
        ``lr`` and the value eta_min is never trained with.
        True: the authors' scripts call ``scheduler.step()`` at the START of each
        epoch, before training, so epoch e trains with the value at
        ``last_epoch = e + 1``: epoch 0 already uses less than ``lr`` and the last
        epoch (e = epochs - 1) trains with exactly ``eta_min``.

    Returns
    -------
    callable
        ``epoch -> lr`` (a ``functools.partial`` of ``cosine_lr``).
    """
    check_range("lr", lr, 0.0)
    check_range("eta_min", eta_min, 0.0)
    return functools.partial(cosine_lr, lr=float(lr), epochs=check_int("epochs", epochs, 1),
                             eta_min=float(eta_min), off_by_one=bool(off_by_one))


# -- step decay ------------------------------------------------------------------
def step_decay_lr(epoch, *, lr, every, factor):
    """lr * factor ** (epoch // every) (torch ``StepLR(step_size=every, gamma=factor)``).

    Parameters
    ----------
    epoch : int, >= 0
        The epoch being trained, from 0 (or the iteration).
    lr, every, factor
        As in ``step_decay``.

    Returns
    -------
    float
        The learning rate.
    """
    return lr * factor ** (check_int("epoch", epoch) // every)


def step_decay(lr, every, factor):
    """Multiply ``lr`` by ``factor`` every ``every`` epochs (or iterations).

    Parameters
    ----------
    lr : float, >= 0
    every : int, >= 1
    factor : float, in (0, 1]
        e.g. Bop on CIFAR: gamma 1e-4, x0.1 every 100 epochs; PMF on MNIST:
        x0.2 every 7000 iterations.

    Returns
    -------
    callable
        ``epoch -> lr`` (a ``functools.partial`` of ``step_decay_lr``).
    """
    check_range("lr", lr, 0.0)
    check_range("factor", factor, 0.0, 1.0, lo_open=True)
    return functools.partial(step_decay_lr, lr=float(lr), every=check_int("every", every, 1), factor=float(factor))


# -- geometric ----------------------------------------------------------------------
def geometric_lr(epoch, *, lr_start, lr_end, epochs):
    """lr_start * (lr_end / lr_start) ** (epoch / epochs).

    Parameters
    ----------
    epoch : int, >= 0
        The epoch being trained, from 0 (or the iteration).
    lr_start, lr_end, epochs
        As in ``geometric``.

    Returns
    -------
    float
        The learning rate.
    """
    return lr_start * (lr_end / lr_start) ** (check_int("epoch", epoch) / epochs)


def geometric(lr_start, lr_end, epochs):
    """Geometric decay: every epoch multiplies the lr by r = (lr_end / lr_start) ** (1 / epochs).

    Epoch 0 trains with ``lr_start``; the value reaches ``lr_end`` at e = ``epochs``,
    i.e. after the last epoch of a run of ``epochs`` epochs (the last trained epoch,
    e = epochs - 1, uses lr_end / r). This is torch's ``ExponentialLR(gamma=r)``
    stepped at the end of each epoch, as in the Snelson regression (1e-4 -> 1e-5
    over 5000 epochs). Computed in closed form, not by repeated multiplication.

    Parameters
    ----------
    lr_start, lr_end : float, > 0
    epochs : int, >= 1

    Returns
    -------
    callable
        ``epoch -> lr`` (a ``functools.partial`` of ``geometric_lr``).
    """
    check_range("lr_start", lr_start, 0.0, lo_open=True)
    check_range("lr_end", lr_end, 0.0, lo_open=True)
    return functools.partial(geometric_lr, lr_start=float(lr_start), lr_end=float(lr_end),
                             epochs=check_int("epochs", epochs, 1))


# -- milestones ----------------------------------------------------------------------
def milestones_lr(epoch, *, lr, at, factor):
    """lr * factor ** (number of milestones <= epoch) (torch ``MultiStepLR``).

    Parameters
    ----------
    epoch : int, >= 0
        The epoch being trained, from 0 (or the iteration).
    lr, at, factor
        As in ``milestones``; ``at`` sorted.

    Returns
    -------
    float
        The learning rate.
    """
    return lr * factor ** bisect.bisect_right(at, check_int("epoch", epoch))


def milestones(lr, at=(1500, 2500), factor=0.1):
    """Multiply ``lr`` by ``factor`` at each epoch in ``at`` (that epoch already uses the lower value).

    Parameters
    ----------
    lr : float, >= 0
    at : sequence of int, each >= 0
        Sorted here. Default: two moons, x0.1 at epochs 1500 and 2500.
    factor : float, in (0, 1]

    Returns
    -------
    callable
        ``epoch -> lr`` (a ``functools.partial`` of ``milestones_lr``).
    """
    check_range("lr", lr, 0.0)
    check_range("factor", factor, 0.0, 1.0, lo_open=True)
    if isinstance(at, (str, bytes)) or not hasattr(at, "__iter__"):
        raise ValueError(f"at must be a sequence of epochs (integers >= 0), got {at!r}")
    at = tuple(sorted(check_int("at", m) for m in at))
    return functools.partial(milestones_lr, lr=float(lr), at=at, factor=float(factor))


# -- restart per task ---------------------------------------------------------------
def per_task_lr(epoch, *, schedule, epochs_per_task):
    """schedule(epoch mod epochs_per_task).

    Parameters
    ----------
    epoch : int, >= 0
        The epoch being trained, from 0 (or the iteration).
    schedule, epochs_per_task
        As in ``per_task``.

    Returns
    -------
    float
        The learning rate.
    """
    return schedule(check_int("epoch", epoch) % epochs_per_task)


def per_task(schedule, epochs_per_task):
    """Restart ``schedule`` at the start of every task (continual learning).

    ``epoch`` counts over the whole run (task k, local epoch j: e = k * epochs_per_task + j),
    and the schedule sees j. Only the lr restarts; optimizer state (momentum, step
    count) carries over, as in the authors' continual-learning code.

    Parameters
    ----------
    schedule : callable epoch -> lr
    epochs_per_task : int, >= 1

    Returns
    -------
    callable
        ``epoch -> lr`` (a ``functools.partial`` of ``per_task_lr``).
    """
    if not callable(schedule):
        raise ValueError(f"schedule must be a callable epoch -> lr, got {schedule!r}")
    return functools.partial(per_task_lr, schedule=schedule,
                             epochs_per_task=check_int("epochs_per_task", epochs_per_task, 1))


def warmup_cosine_lr(epoch, *, lr, epochs, warmup, eta_min=0.0):
    """lr * (epoch + 1) / warmup while epoch < warmup, then the cosine from lr down to eta_min.

    Parameters
    ----------
    epoch : int, >= 0
        The epoch being trained, from 0.
    lr, epochs, warmup, eta_min
        As in ``warmup_cosine``.

    Returns
    -------
    float
        The learning rate.
    """
    epoch = check_int("epoch", epoch)
    if epoch < warmup:
        return lr * (epoch + 1) / warmup
    t = (epoch - warmup) / (epochs - warmup)
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * t)) / 2


def warmup_cosine(lr, epochs, warmup=1, eta_min=0.0):
    """Linear warm-up then cosine decay (VISPA's schedule).

        lr_e = lr * (e + 1) / warmup                                   for e < warmup
        lr_e = eta_min + (lr - eta_min) * (1 + cos(pi * (e - warmup) / (epochs - warmup))) / 2

    Parameters
    ----------
    lr : float, > 0
        The peak learning rate (reached at epoch ``warmup - 1``).
    epochs : int, >= 1
        Total epochs.
    warmup : int, 0 <= warmup < epochs
        Warm-up epochs.
    eta_min : float, >= 0
        The value the cosine reaches at e = ``epochs``.

    Returns
    -------
    callable
        ``epoch -> lr`` (a ``functools.partial`` of ``warmup_cosine_lr``).
    """
    check_range("lr", lr, 0, None, lo_open=True)
    check_range("eta_min", eta_min, 0.0)
    epochs = check_int("epochs", epochs, 1)
    return functools.partial(warmup_cosine_lr, lr=float(lr), epochs=epochs,
                             warmup=check_int("warmup", warmup, 0, epochs - 1), eta_min=float(eta_min))
