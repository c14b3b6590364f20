"""Accuracy, NLL and entropy of the mode and mean predictions (``refbinn.predict``) on one split."""
from __future__ import annotations

import numpy as np

from ..predict import predict_mean, predict_mode, predictive_entropy


def evaluate(model, opt, opt_state, bn_state, x, y, *, samples=0, rng=None, average="prob",
             batch=1000):
    """Accuracy (and NLL, mean entropy) of the mode prediction and, if ``samples`` > 0,
    of the mean prediction over ``samples`` hard weight samples."""
    out = {}
    p = predict_mode(model, opt, opt_state, bn_state, x, link="classes", batch_size=batch)   # (n, K)
    out["acc_mode"] = float(np.mean(p.argmax(1) == y))
    out["nll_mode"] = float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-300, None))))
    if samples > 0 and hasattr(opt, "sample_params"):
        pm = predict_mean(model, opt, opt_state, bn_state, x, samples, rng, average=average,
                          link="classes", batch_size=batch)
        out["acc_mean"] = float(np.mean(pm.argmax(1) == y))
        out["nll_mean"] = float(-np.mean(np.log(np.clip(pm[np.arange(len(y)), y], 1e-300, None))))
        out["entropy_mean"] = float(np.mean(predictive_entropy(pm)))
    return out
