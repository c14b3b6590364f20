"""Training diagnostics (refbinn/train/diagnostics.py): the terms are the update's own, the
statistics are what the docstring says, and a run is bit-identical with them on or off."""
import json

import numpy as np
import pytest

from refbinn import models
from refbinn.cli import main
from refbinn.nn.losses import softmax_cross_entropy
from refbinn.optim.adam import Adam
from refbinn.optim.bayesbinn import BayesBiNN, BayesBiNNState
from refbinn.optim.partition import Partition
from refbinn.optim.ste import STEAdam
from refbinn.train import Data, TrainConfig, fit
from refbinn.train.diagnostics import RTOL, Diagnostics, layer_stats, lemma1_terms, summary_line


def _data(seed=0, n=160, d=8, k=3):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((d, k))
    x = rng.standard_normal((n + 80, d)).astype(np.float32)
    y = (x @ w).argmax(1)
    return Data(x[:n], y[:n], x[n:n + 40], y[n:n + 40], x[n + 40:], y[n + 40:])


def _model(dropout=0.2):
    return models.mlp_mnist(in_features=8, hidden=(12, 12), classes=3, dropout=dropout)


@pytest.mark.parametrize("numerics", ["exact", "official"])
def test_data_and_prior_terms_are_those_of_the_update(numerics):
    """With beta = 0: lam' = lam - lr*(g_hat + prior) for the update the optimizer takes with
    the same noise; g_hat and prior from lemma1_terms (float64, NumPy reference)."""
    rng = np.random.default_rng(1)
    model = _model(dropout=None)                        # no dropout: the same forward in both
    opt = BayesBiNN(N=160, tau=0.7, lr=0.05, samples=2, lam_init=1.0, lam_init_std=0.5,
                    lam0=0.2, reweight=0.8, numerics=numerics, dtype="float64", backend="numpy")
    params, bn = model.init(rng, np.float64)
    state = opt.init(params, rng)
    x, y = rng.standard_normal((20, 8)), rng.integers(0, 3, 20)
    terms = {k: rest for k, *rest in lemma1_terms(opt, state, model, bn, x, y, softmax_cross_entropy,
                                                  np.random.default_rng(5))}
    noise = opt.sample(state)                             # the same keys
    grads = []
    for n in noise:
        w = opt.forward_params(state, n)
        out, cache, _ = model.forward(w, x, bn, train=True)
        grads.append(model.backward(w, cache, softmax_cross_entropy(out, y)[1])[1])
    new = opt.update(grads, state, noise)
    for k, (lam, s, g_hat, prior) in terms.items():
        np.testing.assert_allclose(new.lam[k], lam - opt.lr * (g_hat + prior), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(prior, 0.8 * (lam - 0.2))
        assert s.shape == lam.shape and np.all(s >= 0)


def test_layer_stats_follow_their_definitions():
    lam = np.array([0.5, -2.0, 3.0, 1e3], np.float32)
    s = np.array([0.0, 1.0, 2.0, 100.0], np.float32)
    g_hat = np.array([1e-6, 1e-3, -1.0, 1e-1])
    prior = np.array([0.0, 3.0, 0.0, 4.0])
    st = layer_stats(lam, s, g_hat, prior, lr=1.0)
    # |lr*g_hat| > 1e-6*max(|lam|, 1): 1e-6 > 1e-6 no; 1e-3 > 2e-6 yes; 1 yes; 0.1 > 1e-3 yes
    assert st["active_frac"] == 0.75 and RTOL == 1e-6
    assert st["scale_zero_frac"] == 0.25 and st["scale_max"] == 100.0
    assert st["scale_median"] == 1.5 and st["scale_p99"] == pytest.approx(np.quantile(s, 0.99))
    assert st["data_rms"] == pytest.approx(np.sqrt(np.mean(g_hat ** 2)))
    assert st["prior_rms"] == pytest.approx(2.5)
    assert st["data_over_prior"] == pytest.approx(st["data_rms"] / 2.5)
    assert st["lam_abs_median"] == 2.5 and st["lam_abs_max"] == 1e3
    assert st["lam_abs_p99"] == pytest.approx(np.quantile(np.abs(lam.astype(np.float64)), 0.99))
    # medians: |g_hat| {1e-6, 1e-3, 1, 0.1} -> 0.0505; |prior| {0, 3, 0, 4} -> 1.5; the ratio over
    # the two weights with a prior term: {1e-3/3, 0.1/4} -> (3.33e-4 + 0.025)/2
    assert st["data_abs_median"] == pytest.approx(0.0505) and st["prior_abs_median"] == 1.5
    assert st["ratio_median"] == pytest.approx((1e-3 / 3 + 0.1 / 4) / 2)
    assert layer_stats(lam, s, g_hat, 0 * prior, lr=1.0)["ratio_median"] == np.inf


def test_flip_fraction_and_mode_mean_gap():
    opt = BayesBiNN(N=10, tau=1.0, numerics="exact")
    lam = {"a.weight": np.ones((4, 10), np.float32), "b.weight": -np.ones(20, np.float32)}
    state = BayesBiNNState(lam, {k: 0 * v for k, v in lam.items()}, lam, 0)
    flipped = {"a.weight": lam["a.weight"].copy(), "b.weight": lam["b.weight"].copy()}
    flipped["a.weight"][0, :3] = -1.0                   # 3 of 40
    flipped["b.weight"][:5] = 0.5                       # 5 of 20
    diag = Diagnostics(model=None, opt=opt, loss_fn=None)
    diag.start_epoch(0, state)
    diag.terms = lambda *a, **k: None                   # only the optimizer-independent part here
    out, secs = diag.end_epoch(state._replace(lam=flipped), None, None, None, None,
                               {"val_acc_mode": 0.5, "val_acc_mean": 0.75, "test_acc_mode": 0.9})
    assert out["layers"]["a.weight"]["flip_frac"] == 3 / 40
    assert out["layers"]["b.weight"]["flip_frac"] == 5 / 20
    assert out["all"]["flip_frac"] == 8 / 60
    assert out["gap_val"] == 0.25 and "gap_test" not in out and isinstance(secs, float)
    assert summary_line(out, secs).startswith("diag: flip_frac=0.1333")


def _fit(opt, cfg_kw, data=None):
    data = data or _data()
    cfg = TrainConfig(epochs=2, batch_size=40, seed=4, eval_samples=2, quiet=True, **cfg_kw)
    return fit(_model(), opt, data, softmax_cross_entropy, cfg, log=lambda m: None)


@pytest.mark.parametrize("make_opt", [
    lambda: BayesBiNN(lr=1e-2, tau=0.5, samples=2, N=160, lam_init=1.0, numerics="exact"),
    lambda: BayesBiNN(lr=1e-2, tau=1e-10, N=160, numerics="official"),
    lambda: STEAdam(lr=1e-2),
], ids=["bayesbinn-exact-S2", "bayesbinn-official", "ste"])
def test_a_run_is_bit_identical_with_diagnostics_on_or_off(make_opt):
    on = _fit(make_opt(), dict(diagnostics=True, diagnostics_every=2))
    off = _fit(make_opt(), dict(diagnostics=False))
    for f in on["opt_state"]._fields:
        a, b = getattr(on["opt_state"], f), getattr(off["opt_state"], f)
        for k in (a if isinstance(a, dict) else {}):
            np.testing.assert_array_equal(a[k], b[k])
    keep = lambda h: [{k: v for k, v in e.items() if k not in ("seconds", "examples_per_s", "diagnostics",
                                                               "seconds_diagnostics")} for e in h]
    assert keep(on["history"]["epochs"]) == keep(off["history"]["epochs"])
    assert all("diagnostics" not in e for e in off["history"]["epochs"])


def test_history_records_what_applies_to_each_optimizer():
    bb = _fit(BayesBiNN(lr=1e-2, tau=0.5, N=160, lam_init=1.0), dict(diagnostics_every=2))
    d = bb["history"]["epochs"][-1]["diagnostics"]
    for key in ("flip_frac", "active_frac", "scale_median", "scale_p99", "scale_max", "data_rms",
                "prior_rms", "data_over_prior"):
        assert key in d["all"], key
    assert set(d["layers"]) == {"fc1.weight", "fc2.weight", "fc3.weight"}
    assert "gap_test" in d and "gap_val" in d                # the last epoch evaluates the mean
    assert [s["step"] for s in d["steps"]] == [2, 4]          # 4 steps per epoch, every 2
    assert json.loads(json.dumps(bb["history"]))              # JSON-ready
    ste = _fit(STEAdam(lr=1e-2), {})["history"]["epochs"][-1]["diagnostics"]
    assert set(ste["all"]) == {"flip_frac"} and "scale_median" not in ste["layers"]["fc1.weight"]
    adam = _fit(Adam(lr=1e-2), {})["history"]["epochs"][-1]["diagnostics"]
    assert adam["layers"] == {} and "all" not in adam          # real weights: no signs to flip


def test_no_diagnostics_flag(tmp_path, data_root):
    args = ["train", "--dataset", "mnist", "--optimizer", "bayesbinn", "--numerics", "exact",
            "--tau", "0.5", "--epochs", "1", "--max-train", "300", "--hidden", "16", "--quiet",
            "--eval-samples", "0", "--out", str(tmp_path)]
    assert main(args + ["--name", "on"]) == 0
    assert main(args + ["--name", "off", "--no-diagnostics"]) == 0
    on = json.loads((tmp_path / "on.json").read_text())["history"][-1]
    off = json.loads((tmp_path / "off.json").read_text())["history"][-1]
    assert "diagnostics" in on and isinstance(on["seconds_diagnostics"], float)   # a time: its value is not tested
    assert "diagnostics" not in off and "seconds_diagnostics" not in off


@pytest.mark.parametrize("numerics", ["exact", "official"])
def test_reported_scale_is_that_of_the_first_sample(numerics):
    """s_1 is the Lemma 1 scale of the first of the S samples, from its relaxed weight w_1 in
    float64: N/tau (1 - w_1**2)/(1 - mu**2), mu = tanh(lam) ('exact') or the stored, lagged
    mean ('official', with the authors' 1e-10)."""
    rng = np.random.default_rng(2)
    model = _model(dropout=None)
    opt = BayesBiNN(N=160, tau=0.7, lr=0.05, samples=3, lam_init=1.0, lam_init_std=0.5, numerics=numerics,
                    dtype="float64", backend="numpy")
    params, bn = model.init(rng, np.float64)
    state = opt.init(params, rng)
    if numerics == "official":                          # a lagged mean, not tanh(lam)
        state = state._replace(mu={k: np.tanh(0.5 * v) for k, v in state.lam.items()})
    x, y = rng.standard_normal((20, 8)), rng.integers(0, 3, 20)
    first, last = (opt.forward_params(state, n) for n in (opt.sample(state)[0], opt.sample(state)[-1]))
    for k, lam, s, g_hat, prior in lemma1_terms(opt, state, model, bn, x, y, softmax_cross_entropy,
                                                np.random.default_rng(5)):
        for w, same in ((first[k], True), (last[k], False)):
            if numerics == "exact":
                want = 160 / 0.7 * (1 - w ** 2) / (1 - np.tanh(lam) ** 2)
            else:
                want = (1 - w ** 2 + 1e-10) / 0.7 / (1 - state.mu[k] ** 2 + 1e-10) * 160
            assert np.allclose(s, want, rtol=1e-7, atol=0) == same, (k, same)


def test_point_estimate_data_term_is_N_times_the_gradient_at_tanh_lam():
    """S = 0: no scale, g_hat = N*g at w = tanh(lam)."""
    rng = np.random.default_rng(3)
    model = _model(dropout=None)
    opt = BayesBiNN(N=160, tau=0.7, lr=0.05, samples=0, lam_init=1.0, lam_init_std=0.5, reweight=0.5,
                    numerics="exact", dtype="float64", backend="numpy")
    params, bn = model.init(rng, np.float64)
    state = opt.init(params, rng)
    x, y = rng.standard_normal((20, 8)), rng.integers(0, 3, 20)
    w = {k: np.tanh(v) for k, v in state.lam.items()}
    out, cache, _ = model.forward(w, x, bn, train=True)
    g = model.backward(w, cache, softmax_cross_entropy(out, y)[1])[1]
    seen = set()
    for k, lam, s, g_hat, prior in lemma1_terms(opt, state, model, bn, x, y, softmax_cross_entropy,
                                                np.random.default_rng(5)):
        assert s is None
        np.testing.assert_allclose(g_hat, 160 * g[k], rtol=1e-12)
        np.testing.assert_allclose(prior, 0.5 * lam)
        seen.add(k)
    assert seen == {"fc1.weight", "fc2.weight", "fc3.weight"}


def test_layer_stats_zero_scale_and_zero_prior():
    lam = np.array([0.5, -2.0, 3.0, 1e3])
    s = np.array([0.0, 1e-300, 1e-30, 2.0])                    # only an exact 0 underflowed
    st = layer_stats(lam, s, np.array([1.0, -1.0, 1.0, -1.0]), np.zeros(4), lr=None)
    assert st["scale_zero_frac"] == 0.25 and "active_frac" not in st
    assert st["prior_rms"] == 0.0 and st["data_rms"] == 1.0
    assert st["data_over_prior"] == np.inf and st["ratio_median"] == np.inf


def _bayesbinn_setup(seed, dropout=None):
    rng = np.random.default_rng(seed)
    model = _model(dropout=dropout)
    opt = BayesBiNN(N=160, tau=0.7, lr=0.05, samples=2, lam_init=1.0, lam_init_std=2.0, lam0=0.3,
                    numerics="exact", backend="numpy")
    params, bn = model.init(rng, np.float32)
    state = opt.init(params, rng)
    x, y = rng.standard_normal((20, 8)).astype(np.float32), rng.integers(0, 3, 20)
    return model, opt, state, bn, x, y


def test_totals_weight_each_parameter_by_its_size():
    """'all': the fractions and RMS over all weights together (float64 NumPy over the three
    parameters' terms, of sizes 96, 144 and 36); the quantiles the largest over parameters;
    the medians the median of the parameters' medians."""
    model, opt, state, bn, x, y = _bayesbinn_setup(4)
    lr = 1e-5                                                    # some steps negligible, some not
    diag = Diagnostics(model, opt, softmax_cross_entropy, seed=3)
    diag.start_epoch(0, state)
    rec = diag.terms(state, bn, x, y, lr, 0)
    t = {k: [np.asarray(a, np.float64) for a in rest] for k, *rest in
         lemma1_terms(opt, state, model, bn, x, y, softmax_cross_entropy, np.random.default_rng(0))}
    assert [t[k][0].size for k in t] == [96, 144, 36]
    lam, s, g, p = (np.concatenate([v[i].ravel() for v in t.values()]) for i in range(4))
    active = [np.mean(np.abs(lr * v[2]) > RTOL * np.maximum(np.abs(v[0]), 1)) for v in t.values()]
    assert len(set(active)) == 3 and 0 < min(active)            # the weighting matters here
    a = rec["all"]
    assert a["active_frac"] == pytest.approx(np.mean(np.abs(lr * g) > RTOL * np.maximum(np.abs(lam), 1)), abs=1e-12)
    assert a["scale_zero_frac"] == pytest.approx(np.mean(s == 0), abs=1e-12)
    assert a["data_rms"] == pytest.approx(np.sqrt(np.mean(g ** 2)), rel=1e-9)
    assert a["prior_rms"] == pytest.approx(np.sqrt(np.mean(p ** 2)), rel=1e-9)
    assert a["prior_rms"] == pytest.approx(np.sqrt(np.mean((lam - 0.3) ** 2)), rel=1e-6)   # reweight 1
    assert a["data_over_prior"] == pytest.approx(np.sqrt(np.mean(g ** 2) / np.mean(p ** 2)), rel=1e-9)
    assert a["scale_max"] == np.max(s) and a["lam_abs_max"] == np.max(np.abs(lam))
    assert a["scale_p99"] == pytest.approx(max(np.quantile(v[1], 0.99) for v in t.values()), rel=1e-6)  # float32 s
    assert a["lam_abs_p99"] == pytest.approx(max(np.quantile(np.abs(v[0]), 0.99) for v in t.values()), rel=1e-12)
    for key, fn in (("scale_median", lambda v: v[1]), ("lam_abs_median", lambda v: np.abs(v[0])),
                    ("data_abs_median", lambda v: np.abs(v[2])), ("prior_abs_median", lambda v: np.abs(v[3])),
                    ("ratio_median", lambda v: np.abs(v[2])[v[3] != 0] / np.abs(v[3])[v[3] != 0])):
        meds = sorted(np.median(fn(v)) for v in t.values())
        assert a[key] == pytest.approx(meds[1], rel=1e-6), key      # the middle one of three
        assert meds[0] < meds[1] < meds[2], key                       # so max or mean would differ


def test_records_draw_their_dropout_from_their_own_stream():
    """The record at step k of epoch e uses default_rng([seed, 2, e, k]) (k = 0 at the epoch's end),
    whatever steps came before."""
    model, opt, state, bn, x, y = _bayesbinn_setup(6, dropout=0.5)
    diag = Diagnostics(model, opt, softmax_cross_entropy, seed=7, every=2)
    diag.start_epoch(3, state)
    for _ in range(3):
        diag.step(state, bn, x, y, None)
    out, _ = diag.end_epoch(state, bn, x, y, None, {})

    def ref(k):
        return {n: layer_stats(*rest, 0.05) for n, *rest in
                lemma1_terms(opt, state, model, bn, x, y, softmax_cross_entropy, np.random.default_rng([7, 2, 3, k]))}
    assert [r["step"] for r in out["steps"]] == [2]
    assert out["steps"][0]["layers"] == ref(2)
    assert {n: {k: v for k, v in d.items() if k != "flip_frac"} for n, d in out["layers"].items()} == ref(0)
    assert ref(0) != ref(2) and ref(0) != ref(3)                    # the masks matter


def test_partition_records_its_bayesbinn_part():
    """A Partition (BayesBiNN + Adam): the binary weights' record, with the real parameters in the
    forward pass and the binary optimizer's step size."""
    rng = np.random.default_rng(8)
    model = models.mlp_toy(in_features=8, out_features=3, hidden=6)
    bb = BayesBiNN(N=160, tau=0.7, lr=0.03, samples=2, lam_init=1.0, numerics="exact", backend="numpy")
    opt = Partition(bb, Adam(lr=1e-3), model.kinds)
    params, bn = model.init(rng, np.float32)
    params = {k: v + 0.5 if model.kinds[k] == "real" else v for k, v in params.items()}   # biases matter
    state = opt.init(params, rng)
    x, y = rng.standard_normal((20, 8)).astype(np.float32), rng.integers(0, 3, 20)
    diag = Diagnostics(model, opt, softmax_cross_entropy, seed=1)
    diag.start_epoch(0, state)
    real = {k: v for k, v in params.items() if model.kinds[k] == "real"}
    ref = {n: layer_stats(*rest, 0.2) for n, *rest in
           lemma1_terms(bb, state.binary, model, bn, x, y, softmax_cross_entropy, np.random.default_rng(0), real)}
    assert set(ref) == {"fc1.weight", "fc2.weight", "fc3.weight"}
    rec = diag.terms(state, bn, x, y, (0.2, 1e-3), 0)               # (binary lr, real lr)
    assert rec["lr"] == 0.2 and rec["tau"] == 0.7 and rec["layers"] == ref
    assert diag.terms(state, bn, x, y, None, 0)["lr"] == 0.03        # the binary optimizer's own
    own = diag.terms(state, bn, x, y, (None, 1e-3), 0)              # a None entry: also its own
    assert own["lr"] == 0.03 and "active_frac" in own["all"] and "active_frac" in own["layers"]["fc1.weight"]
    out, _ = diag.end_epoch(state, bn, x, y, None, {})
    assert set(out["layers"]) == set(ref) and out["all"]["flip_frac"] == 0.0   # signs of the binary part only
