"""One training step: S forward/backward passes at the optimizer's weights, then its update::

    noise = opt.sample(state, rng_noise)          # S entries for BayesBiNN, [None] otherwise
    for n in noise:
        p = opt.forward_params(state, n)          # relaxed / binary / latent weights
        loss, grads_n, bn_state = forward+backward of the model at p
    state = opt.update(grads, state, noise, lr=lr, weights=[p, ...])

The one step every caller uses: ``fit``, the golden traces (``trace.write_trace``),
the benchmarks and the torch cross-checks. ``update`` is handed the weights of
every pass (``weights=``): PMF's step needs its soft weight again and takes it
from there instead of computing it a second time (see ``Optimizer.update``).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np


class Pass(NamedTuple):
    """What one forward/backward pass of ``train_step`` saw and computed (for ``on_pass``).

    Attributes
    ----------
    index : int
        j, the pass (Monte Carlo sample) number, from 0.
    noise : object
        The optimizer's noise entry for this pass (None if it draws none).
    weights : dict name -> ndarray
        ``opt.forward_params(state, noise)``, the weights this pass used.
    cache : list
        The model's per-layer caches (dropout keep masks among them).
    out : ndarray
        The model's output on the minibatch.
    loss : float
        ``loss_fn``'s value at ``out``.
    grads : dict name -> ndarray
        d loss / d weights, keyed like ``weights``.
    """
    index: int
    noise: object
    weights: dict
    cache: list
    out: np.ndarray
    loss: float
    grads: dict


def train_step(model, opt, opt_state, bn_state, x, y, loss_fn, *, rng_noise, rng_drop, lr=None,
               on_pass=None):
    """One optimizer step with all of its Monte Carlo samples::

        noise = opt.sample(state, rng_noise)
        for n in noise:  w = opt.forward_params(state, n); forward, loss, backward at w -> g
        state = opt.update([g, ...], state, noise, lr=lr, weights=[w, ...])

    BatchNorm state is carried through the S forward passes in order (as a torch loop
    over samples does).

    Parameters
    ----------
    model : Sequential
        The network (``forward`` in training mode, then ``backward``).
    opt : Optimizer
        Supplies the noise, the weights of each pass and the update.
    opt_state : NamedTuple
        The optimizer's state before the step (not modified).
    bn_state : dict name -> ndarray
        BatchNorm running statistics before the step.
    x : ndarray, (B, ...)
        The minibatch's inputs.
    y : ndarray, (B,) or (B, ...)
        Its labels or targets, as ``loss_fn`` takes them.
    loss_fn : callable (out, y) -> (loss, d loss/d out)
        Minibatch-mean loss and its gradient (e.g. ``softmax_cross_entropy``).
    rng_noise : numpy.random.Generator
        The optimizer's noise stream (``opt.sample``).
    rng_drop : numpy.random.Generator
        The dropout masks' stream.
    lr : float or pair, optional
        This step's learning rate (a pair for a Partition); None: the optimizer's own.
    on_pass : callable (opt_state, Pass) -> None, optional
        Sees every pass before the update (the golden traces record from it).

    Returns
    -------
    opt_state : NamedTuple
        The state after ``opt.update``.
    bn_state : dict name -> ndarray
        The running statistics after the S passes.
    mean_loss : float
        The mean of the S passes' losses.
    last_output : ndarray
        The model's output in the last pass.
    """
    if not (isinstance(bn_state, dict) or isinstance(bn_state, Mapping)):
        raise ValueError(f"train_step: bn_state must be a dict (Sequential.init's second result), "
                         f"got {type(bn_state).__name__}")
    if on_pass is not None and not callable(on_pass):
        raise ValueError(f"train_step: on_pass must be None or a callable, got {type(on_pass).__name__}")
    noise = opt.sample(opt_state, rng_noise)
    grads, weights, losses, out = [], [], [], None
    for j, n in enumerate(noise):
        p = opt.forward_params(opt_state, n)
        weights.append(p)
        out, cache, bn_state = model.forward(p, x, bn_state, train=True, rng=rng_drop)
        loss, dout = loss_fn(out, y)
        _, g = model.backward(p, cache, dout, input_grad=False)   # d loss/d x is not needed
        grads.append(g)
        losses.append(loss)
        if on_pass is not None:
            on_pass(opt_state, Pass(j, n, p, cache, out, loss, g))
    opt_state = opt.update(grads, opt_state, noise, lr=lr, weights=weights)
    return opt_state, bn_state, float(np.mean(losses)), out
