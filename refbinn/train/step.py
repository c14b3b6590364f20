"""One training step: S forward/backward passes at the optimizer's weights, then its update::

    noise = opt.sample(state, rng_noise)          # S entries for BayesBiNN, [None] otherwise
    for n in noise:
        p = opt.forward_params(state, n)          # relaxed / binary / latent weights
        loss, grads_n, bn_state = forward+backward of the model at p
    state = opt.update(grads, state, noise, lr=lr)

The one step every caller uses: ``fit``, the golden traces (``trace.write_trace``),
the benchmarks and the torch cross-checks.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Pass(NamedTuple):
    """What one forward/backward pass of ``train_step`` saw and computed (for ``on_pass``)."""
    index: int          # j, the pass (Monte Carlo sample) number
    noise: object       # the optimizer's noise entry for this pass (None if it draws none)
    weights: dict       # opt.forward_params(state, noise)
    cache: list         # the model's per-layer caches (dropout keep masks among them)
    out: np.ndarray     # the model's output
    loss: float
    grads: dict         # d loss / d weights


def train_step(model, opt, opt_state, bn_state, x, y, loss_fn, *, rng_noise, rng_drop, lr=None,
               on_pass=None):
    """One optimizer step with all of its Monte Carlo samples::

        noise = opt.sample(state, rng_noise)
        for n in noise:  w = opt.forward_params(state, n); forward, loss, backward at w -> g
        state = opt.update([g, ...], state, noise, lr=lr)

    Returns ``(opt_state, bn_state, mean_loss, last_output)``. BatchNorm state is
    carried through the S forward passes in order (as a torch loop over samples does).
    ``on_pass(opt_state, Pass)``, if given, sees every pass before the update (the
    golden traces record from it).
    """
    noise = opt.sample(opt_state, rng_noise)
    grads, losses, out = [], [], None
    for j, n in enumerate(noise):
        p = opt.forward_params(opt_state, n)
        out, cache, bn_state = model.forward(p, x, bn_state, train=True, rng=rng_drop)
        loss, dout = loss_fn(out, y)
        _, g = model.backward(p, cache, dout)
        grads.append(g)
        losses.append(loss)
        if on_pass is not None:
            on_pass(opt_state, Pass(j, n, p, cache, out, loss, g))
    opt_state = opt.update(grads, opt_state, noise, lr=lr)
    return opt_state, bn_state, float(np.mean(losses)), out
