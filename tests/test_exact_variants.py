"""The experiment variants of issue 15: numerics='exact-clipped' (a bounded Lemma 1 scale; not
the paper's estimator) and tau annealing during training (refbinn/train/anneal.py)."""
import numpy as np
import pytest

from refbinn import models
from refbinn.experiments import build
from refbinn.nn.losses import softmax_cross_entropy
from refbinn.optim.adam import Adam
from refbinn.optim.bayesbinn import BayesBiNN, BayesBiNNState, concrete_scale, open_uniform
from refbinn.optim.partition import Partition
from refbinn.train import Data, TrainConfig, fit
from refbinn.train.anneal import anneal_tau, geometric_tau, set_tau


@pytest.fixture
def fused_everywhere(monkeypatch):
    import refbinn.optim._backend as module
    monkeypatch.setattr(module, "FUSED_MIN_SIZE", 0)


def _state(n, rng, dtype=np.float32):
    lam = (rng.standard_normal(n) * np.where(rng.random(n) < 0.5, 0.5, 4.0)).astype(dtype)
    return BayesBiNNState({"w": lam}, {"w": np.zeros(n, dtype)}, {"w": np.tanh(lam)}, 0)


# -- exact-clipped ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clipped_scale_is_the_exact_scale_bounded_by_n_over_tau(dtype):
    rng = np.random.default_rng(0)
    lam = (3 * rng.standard_normal(20000)).astype(dtype)
    u = open_uniform(rng, lam.shape, dtype)
    exact = concrete_scale(lam, u, 0.3, 1000.0, "exact")
    clipped = concrete_scale(lam, u, 0.3, 1000.0, "exact-clipped")
    bound = dtype(1000.0 / 0.3)
    np.testing.assert_array_equal(clipped, np.minimum(exact, bound))
    assert clipped.dtype == dtype and clipped.max() == bound
    assert 0.001 < np.mean(exact > bound) < 0.5          # the tail is there, and it is what is cut


@pytest.mark.parametrize("samples", [0, 1, 3])
def test_clipped_kernels_agree_with_the_numpy_reference(fused_everywhere, samples):
    """The fused kernels compute the clipped step bit for bit as the reference (float32),
    including where the clip acts (s = float32(N/tau))."""
    rng = np.random.default_rng(3)
    kw = dict(N=5000, tau=0.3, lr=0.01, samples=samples, numerics="exact-clipped")
    ref, fused = BayesBiNN(backend="numpy", **kw), BayesBiNN(backend="numba", **kw)
    state = _state(50000, rng)
    noise = ref.sample(state, rng)
    g = [{"w": (1e-3 * rng.standard_normal(50000)).astype(np.float32)} for _ in noise]
    a, b = ref.update(g, state, noise), fused.update(g, state, noise)
    np.testing.assert_array_equal(b.lam["w"], a.lam["w"])
    if samples:
        lam = state.lam["w"]
        s = [concrete_scale(lam, n.uniform("w", lam.shape, lam.dtype), 0.3, 5000.0, "exact") for n in noise]
        assert np.all([sj > 5000 / 0.3 * 1.0001 for sj in s], axis=0).sum() > 10    # the clip acted


def test_clipped_step_equals_the_exact_step_where_the_scale_is_below_the_bound():
    rng = np.random.default_rng(5)
    kw = dict(N=5000, tau=0.3, lr=0.01, backend="numpy")
    state = _state(4000, rng, np.float64)
    ex, cl = BayesBiNN(numerics="exact", **kw), BayesBiNN(numerics="exact-clipped", **kw)
    noise = ex.sample(state, rng)
    g = [{"w": 1e-3 * rng.standard_normal(4000)}]
    a, b = ex.update(g, state, noise), cl.update(g, state, noise)
    u = noise[0].uniform("w", (4000,), np.float64)
    below = concrete_scale(state.lam["w"], u, 0.3, 5000.0) < 5000 / 0.3
    assert 0 < below.mean() < 1
    np.testing.assert_array_equal(b.lam["w"][below], a.lam["w"][below])
    data_step = lambda new: new.lam["w"] - (1 - 0.01) * state.lam["w"]           # -lr*s*g (lam0 = 0)
    assert np.all(np.abs(data_step(b))[~below] <= np.abs(data_step(a))[~below] + 1e-12)
    assert np.sum(np.abs(data_step(b))[~below]) < 0.9 * np.sum(np.abs(data_step(a))[~below])
    np.testing.assert_array_equal(cl.params(b)["w"], np.where(b.lam["w"] >= 0, 1.0, -1.0))


