"""BatchNorm recalibration (refbinn/bn_recalibration.py): the statistics equal an independent
pass over the same batches, and recalibration fixes an evaluation built to need it."""
import importlib

import numpy as np
import pytest

from refbinn import models
from refbinn.bn_recalibration import batch_moments, calibration_batches, recalibrate_bn
from refbinn.nn import BatchNorm, Dense, Sequential
from refbinn.nn.losses import softmax_cross_entropy
from refbinn.optim.bayesbinn import BayesBiNN
from refbinn.train import Data, TrainConfig, evaluate, fit

ev_mod = importlib.import_module("refbinn.train.evaluate")   # the module (the package exports the function)


def _trained_mlp(rng):
    """A float64 MLP (with dropout and BatchNorm) whose running statistics come from a few
    training-mode passes at weights W, returned with DIFFERENT weights (signs of W, some flipped)."""
    model = models.mlp_mnist(in_features=10, hidden=(7, 5), classes=3, dropout=0.2)
    params, bn = model.init(rng, np.float64)
    for _ in range(3):                                   # training: running stats at the real weights
        _, _, bn = model.forward(params, rng.standard_normal((16, 10)), bn, train=True, rng=rng)
    new = {k: np.where(rng.random(v.shape) < 0.3, -1.0, 1.0) * np.sign(v) for k, v in params.items()}
    return model, new, bn


def _reference_stats(params, batches, eps):
    """Independent of refbinn's layers: the MLP's pass written out with plain NumPy, dropout off,
    each BatchNorm normalising by its batch (biased variance), statistics averaged over batches."""
    w = [params["fc1.weight"], params["fc2.weight"], params["fc3.weight"]]
    sums = [[0.0, 0.0] for _ in w]
    for x in batches:
        h = x
        for i, wi in enumerate(w):
            z = h @ wi.T                                                       # (B, out)
            m, v = z.mean(0), z.var(0)                                         # batch mean, biased var
            sums[i][0] = sums[i][0] + m
            sums[i][1] = sums[i][1] + v * len(z) / (len(z) - 1)                # unbiased
            h = (z - m) / np.sqrt(v + eps)
            if i < len(w) - 1:
                h = np.maximum(h, 0.0)
    return {f"bn{i + 1}": (s[0] / len(batches), s[1] / len(batches)) for i, s in enumerate(sums)}


