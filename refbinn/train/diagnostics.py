"""Training diagnostics, recorded in the run's history (key ``diagnostics`` of each epoch).

For every optimizer, per epoch::

    flip_frac      fraction of mode weights w* = opt.params(state) whose sign differs between
                   the start and the end of the epoch (parameters whose mode is all +-1;
                   absent for Adam), in total and per parameter (``layers``)
    gap_val/test   acc_mean - acc_mode of the epoch's evaluation (when the mean was evaluated)

For BayesBiNN (alone or as the binary part of a ``Partition``), per binary parameter, on one
training batch (the epoch's last, or every K-th with ``every``), at the current state and the
S Monte Carlo samples u_j of its noise key (S = opt.samples; the u the next update uses; no
random stream is consumed)::

    w_j    = tanh((lam + delta_j)/tau)                    relaxed weights (``relaxed_sample``)
    g_j    = d loss/d w at w_j                            one forward/backward per sample
    s_j    = concrete_scale(lam, u_j, tau, N, numerics)   the Lemma 1 scale (with the factor N)
    g_hat  = (1/S) sum_j s_j*g_j                          the data term of the update
    prior  = reweight*(lam - lam0)                        the prior term

    scale_median, scale_p99, scale_max   of s_1 (the first sample) over the parameter
    scale_zero_frac                      fraction with s_1 == 0 (the scale underflowed)
    active_frac                          fraction with |lr*g_hat| > RTOL*max(|lam|, 1):
                                         the data term moves lam by more than a millionth of
                                         its size (of 1 when |lam| < 1), i.e. by about 8
                                         float32 ulps or more; the rest is negligible
    data_rms, prior_rms                  sqrt(mean(g_hat**2)), sqrt(mean(prior**2))
    data_over_prior                      data_rms / prior_rms (inf if prior_rms = 0)
    data_abs_median, prior_abs_median    medians of |g_hat| and |prior|
    ratio_median                         median over the weights with prior != 0 of
                                         |g_hat| / |prior| (inf if none): the typical weight's
                                         data-to-prior ratio, which a few huge |lam| (and so
                                         huge prior terms) cannot swamp as they do the RMS
    lam_abs_median, lam_abs_p99, lam_abs_max   of |lam| (a rare huge step leaves a huge |lam|)

plus ``lr`` and ``tau`` of that moment. S = 0 (the point estimate): g_hat = N*g at tanh(lam),
no scale. The totals over parameters (``all``) weight each parameter by its size (fractions,
RMS); the quantiles (of s and of abs(lam)) are the largest over parameters (p99, max) and the size-weighted
median's stand-in, the median of the per-parameter medians.

The cost: S forward/backward passes on one batch and a few NumPy passes over lam per
record (``seconds_diagnostics`` in the epoch's history record, next to ``seconds``);
nothing here touches the training's random streams,
BatchNorm state or optimizer state, so a run is bit-identical with diagnostics on or off.
"""
from __future__ import annotations

import time

import numpy as np

from ..checks import check_int
from ..kernels.philox import fill_uniform
from ..optim._bayesbinn_kernels import concrete_scale_fused
from ..optim.bayesbinn import BayesBiNN, concrete_scale
from ..optim.partition import Partition

RTOL = 1e-6        # |lr*g_hat| above RTOL*max(|lam|, 1) counts as a non-negligible step


def _bayes_part(opt, state):
    """(BayesBiNN, its state, the other optimizer's params) or (None, None, None)."""
    if isinstance(opt, BayesBiNN):
        return opt, state, {}
    if isinstance(opt, Partition) and isinstance(opt.binary_opt, BayesBiNN):
        return opt.binary_opt, state.binary, opt.real_opt.params(state.real)
    return None, None, None


def _binary_lr(opt, lr):
    if isinstance(lr, (tuple, list)):           # a Partition's (binary_lr, real_lr); either may be None
        lr = lr[0]
    return getattr(opt, "lr", None) if lr is None else lr