def test_clipped_is_a_named_choice_and_bad_numerics_are_refused():
    BayesBiNN(N=1, tau=1, numerics="exact-clipped")
    with pytest.raises(ValueError, match="exact-clipped"):
        BayesBiNN(N=1, tau=1, numerics="clipped")
    with pytest.raises(ValueError, match="exact-clipped"):
        concrete_scale(np.zeros(2), np.full(2, 0.5), 1.0, 1.0, "nope")


# -- tau annealing ---------------------------------------------------------------------------------
def test_geometric_tau_runs_from_start_to_end():
    sched = anneal_tau(1.0, 0.01, 4)
    assert sched(0) == 1.0 and sched(4) == pytest.approx(0.01) and sched(2) == pytest.approx(0.1)
    ts = [sched(t) for t in np.linspace(0, 4, 17)]
    assert all(a > b for a, b in zip(ts, ts[1:]))
    assert geometric_tau(1.5, tau_start=2.0, tau_end=2.0, epochs=3) == 2.0
    with pytest.raises(ValueError, match="tau_end"):
        anneal_tau(1.0, 0.0, 4)
    with pytest.raises(ValueError, match="epochs"):
        anneal_tau(1.0, 0.1, 0)


def test_set_tau_reaches_bayesbinn_alone_or_in_a_partition():
    bb = BayesBiNN(N=1, tau=1.0)
    assert set_tau(bb, 0.5).tau == 0.5
    part = Partition(BayesBiNN(N=1, tau=1.0), Adam(), {"a": "binary", "b": "real"})
    set_tau(part, 0.25)
    assert part.binary_opt.tau == 0.25
    with pytest.raises(ValueError, match="temperature"):
        set_tau(Adam(), 0.1)
    with pytest.raises(ValueError, match="tau must be"):
        set_tau(bb, -1.0)


def _data(n=120, d=6):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n + 40, d)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    return Data(x[:n], y[:n], x[n:n + 20], y[n:n + 20], x[n + 20:], y[n + 20:])


def test_fit_anneals_tau_every_step_and_resumes_identically(tmp_path):
    data, sched = _data(), anneal_tau(1.0, 0.1, 3)
    model = models.mlp_mnist(in_features=6, hidden=(8,), classes=2)
    cfg = TrainConfig(epochs=3, batch_size=40, seed=1, quiet=True)
    make = lambda: BayesBiNN(N=120, tau=1.0, lr=0.05, lam_init=1.0)
    full_opt = make()
    full = fit(model, full_opt, data, softmax_cross_entropy, cfg, tau_schedule=sched, log=lambda m: None,
               out_dir=str(tmp_path / "full"))
    assert full_opt.tau == pytest.approx(sched(2 + 2 / 3))            # the last of 9 steps
    assert [e["tau"] for e in full["history"]["epochs"]] == pytest.approx([sched(e + 2 / 3) for e in range(3)])
    fit(model, make(), data, softmax_cross_entropy, cfg, tau_schedule=sched, log=lambda m: None,
        out_dir=str(tmp_path / "cut"), stop_after=1)
    resumed = fit(model, make(), data, softmax_cross_entropy, cfg, tau_schedule=sched, log=lambda m: None,
                  out_dir=str(tmp_path / "cut"), resume=True)
    np.testing.assert_array_equal(full["opt_state"].lam["fc1.weight"], resumed["opt_state"].lam["fc1.weight"])
    fixed = fit(model, make(), data, softmax_cross_entropy, cfg, log=lambda m: None)
    assert not np.array_equal(fixed["opt_state"].lam["fc1.weight"], full["opt_state"].lam["fc1.weight"])


def test_build_makes_the_schedule_from_tau_end(data_root):
    s = build("mnist", "bayesbinn", overrides=dict(tau=1.0, tau_end=0.1, epochs=5, max_train=200,
                                                   numerics="exact"), root=data_root)
    assert s.tau_schedule(0) == 1.0 and s.tau_schedule(5) == pytest.approx(0.1)
    assert build("mnist", "bayesbinn", overrides=dict(max_train=200), root=data_root).tau_schedule is None
    with pytest.raises(ValueError, match="tau_end"):
        build("mnist", "ste", overrides=dict(tau_end=0.1, max_train=200), root=data_root)