def test_recalibrated_statistics_equal_a_fresh_pass_over_the_same_batches(rng):
    model, params, bn = _trained_mlp(rng)
    x = rng.standard_normal((200, 10))
    batches = calibration_batches(x, 4, 25, np.random.default_rng(1))
    new = recalibrate_bn(model, params, batches, bn)
    ref = _reference_stats(params, batches, eps=1e-4)            # mlp_mnist's BatchNorm eps
    for name, (mean, var) in ref.items():
        np.testing.assert_allclose(new[f"{name}.running_mean"], mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(new[f"{name}.running_var"], var, rtol=1e-12, atol=1e-12)
        assert not np.allclose(new[f"{name}.running_var"], bn[f"{name}.running_var"])   # it did change
    assert set(new) == set(bn) and all(new[k].dtype == bn[k].dtype for k in bn)


def test_recalibration_matches_torch_cumulative_average(rng):
    """torch: reset_running_stats(), momentum=None, BatchNorm in train mode, dropout in eval mode."""
    torch = pytest.importorskip("torch")
    model, params, bn = _trained_mlp(rng)
    batches = calibration_batches(rng.standard_normal((90, 10)), 3, 30, rng)
    new = recalibrate_bn(model, params, batches, bn)
    layers = []
    for i, (n_in, n_out) in enumerate([(10, 7), (7, 5), (5, 3)]):
        lin = torch.nn.Linear(n_in, n_out, bias=False).double()
        lin.weight.data = torch.from_numpy(params[f"fc{i + 1}.weight"])
        norm = torch.nn.BatchNorm1d(n_out, eps=1e-4, momentum=None, affine=False).double()
        layers += [torch.nn.Dropout(0.2), lin, norm] + ([torch.nn.ReLU()] if i < 2 else [])
    net = torch.nn.Sequential(*layers)
    net.eval()
    for m in net:
        if isinstance(m, torch.nn.BatchNorm1d):
            m.reset_running_stats()
            m.train()
    with torch.no_grad():
        for xb in batches:
            net(torch.from_numpy(xb))
    norms = [m for m in net if isinstance(m, torch.nn.BatchNorm1d)]
    for i, m in enumerate(norms):
        np.testing.assert_allclose(new[f"bn{i + 1}.running_mean"], m.running_mean.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(new[f"bn{i + 1}.running_var"], m.running_var.numpy(), rtol=1e-10, atol=1e-12)


def test_recalibration_of_a_convolutional_network_uses_per_channel_moments(rng):
    model = models.vgg_cifar(num_classes=3, width=1 / 64, image_size=8)
    params, bn = model.init(rng, np.float64)
    batches = [rng.standard_normal((6, 3, 8, 8)) for _ in range(2)]
    new = recalibrate_bn(model, params, batches, bn)
    # the first BatchNorm sees conv1's output: check it against conv1 applied by the layer itself
    conv1 = model.layers[0]
    outs = [conv1.forward({"weight": params[f"{conv1.name}.weight"]}, xb, {})[0] for xb in batches]
    mean = np.mean([batch_moments(o)[0] for o in outs], axis=0)
    var = np.mean([o.var(axis=(0, 2, 3)) * o[:, 0].size / (o[:, 0].size - 1) for o in outs], axis=0)
    bn1 = next(layer.name for layer in model.layers if isinstance(layer, BatchNorm))
    np.testing.assert_allclose(new[f"{bn1}.running_mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(new[f"{bn1}.running_var"], var, rtol=1e-12)


def test_recalibration_fixes_an_evaluation_built_to_need_it():
    """A nearest-prototype classifier z = x @ P.T -> BatchNorm(3) whose stored statistics are
    stale (class 0's mean far below): every prediction is class 0 until the statistics are
    recomputed for the network evaluated; then it is near perfect."""
    rng = np.random.default_rng(7)
    d, k, n = 40, 3, 600
    protos = np.where(rng.random((k, d)) < 0.5, -1.0, 1.0)                     # (K, d) in {-1, +1}
    y = rng.integers(0, k, n)
    x = (protos[y] + rng.standard_normal((n, d))).astype(np.float32)           # (n, d)
    model = Sequential(Dense(d, k, bias=False, name="fc"), BatchNorm(k, affine=False, name="bn"))
    opt = BayesBiNN(N=n, tau=1.0, numerics="exact")
    _, bn = model.init(rng, np.float32)
    state = opt.init({"fc.weight": protos.astype(np.float32)}, rng)
    state = state._replace(lam={"fc.weight": (5 * protos).astype(np.float32)})  # mode = protos
    stale = {"bn.running_mean": np.array([-300.0, 0.0, 0.0], np.float32),
             "bn.running_var": np.ones(k, np.float32)}
    calib = calibration_batches(x, 5, 50, np.random.default_rng(0))
    ev = evaluate(model, opt, state, {**bn, **stale}, x, y, calibration=calib)
    assert ev["acc_mode_trainbn"] < 0.4                       # stale statistics: class 0 everywhere
    assert ev["acc_mode"] > 0.95                              # recalibrated
    plain = evaluate(model, opt, state, {**bn, **stale}, x, y)
    assert plain["acc_mode"] == ev["acc_mode_trainbn"] and "acc_mode_trainbn" not in plain


def test_mean_prediction_recalibrates_each_sampled_network_on_the_same_weight_samples(rng, monkeypatch):
    model, params, bn = _trained_mlp(rng)
    opt = BayesBiNN(N=100, tau=1.0, numerics="exact", lam_init=0.5)
    state = opt.init({k: v.astype(np.float32) for k, v in params.items()}, rng)
    bn = {k: v.astype(np.float32) for k, v in bn.items()}
    x, y = rng.standard_normal((50, 10)).astype(np.float32), rng.integers(0, 3, 50)
    calib = calibration_batches(x, 2, 20, np.random.default_rng(3))
    seen, real = [], ev_mod.recalibrator

    def spy(model_, batches, bn_state):          # records the weights of every recalibrated network
        fn = real(model_, batches, bn_state)
        return lambda w: (seen.append({k: v.copy() for k, v in w.items()}), fn(w))[1]
    monkeypatch.setattr(ev_mod, "recalibrator", spy)
    ev = evaluate(model, opt, state, bn, x, y, samples=3, rng=np.random.default_rng(9), calibration=calib)
    assert len(seen) == 1 + 3                                      # the mode, then each sample
    np.testing.assert_array_equal(seen[0]["fc1.weight"], opt.params(state)["fc1.weight"])
    plain = evaluate(model, opt, state, bn, x, y, samples=3, rng=np.random.default_rng(9))
    assert ev["acc_mean_trainbn"] == plain["acc_mean"] and ev["nll_mean_trainbn"] == plain["nll_mean"]
    assert ev["acc_mode_trainbn"] == plain["acc_mode"]


def test_fit_reports_recalibrated_and_training_statistics(rng):
    x = rng.standard_normal((120, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    data = Data(x[:80], y[:80], x[80:100], y[80:100], x[100:], y[100:])
    model = models.mlp_mnist(in_features=6, hidden=(8,), classes=2)
    cfg = TrainConfig(epochs=1, batch_size=20, quiet=True, recalibrate_bn=2, diagnostics=False)
    res = fit(model, BayesBiNN(N=80, tau=1.0, lr=1e-2, numerics="exact"), data, softmax_cross_entropy,
              cfg, log=lambda m: None)
    rec = res["history"]["epochs"][0]
    assert {"val_acc_mode", "val_acc_mode_trainbn", "test_acc_mode", "test_acc_mode_trainbn"} <= set(rec)
    summ = res["summary"]
    assert summ["test_acc_mode_trainbn_at_best_val"] == rec["test_acc_mode_trainbn"]
    assert summ["test_acc_mode_at_best_val"] == rec["test_acc_mode"]


def test_calibration_batches_are_drawn_without_replacement_and_checked():
    x = np.arange(30, dtype=np.float64).reshape(15, 2)
    b = calibration_batches(x, 3, 5, np.random.default_rng(0))
    assert [a.shape for a in b] == [(5, 2)] * 3
    rows = np.concatenate(b)[:, 0]
    assert len(set(rows)) == 15                                     # one permutation: all distinct
    assert len(calibration_batches(x, 4, 5, np.random.default_rng(0))) == 4   # wraps to a new permutation
    with pytest.raises(ValueError, match="k must be"):
        calibration_batches(x, 0, 5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="batch_size must be"):
        calibration_batches(x, 1, 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="rng"):
        calibration_batches(x, 1, 5, None)


def test_calibration_batches_of_a_small_set_hold_every_row_once():
    """n = 7 < batch_size = 10: each of the K batches is a permutation of all 7 rows (no repeats,
    which would bias the unbiased batch variance)."""
    x = np.arange(14, dtype=np.float64).reshape(7, 2)
    b = calibration_batches(x, 3, 10, np.random.default_rng(0))
    assert [a.shape for a in b] == [(7, 2)] * 3
    for a in b:
        assert sorted(a[:, 0]) == list(x[:, 0])


def test_calibration_batches_wrap_to_a_fresh_permutation():
    """n = 6, K*b = 12: rows 0-5 and 6-11 of the drawn order are two permutations, drawn apart."""
    x = np.arange(6, dtype=np.float64).reshape(6, 1)
    rows = np.concatenate(calibration_batches(x, 4, 3, np.random.default_rng(0)))[:, 0]   # (12,)
    assert sorted(rows[:6]) == sorted(rows[6:]) == list(range(6))
    assert not np.array_equal(rows[:6], rows[6:])          # 1/720 chance of equality for this seed


def test_calibration_batches_draw_their_permutations_from_the_given_generator():
    """The rows are rng.permutation(n), then a fresh one as needed, from the caller's generator
    (never a global stream), so the same seed gives the same batches here and in a port."""
    x = np.arange(15, dtype=np.float64).reshape(15, 1)
    rng = np.random.default_rng(11)
    want = np.concatenate([rng.permutation(15), rng.permutation(15)])[:20]         # K*b = 4*5 rows
    got = np.concatenate(calibration_batches(x, 4, 5, np.random.default_rng(11)))[:, 0]
    np.testing.assert_array_equal(got, want)


def test_degenerate_inputs_raise_value_errors(rng):
    with pytest.raises(ValueError, match="at least 2 rows"):
        calibration_batches(np.zeros((1, 3)), 2, 5, np.random.default_rng(0))
    for shape in ((1, 3), (1, 3, 1, 1)):                     # one value per channel: no variance
        with pytest.raises(ValueError, match="more than one value per channel"):
            batch_moments(np.zeros(shape))
    for shape in ((4,), (4, 2, 3)):                         # neither (N, C) nor (N, C, H, W)
        with pytest.raises(ValueError, match=r"x must have shape \(N, C\) or \(N, C, H, W\)"):
            batch_moments(np.zeros(shape))
    model, params, bn = _trained_mlp(rng)
    with pytest.raises(ValueError, match="batches is empty"):
        recalibrate_bn(model, params, [], bn)


def test_recalibrated_float32_statistics_keep_the_states_dtype(rng):
    """Sums in float64, the result rounded to the dtype of the given (float32) state."""
    model, params, bn = _trained_mlp(rng)
    batches = calibration_batches(rng.standard_normal((60, 10)), 3, 20, np.random.default_rng(2))
    ref = _reference_stats(params, batches, eps=1e-4)
    new = recalibrate_bn(model, params, batches, {k: v.astype(np.float32) for k, v in bn.items()})
    for name, (mean, var) in ref.items():
        for key, want in (("running_mean", mean), ("running_var", var)):
            assert new[f"{name}.{key}"].dtype == np.float32
            np.testing.assert_allclose(new[f"{name}.{key}"], want, rtol=1e-7)     # float32 rounding


def test_a_model_without_batchnorm_is_returned_unchanged(rng):
    model = Sequential(Dense(3, 2, name="fc"))
    params, bn = model.init(rng)
    assert recalibrate_bn(model, params, [rng.standard_normal((4, 3))], bn) is bn


def test_evaluate_command_recalibrates(tmp_path, data_root):
    from refbinn.cli import main
    import json
    assert main(["train", "--dataset", "mnist", "--optimizer", "bayesbinn", "--numerics", "exact", "--tau", "0.5",
                 "--epochs", "1", "--max-train", "300", "--hidden", "16", "--quiet", "--eval-samples", "0",
                 "--out", str(tmp_path), "--name", "tiny", "--no-diagnostics"]) == 0
    ck = tmp_path / "runs" / "tiny" / "checkpoint.npz"
    assert main(["evaluate", str(ck), "--samples", "2", "--recalibrate-bn", "3", "--out", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "evaluate_tiny.json").read_text())
    assert out["recalibrate_bn"] == 3
    for split in ("val", "test"):
        assert {"acc_mode", "acc_mode_trainbn", "acc_mean", "acc_mean_trainbn"} <= set(out[split])
    assert main(["evaluate", str(ck), "--recalibrate-bn", "-1", "--out", str(tmp_path)]) == 2
