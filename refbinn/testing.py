"""Gradient checking: random-projection VJP checks with central differences.

For a function f with Jacobian J at x and random directions u (output) and v
(input), the backward pass gives <J^T u, v> and central differences give

    <u, J v>  ~=  <u, (f(x + eps v) - f(x - eps v)) / (2 eps)>

The two agree to O(eps^2) (plus rounding), so in float64 with eps ~ 1e-6 a
relative difference above ~1e-6 means the backward pass is wrong. This is the
check of autograd's ``check_vjp``, written for refbinn's layer protocol.
"""
from __future__ import annotations

import numpy as np


class GradientCheckError(AssertionError):
    """A backward pass disagrees with central differences: ``|fd - an| > atol + rtol * max(|fd|, |an|)``.

    An ``AssertionError``, so that pytest reports it as a failed check; the message names
    the tensor and both numbers <u, J v> (fd) and <J^T u, v> (an).
    """


def check_vjp(f, vjp, x, *, name="x", eps=1e-6, rtol=1e-6, atol=1e-12, rng=None):
    """Check a hand-written VJP against central differences along a random direction.

    Parameters
    ----------
    f : callable
        ``f(x) -> y`` (array or scalar).
    vjp : callable
        ``vjp(u) -> J^T u``, with ``u`` shaped like ``y``; returns an array shaped like ``x``.
    x : ndarray (float64)
        The point of the check; it is not modified.
    name : str
        The tensor's name, used in the failure message.
    eps, rtol, atol : float
        Finite-difference step; relative and absolute tolerance on the two numbers.
    rng : numpy.random.Generator, optional

    Returns
    -------
    (fd, an) : tuple of float
        <u, J v> from finite differences and <J^T u, v> from the VJP.

    Raises
    ------
    GradientCheckError
        Naming the tensor and both numbers when they differ by more than
        ``atol + noise + rtol * max(|fd|, |an|)``, where ``noise = 4 u sum |u_i| (|f(x + eps
        v)_i| + |f(x - eps v)_i|) / (2 eps)`` bounds what f's rounding (unit roundoff u of
        its dtype) does to the difference quotient.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    x = np.array(x, dtype=np.float64)
    y_raw = np.asarray(f(x.copy()))
    y0 = y_raw.astype(np.float64)
    unit = np.finfo(y_raw.dtype if np.issubdtype(y_raw.dtype, np.floating) else np.float64).eps
    u = rng.standard_normal(y0.shape)
    v = rng.standard_normal(x.shape)
    fp = np.asarray(f(x + eps * v), dtype=np.float64)
    fm = np.asarray(f(x - eps * v), dtype=np.float64)
    fd = float(np.sum(u * (fp - fm)) / (2 * eps))
    g = np.asarray(vjp(u.copy() if u.ndim else u.item()), dtype=np.float64)
    if g.shape != x.shape:
        raise GradientCheckError(f"{name}: VJP returned shape {g.shape}, expected {x.shape}")
    an = float(np.sum(g * v))
    # f's own rounding, about unit * |f| per output, reaches the difference quotient as
    # unit * sum |u| (|f+| + |f-|) / (2 eps): where <u, J v> cancels to a small number this,
    # not rtol, is the resolution of the check
    noise = 4 * unit * float(np.sum(np.abs(u) * (np.abs(fp) + np.abs(fm)))) / (2 * eps)
    if not abs(fd - an) <= atol + noise + rtol * max(abs(fd), abs(an)):
        rel = abs(fd - an) / max(abs(fd), abs(an), 1e-300)
        raise GradientCheckError(
            f"{name}: finite differences <u, J v> = {fd!r} but backward <J^T u, v> = {an!r} "
            f"(relative error {rel:.3e} > {rtol:g})")
    return fd, an


def check_layer(layer, params, x, state=None, *, train=True, seed=0, rtol=1e-6, eps=1e-6,
                atol=1e-12):
    """Check a layer's VJP for its input and for every parameter, in float64.

    For the input and for each parameter, ``check_vjp`` compares <J^T u, v> from
    ``layer.backward`` with <u, (f(x + eps v) - f(x - eps v)) / (2 eps)>. The layer is
    run with a fresh ``Generator(seed)`` on every call so that random layers (dropout)
    see the same mask in each evaluation.

    Parameters
    ----------
    layer : Layer
        Any object with refbinn's layer protocol: ``forward(params, x, state, *, train,
        rng) -> (y, cache, new_state)`` and ``backward(params, cache, dy) -> (dx, grads)``;
        its ``name`` labels the failure messages.
    params : dict name -> array_like
        The layer's parameters, cast to float64 for the check.
    x : array_like, (N, ...)
        The input, cast to float64.
    state : dict, optional
        The layer's state (e.g. BatchNorm running statistics); None means ``{}``.
    train : bool
        Run the forward pass in training mode (batch statistics, dropout); default True.
    seed : int
        Seed of the fresh ``numpy.random.Generator`` passed as ``rng`` to every forward pass.
    rtol : float
        Relative tolerance, >= 0 (default 1e-6).
    eps : float
        Finite-difference step, > 0 (default 1e-6).
    atol : float
        Absolute tolerance, >= 0 (default 1e-12): the check fails when
        ``|fd - an| > atol + rtol * max(|fd|, |an|)``.

    Returns
    -------
    dict
        ``"input"`` and each parameter name -> (fd, an), the two numbers ``check_vjp``
        compared.

    Raises
    ------
    GradientCheckError
        On the first tensor whose VJP disagrees with finite differences.
    """
    state = {} if state is None else state
    params = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    x = np.asarray(x, dtype=np.float64)

    def run(p, xx):
        y, cache, _ = layer.forward(p, xx, state, train=train, rng=np.random.default_rng(seed))
        return y, cache

    results = {}
    _, cache = run(params, x)
    results["input"] = check_vjp(lambda xx: run(params, xx)[0],
                                 lambda u: layer.backward(params, cache, u)[0],
                                 x, name=f"{layer.name}: input", eps=eps, rtol=rtol, atol=atol)
    for k in params:
        def f(pk, k=k):
            return run({**params, k: pk}, x)[0]

        def vjp(u, k=k):
            return layer.backward(params, cache, u)[1][k]
        results[k] = check_vjp(f, vjp, params[k], name=f"{layer.name}: {k}", eps=eps, rtol=rtol, atol=atol)
    return results


def check_model(model, params, x, loss_fn, target, state=None, *, train=True, seed=0,
                rtol=1e-6, eps=1e-6, atol=1e-12):
    """Check d loss / d (input and every parameter) for a Sequential model and a loss.

    The gradients of ``model.backward(params, cache, dout)`` are checked with
    ``check_vjp``: <u * grad, v> against <u, (L(p + eps v) - L(p - eps v)) / (2 eps)>
    for the scalar loss L, one random direction v per tensor.

    Parameters
    ----------
    model : Sequential
        Any object with ``forward(params, x, state, *, train, rng)`` and
        ``backward(params, cache, dout) -> (dx, grads)``.
    params : dict name -> array_like
        The model's parameters (qualified names), cast to float64.
    x : array_like, (N, ...)
        The input batch, cast to float64.
    loss_fn : callable
        ``loss_fn(out, target) -> (loss, dout)``: a scalar loss and its gradient with
        respect to the model's output.
    target : object
        Passed to ``loss_fn`` unchanged (labels, regression targets).
    state : dict, optional
        The model's state (BatchNorm running statistics); None means ``{}``.
    train : bool
        Run the forward pass in training mode; default True.
    seed : int
        Seed of the fresh ``numpy.random.Generator`` passed as ``rng`` to every forward pass.
    rtol : float
        Relative tolerance, >= 0 (default 1e-6).
    eps : float
        Finite-difference step, > 0 (default 1e-6).
    atol : float
        Absolute tolerance, >= 0 (default 1e-12): the check fails when
        ``|fd - an| > atol + rtol * max(|fd|, |an|)``.

    Returns
    -------
    dict
        ``"input"`` and each parameter name -> (fd, an), the two numbers ``check_vjp``
        compared.

    Raises
    ------
    GradientCheckError
        On the first tensor whose gradient disagrees with finite differences.
    """
    state = {} if state is None else state
    params = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    x = np.asarray(x, dtype=np.float64)

    def loss_at(p, xx):
        out, cache, _ = model.forward(p, xx, state, train=train, rng=np.random.default_rng(seed))
        loss, dout = loss_fn(out, target)
        return loss, dout, cache

    _, dout, cache = loss_at(params, x)
    dx, grads = model.backward(params, cache, dout)
    results = {"input": check_vjp(lambda xx: loss_at(params, xx)[0], lambda u: u * dx, x,
                                  name="model input", eps=eps, rtol=rtol, atol=atol)}
    for k in params:
        results[k] = check_vjp(lambda pk, k=k: loss_at({**params, k: pk}, x)[0],
                               lambda u, k=k: u * grads[k], params[k], name=k, eps=eps, rtol=rtol, atol=atol)
    return results
