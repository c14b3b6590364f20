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
