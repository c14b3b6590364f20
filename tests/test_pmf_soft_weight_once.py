"""PMF computes its soft weight once per training step (issue 12, item 4), with the same numbers.

``train_step`` hands ``forward_params``' soft weights to ``update(..., weights=)``; before,
``update`` recomputed tanh(beta (u[+1] - u[-1]) / 2). The tests count the soft-weight calls
and compare the trajectory, bit for bit, with a copy of the old ``update`` below, on both
the fused (Numba) and the NumPy path, float32 and float64, with and without weight decay.
"""
import numpy as np
import pytest

import refbinn.optim.pmf as pmf_module
from refbinn.models import mlp_mnist, mlp_toy
from refbinn.nn import logistic_loss, softmax_cross_entropy
from refbinn.optim import Adam, Partition
from refbinn.optim._backend import FUSED_MIN_SIZE
from refbinn.optim.base import as_grad_list, mean_grads
from refbinn.optim.pmf import PMF, PMFState
from refbinn.train import train_step

STEPS = 4


def old_update(opt, grads, state, noise=None, *, lr=None):
    """PMF.update as it was before issue 12: the soft weight recomputed from the state."""
    grads = as_grad_list(grads, noise)
    g = mean_grads(grads, {k: u[0] for k, u in state.u.items()}, "PMF")
    lr = opt.lr if lr is None else lr
    t = state.step + 1
    u_new, m_new, v_new = {}, {}, {}
    for k, u in state.u.items():
        w_soft = opt._soft_weight(u, state.beta)
        u_new[k], m_new[k], v_new[k] = opt._step(g[k], w_soft, u, state.m[k], state.v[k], t, lr, state.beta)
    beta = state.beta
    if t % opt.anneal_every == 0:
        beta = min(beta * opt.rho, opt.beta_max)
    return PMFState(u_new, m_new, v_new, beta, t)


def _setup(dtype, weight_decay, backend):
    # fc1 (48 x 700 = 33600 weights) is at or above FUSED_MIN_SIZE: the Numba kernels;
    # fc2 (700 x 10) below it: the NumPy path
    model = mlp_mnist(in_features=48, hidden=(700,), classes=10)
    assert 48 * 700 >= FUSED_MIN_SIZE > 700 * 10
    rng = np.random.default_rng(3)
    params, bn = model.init(rng, dtype)
    opt = PMF(lr=1e-2, rho=1.5, anneal_every=2, weight_decay=weight_decay, backend=backend)
    data = [(rng.standard_normal((32, 48)).astype(dtype), rng.integers(0, 10, 32)) for _ in range(STEPS)]
    return model, opt, opt.init(params), bn, data


class Counter:
    """Wraps a soft-weight function and counts its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_train_step_computes_the_soft_weight_once_per_step(monkeypatch, backend):
    counters = {name: Counter(getattr(pmf_module, name)) for name in ("soft_weight", "soft_weight_fused")}
    for name, c in counters.items():
        monkeypatch.setattr(pmf_module, name, c)
    model, opt, state, bn, data = _setup(np.float32, 0.0, backend)
    r_noise, r_drop = np.random.default_rng(0), np.random.default_rng(1)
    for x, y in data:
        state, bn, _, _ = train_step(model, opt, state, bn, x, y, softmax_cross_entropy,
                                     rng_noise=r_noise, rng_drop=r_drop)
    n_arrays = len(state.u)                                 # fc1 and fc2
    assert sum(c.calls for c in counters.values()) == STEPS * n_arrays
    if backend == "numba":
        assert counters["soft_weight_fused"].calls == STEPS          # fc1
    # without weights=, update computes it again (the old count)
    before = sum(c.calls for c in counters.values())
    opt.update([{k: np.zeros_like(u[0]) for k, u in state.u.items()}], state)
    assert sum(c.calls for c in counters.values()) - before == n_arrays


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_trajectory_is_bit_identical_to_the_old_update(dtype, weight_decay, backend):
    model, opt, s_new, bn_new, data = _setup(dtype, weight_decay, backend)
    s_old, bn_old = s_new, bn_new
    rngs_new = [np.random.default_rng(0), np.random.default_rng(1)]
    rngs_old = [np.random.default_rng(0), np.random.default_rng(1)]
    for i, (x, y) in enumerate(data):
        lr = 1e-2 * 0.5 ** i                                 # a schedule's lr goes through too
        s_new, bn_new, loss_new, _ = train_step(model, opt, s_new, bn_new, x, y, softmax_cross_entropy,
                                                rng_noise=rngs_new[0], rng_drop=rngs_new[1], lr=lr)
        # the old step, spelled out: forward_params, forward, backward, the old update
        noise = opt.sample(s_old, rngs_old[0])
        p = opt.forward_params(s_old, noise[0])
        out, cache, bn_old = model.forward(p, x, bn_old, train=True, rng=rngs_old[1])
        loss_old, dout = softmax_cross_entropy(out, y)
        _, g = model.backward(p, cache, dout)
        s_old = old_update(opt, [g], s_old, noise, lr=lr)
        assert loss_new == loss_old
        assert s_new.beta == s_old.beta and s_new.step == s_old.step
        for part in ("u", "m", "v"):
            for k, a in getattr(s_new, part).items():
                b = getattr(s_old, part)[k]
                assert a.dtype == b.dtype == dtype
                np.testing.assert_array_equal(a, b, err_msg=f"step {i + 1} {part}[{k}]")
        for k in bn_new:
            np.testing.assert_array_equal(bn_new[k], bn_old[k])


def test_partition_hands_the_binary_part_of_the_weights_to_pmf(monkeypatch):
    counter = Counter(pmf_module.soft_weight)
    monkeypatch.setattr(pmf_module, "soft_weight", counter)
    model = mlp_toy(2, 1, hidden=8)                          # biases: real, weights: binary
    params, bn = model.init(np.random.default_rng(0), np.float64)
    opt = Partition(PMF(lr=1e-2), Adam(lr=1e-3), model.kinds)
    s_new = s_old = opt.init(params)
    x = np.random.default_rng(1).standard_normal((16, 2))
    y = (x[:, :1] > 0).astype(np.float64)
    loss_fn = logistic_loss
    r = [np.random.default_rng(2), np.random.default_rng(3)]
    for _ in range(3):
        s_new, _, _, _ = train_step(model, opt, s_new, bn, x, y, loss_fn, rng_noise=r[0], rng_drop=r[1])
    assert counter.calls == 3 * len(s_new.binary.u)
    for _ in range(3):                                       # the same steps without weights=
        p = opt.forward_params(s_old)
        out, cache, _ = model.forward(p, x, bn, train=True, rng=r[1])
        _, g = model.backward(p, cache, loss_fn(out, y)[1])
        s_old = opt.update([g], s_old)
    for k in s_new.binary.u:
        np.testing.assert_array_equal(s_new.binary.u[k], s_old.binary.u[k])
    for k in s_new.real.params:
        np.testing.assert_array_equal(s_new.real.params[k], s_old.real.params[k])


def test_weights_of_the_wrong_shape_or_dtype_are_refused():
    opt = PMF()
    state = opt.init({"w": np.zeros((3, 4))})
    g = {"w": np.ones((3, 4))}
    with pytest.raises(ValueError, match="weights"):
        opt.update(g, state, weights={"w": np.zeros((4, 3))})
    with pytest.raises(ValueError, match="weights"):
        opt.update(g, state, weights={"w": np.zeros((3, 4), np.float32)})
    with pytest.raises(ValueError, match="weights"):
        opt.update(g, state, weights={})