def lemma1_terms(bb, state, model, bn_state, x, y, loss_fn, rng, real_params=None):
    """The data and prior terms of one BayesBiNN update on batch (x, y), at the S samples of the
    state's own noise key (``bb.sample(state)``: those of the update at this state), one
    parameter at a time (so that only one parameter's float64 temporaries are alive). The
    weights and scales come from the optimizer's own paths (fused or reference): the same bits.

    ``bn_state`` is only read: the training-mode forward normalises by batch statistics
    and the running statistics it returns are dropped.

    Parameters
    ----------
    bb : BayesBiNN
    state : BayesBiNNState
    model : Sequential
    bn_state : dict
    x, y : ndarrays
        One training batch.
    loss_fn : callable (out, y) -> (loss, dout)
    rng : numpy.random.Generator
        Draws the dropout masks.
    real_params : dict, optional
        The other optimizer's parameters (a Partition), merged into the forward weights.

    Yields
    ------
    (name, lam, s_1 or None, g_hat, prior): g_hat and prior in float64, shape of lam
    """
    lam = state.lam
    keys = bb.sample(state)                                # [None] for S = 0
    grads = []
    for n in keys:
        w = bb.forward_params(state, n)                    # the optimizer's own (fused) weights
        p = {**w, **(real_params or {})}
        out, cache, _ = model.forward(p, x, bn_state, train=True, rng=rng)
        _, dout = loss_fn(out, y)
        grads.append(model.backward(p, cache, dout, input_grad=False)[1])
    for k, v in lam.items():
        acc, s_first = None, None
        scale = concrete_scale_fused if bb._fused(v) else concrete_scale      # the same bits
        for n, g in zip(keys, grads):
            if n is None:
                term = bb.N * g[k].astype(np.float64)
            else:
                mu = state.mu[k] if bb.numerics == "official" else None
                u = fill_uniform(n.key, n.sample, k, v.shape, v.dtype)   # refbinn.noise.uniform's bits
                s = scale(v, u, bb.tau, bb.N, bb.numerics, mu)
                s_first = s if s_first is None else s_first
                term = s.astype(np.float64) * g[k]
            acc = term if acc is None else acc + term
        lam0 = bb.lam0[k] if isinstance(bb.lam0, dict) else bb.lam0
        prior = bb.reweight * (v.astype(np.float64) - np.asarray(lam0, dtype=np.float64))
        yield k, v, s_first, acc / len(keys), prior


def layer_stats(lam, s, g_hat, prior, lr):
    """The per-parameter numbers of the module docstring.

    Parameters
    ----------
    lam : ndarray
    s : ndarray of lam's shape, or None (S = 0: no scale)
    g_hat, prior : ndarrays of lam's shape
        The data and prior terms of the update.
    lr : float or None
        The step size (None: no active_frac).

    Returns
    -------
    dict name -> float (``size`` an int)
    """
    lam64 = np.abs(lam.astype(np.float64))
    lam_med, lam_p99 = np.quantile(lam64, [0.5, 0.99])
    out = {"size": int(lam.size), "lam_abs_median": float(lam_med), "lam_abs_p99": float(lam_p99),
           "lam_abs_max": float(np.max(lam64))}
    if s is not None:
        med, p99 = np.quantile(s, [0.5, 0.99])
        out.update(scale_median=float(med), scale_p99=float(p99), scale_max=float(np.max(s)),
                   scale_zero_frac=float(np.mean(s == 0)))
    if lr is not None:
        out["active_frac"] = float(np.mean(np.abs(lr * g_hat) > RTOL * np.maximum(lam64, 1.0)))
    data_rms = float(np.sqrt(np.mean(g_hat * g_hat)))
    prior_rms = float(np.sqrt(np.mean(prior * prior)))
    out.update(data_rms=data_rms, prior_rms=prior_rms,
               data_over_prior=data_rms / prior_rms if prior_rms > 0 else float("inf"))
    a_data, a_prior = np.abs(g_hat), np.abs(prior)
    nz = a_prior > 0
    out.update(data_abs_median=float(np.median(a_data)), prior_abs_median=float(np.median(a_prior)),
               ratio_median=float(np.median(a_data[nz] / a_prior[nz])) if nz.any() else float("inf"))
    return out


def _totals(layers):
    """Size-weighted fractions and RMS over parameters; the largest p99/max; median of medians."""
    sizes = np.array([v["size"] for v in layers.values()], dtype=np.float64)
    tot = {}
    for key in ("active_frac", "scale_zero_frac", "flip_frac"):
        vals = [v.get(key) for v in layers.values()]
        if all(x is not None for x in vals):
            tot[key] = float(np.dot(sizes, vals) / sizes.sum())
    for key in ("data_rms", "prior_rms"):
        vals = [v.get(key) for v in layers.values()]
        if all(x is not None for x in vals):
            tot[key] = float(np.sqrt(np.dot(sizes, np.square(vals)) / sizes.sum()))
    if "data_rms" in tot:
        tot["data_over_prior"] = tot["data_rms"] / tot["prior_rms"] if tot["prior_rms"] > 0 else float("inf")
    for key, fn in (("scale_p99", max), ("scale_max", max), ("scale_median", np.median),
                    ("lam_abs_p99", max), ("lam_abs_max", max), ("lam_abs_median", np.median),
                    ("data_abs_median", np.median), ("prior_abs_median", np.median),
                    ("ratio_median", np.median)):
        vals = [v[key] for v in layers.values() if key in v]
        if vals:
            tot[key] = float(fn(vals))
    return tot


def mode_signs(opt, state):
    """The signs of the mode weights w* = opt.params(state) whose values are all +-1.

    Parameters
    ----------
    opt : Optimizer
    state : its state

    Returns
    -------
    dict name -> bool ndarray (w* < 0)
    """
    out = {}
    for k, v in opt.params(state).items():
        v = np.asarray(v)
        if np.all(np.abs(v) == 1):
            out[k] = np.signbit(v)
    return out


