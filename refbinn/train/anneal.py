"""Temperature annealing for BayesBiNN: tau lowered during training, step by step.

    tau(t) = tau_start * (tau_end/tau_start)**(t/T),   t = epoch + i/steps_per_epoch

for step i of an epoch (t is the fractional epoch at which the step starts) and T the
number of epochs: geometric from tau_start at the first step towards tau_end, which the
schedule reaches at t = T (the last step uses a value just above it).

Each step is still the paper's update with its Lemma 1 estimator, at the temperature of
that step: the estimator is that of the gradient of the relaxed objective at tau(t), so
the objective itself moves during training (a continuation method). The paper keeps
tau fixed; annealing is not in it.

``fit(..., tau_schedule=...)`` calls ``set_tau`` before every step; the optimizer's
``tau`` (a hyperparameter, like torch's ``param_groups[0]['lr']``) is changed in place
and saved with it in the checkpoint, and a resumed run sets it again from the schedule.
"""
from __future__ import annotations

import functools

from ..checks import check_int, check_range


def geometric_tau(t, *, tau_start, tau_end, epochs):
    """tau_start * (tau_end/tau_start)**(t/epochs) at fractional epoch t.

    Parameters
    ----------
    t : float >= 0
        Fractional epoch (epoch + step/steps_per_epoch).
    tau_start, tau_end : float > 0
    epochs : int >= 1

    Returns
    -------
    float
    """
    return tau_start * (tau_end / tau_start) ** (check_range("t", t, 0) / epochs)


def anneal_tau(tau_start, tau_end, epochs):
    """The callable t -> tau of the module docstring (t: fractional epoch).

    Parameters
    ----------
    tau_start, tau_end : float > 0
    epochs : int >= 1

    Returns
    -------
    functools.partial of ``geometric_tau``: t -> tau
    """
    start = float(check_range("tau_start", tau_start, 0, lo_open=True))
    end = float(check_range("tau_end", tau_end, 0, lo_open=True))
    return functools.partial(geometric_tau, tau_start=start, tau_end=end, epochs=check_int("epochs", epochs, 1))


def set_tau(opt, tau):
    """Set the temperature of BayesBiNN (alone, or the binary optimizer of a Partition).

    Parameters
    ----------
    opt : BayesBiNN or Partition
        Changed in place. ValueError for an optimizer without a temperature.
    tau : float > 0

    Returns
    -------
    opt
    """
    target = getattr(opt, "binary_opt", opt)
    if not hasattr(target, "tau"):
        raise ValueError(f"tau annealing needs an optimizer with a temperature (BayesBiNN), "
                         f"got {type(target).__name__}")
    target.tau = float(check_range("tau", tau, 0, lo_open=True))
    return opt
