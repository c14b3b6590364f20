"""Accuracy, NLL and entropy of the mode and mean predictions (``refbinn.predict``) on one split."""
from __future__ import annotations

import copy

import numpy as np

from ..bn_recalibration import recalibrator
from ..checks import check_int
from ..predict import predict_mean, predict_mode, predictive_entropy


def _scores(p, y):
    if y.size and not (0 <= y.min() and y.max() < p.shape[1]):
        raise ValueError(f"evaluate: label {y.min() if y.min() < 0 else y.max()} is outside [0, {p.shape[1]})")
    return (float(np.mean(p.argmax(1) == y)),
            float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-300, None)))))


def evaluate(model, opt, opt_state, bn_state, x, y, *, samples=0, rng=None, average="prob",
             batch=1000, calibration=None):
    """Accuracy (and NLL, mean entropy) of the mode prediction and, if ``samples`` > 0,
    of the mean prediction over ``samples`` hard weight samples.

    ``calibration`` (a list of training batches, ``bn_recalibration.calibration_batches``):
    every evaluated network (the mode, each sample) gets BatchNorm statistics recomputed
    on these batches (``bn_recalibration.recalibrate_bn``), and the keys acc_mode, nll_mode,
    acc_mean, ... report that; the same networks with the training's running statistics
    ``bn_state`` are reported as acc_mode_trainbn, nll_mode_trainbn, acc_mean_trainbn,
    nll_mean_trainbn (the mean over the same weight samples).

    Parameters
    ----------
    model : Sequential
    opt : Optimizer
    opt_state, bn_state : its state and the BatchNorm state
    x, y : ndarrays, (n, ...) and (n,)
    samples : int >= 0
        C, hard weight samples for the mean prediction (0: mode only).
    rng : numpy.random.Generator
        Draws the weight samples.
    average : {'prob', 'logits'}
    batch : int >= 1
        Rows per forward pass.
    calibration : list of ndarrays, optional

    Returns
    -------
    dict name -> float
    """
    check_int("samples", samples, 0)
    y = np.asarray(y)
    if y.dtype.kind not in "iu" or y.shape != (len(x),):
        raise ValueError(f"evaluate: y must be integer class labels of shape ({len(x)},) (one per row of x), "
                         f"got shape {y.shape} and dtype {y.dtype}")
    if calibration is not None and not isinstance(calibration, (list, tuple)):
        raise ValueError(f"evaluate: calibration must be None or a list of input batches, "
                         f"got {type(calibration).__name__}")
    out = {}
    recal = None if calibration is None else recalibrator(model, calibration, bn_state)
    variants = [("", recal)] + ([("_trainbn", None)] if recal is not None else [])
    for suffix, bn_for in variants:
        p = predict_mode(model, opt, opt_state, bn_state, x, link="classes", batch_size=batch,
                         bn_state_for=bn_for)                                          # (n, K)
        out[f"acc_mode{suffix}"], out[f"nll_mode{suffix}"] = _scores(p, y)
    if samples > 0 and hasattr(opt, "sample_params"):
        rng0 = copy.deepcopy(rng)              # both variants see the same weight samples
        for suffix, bn_for in variants:
            r = rng if suffix == variants[-1][0] else copy.deepcopy(rng0)
            pm = predict_mean(model, opt, opt_state, bn_state, x, samples, r, average=average,
                              link="classes", batch_size=batch, bn_state_for=bn_for)
            out[f"acc_mean{suffix}"], out[f"nll_mean{suffix}"] = _scores(pm, y)
            if not suffix:
                out["entropy_mean"] = float(np.mean(predictive_entropy(pm)))
    return out