class Diagnostics:
    """What ``fit`` calls: ``start_epoch``, ``step`` after every step, ``end_epoch``.

    Parameters
    ----------
    model : Sequential
    opt : Optimizer
    loss_fn : callable (out, y) -> (loss, dout)
    seed : int
        The diagnostics' own stream is ``default_rng([seed, 2, epoch, k])``.
    every : int >= 0
        Also record the BayesBiNN terms every ``every`` steps of an epoch (0: only at its end).
    """

    def __init__(self, model, opt, loss_fn, seed=0, every=0):
        self.model, self.opt, self.loss_fn = model, opt, loss_fn
        self.seed, self.every = check_int("seed", seed), check_int("every", every)
        self._signs, self._steps, self._epoch, self._n, self._seconds = {}, [], 0, 0, 0.0

    def start_epoch(self, epoch, opt_state):
        """Remember the mode's signs at the epoch's start.

        Parameters
        ----------
        epoch : int
            From 0; seeds the diagnostics' stream.
        opt_state : the optimizer's state
        """
        t0 = time.perf_counter()
        self._epoch, self._n, self._steps = epoch, 0, []
        self._signs = mode_signs(self.opt, opt_state)
        self._seconds = time.perf_counter() - t0

    def terms(self, opt_state, bn_state, x, y, lr, k):
        """The BayesBiNN record on batch (x, y).

        Parameters
        ----------
        opt_state, bn_state : the current states
        x, y : ndarrays, one training batch
        lr : float, tuple or None
            The step size of the epoch (a pair for a Partition; None: the optimizer's own).
        k : int
            The step within the epoch (0 at its end): seeds the stream.

        Returns
        -------
        dict (lr, tau, all, layers), or None for an optimizer other than BayesBiNN
        """
        bb, st, real = _bayes_part(self.opt, opt_state)
        if bb is None:
            return None
        rng = np.random.default_rng([self.seed, 2, self._epoch, k])
        lr_b = _binary_lr(bb, lr)
        layers = {name: layer_stats(*t, lr_b) for name, *t in
                  lemma1_terms(bb, st, self.model, bn_state, x, y, self.loss_fn, rng, real)}
        return {"lr": lr_b, "tau": bb.tau, "all": _totals(layers), "layers": layers}

    def step(self, opt_state, bn_state, x, y, lr):
        """After each training step: every ``every`` steps, record the terms on this batch.

        Parameters
        ----------
        opt_state, bn_state : the states after the step
        x, y : ndarrays, the step's batch
        lr : float, tuple or None
        """
        self._n += 1
        if self.every and self._n % self.every == 0:
            t0 = time.perf_counter()
            rec = self.terms(opt_state, bn_state, x, y, lr, self._n)
            if rec is not None:
                self._steps.append({"step": self._n, **rec})
            self._seconds += time.perf_counter() - t0

    def end_epoch(self, opt_state, bn_state, x, y, lr, rec):
        """The epoch's diagnostics.

        Parameters
        ----------
        opt_state, bn_state : the states at the epoch's end
        x, y : ndarrays, the epoch's last batch
        lr : float, tuple or None
        rec : dict
            The epoch's history record (its evaluation gives the mode-mean gap).

        Returns
        -------
        (dict, float): the diagnostics and the seconds they took in this epoch
        """
        t0 = time.perf_counter()
        out = self.terms(opt_state, bn_state, x, y, lr, 0) or {"layers": {}}
        after = mode_signs(self.opt, opt_state)
        flips = {k: float(np.mean(after[k] != v)) for k, v in self._signs.items() if k in after}
        for k, f in flips.items():
            out["layers"].setdefault(k, {"size": int(after[k].size)})["flip_frac"] = f
        if flips:
            sizes = np.array([after[k].size for k in flips], dtype=np.float64)
            out.setdefault("all", {})["flip_frac"] = float(np.dot(sizes, list(flips.values())) / sizes.sum())
        for split in ("val", "test"):
            if rec.get(f"{split}_acc_mean") is not None:
                out[f"gap_{split}"] = rec[f"{split}_acc_mean"] - rec[f"{split}_acc_mode"]
        if self._steps:
            out["steps"] = self._steps
        return out, self._seconds + time.perf_counter() - t0


def summary_line(d, seconds=0.0):
    """A short text for the epoch's log line.

    Parameters
    ----------
    d : dict
        What ``Diagnostics.end_epoch`` returned.
    seconds : float

    Returns
    -------
    str
    """
    a = d.get("all", {})
    parts = [f"{k}={a[k]:.4g}" for k in ("flip_frac", "active_frac", "scale_median", "scale_p99",
                                          "data_over_prior") if k in a]
    parts += [f"{k}={d[k]:+.4f}" for k in ("gap_val", "gap_test") if k in d]
    return "diag: " + " ".join(parts) + f" ({seconds:.2f}s)"
