"""The training loop: determinism, bit-identical resume, checkpoints, history."""
import json
import os

import numpy as np
import pytest

from refbinn import models
from refbinn.train import schedules
from refbinn.nn.losses import softmax_cross_entropy
from refbinn.optim.bayesbinn import BayesBiNN
from refbinn.optim.ste import STEAdam
from refbinn.train import Data, TrainConfig, fit, load_checkpoint


def _data(seed=0, n=240, d=12, k=3):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((d, k))
    x = rng.standard_normal((n + 120, d)).astype(np.float32)
    y = (x @ w).argmax(1)
    return Data(x[:n], y[:n], x[n:n + 60], y[n:n + 60], x[n + 60:], y[n + 60:])


def _model():
    return models.mlp_mnist(in_features=12, hidden=(16, 16, 16), classes=3)


@pytest.mark.parametrize("make_opt", [
    lambda n: BayesBiNN(lr=1e-2, tau=0.5, samples=2, N=n, numerics="exact"),
    lambda n: BayesBiNN(lr=1e-2, tau=1e-10, samples=1, N=n, numerics="official"),
    lambda n: STEAdam(lr=1e-2),
], ids=["bayesbinn-exact-S2", "bayesbinn-official", "ste"])
def test_resume_is_bit_identical(tmp_path, make_opt):
    data = _data()
    cfg = TrainConfig(epochs=4, batch_size=40, seed=3, eval_samples=2, quiet=True)
    sched = schedules.cosine(1e-2, 4)
    full = fit(_model(), make_opt(data.n_train), data, softmax_cross_entropy, cfg, schedule=sched,
               out_dir=str(tmp_path / "full"), log=lambda m: None)
    # Interrupted run: stopped after 2 epochs, then restarted from the checkpoint
    # with fresh objects, as a new process would.
    fit(_model(), make_opt(data.n_train), data, softmax_cross_entropy, cfg, schedule=sched,
        out_dir=str(tmp_path / "cut"), log=lambda m: None, stop_after=2)
    resumed = fit(_model(), make_opt(data.n_train), data, softmax_cross_entropy, cfg, schedule=sched,
                  out_dir=str(tmp_path / "cut"), resume=True, log=lambda m: None)
    for f in full["opt_state"]._fields:
        a, b = getattr(full["opt_state"], f), getattr(resumed["opt_state"], f)
        if isinstance(a, dict):
            for k in a:
                np.testing.assert_array_equal(a[k], b[k], err_msg=f"{f}[{k}]")
        else:
            assert a == b or np.array_equal(a, b), f
    for k in full["bn_state"]:
        np.testing.assert_array_equal(full["bn_state"][k], resumed["bn_state"][k])
    strip = lambda h: [{k: v for k, v in e.items() if k not in ("seconds", "examples_per_s",
                                                                         "seconds_diagnostics")} for e in h]
    assert strip(full["history"]["epochs"]) == strip(resumed["history"]["epochs"])


def test_same_seed_same_numbers_and_different_seed_differs():
    data = _data()
    run = lambda seed: fit(_model(), BayesBiNN(lr=1e-2, tau=0.5, N=data.n_train), data,
                           softmax_cross_entropy, TrainConfig(epochs=1, batch_size=40, seed=seed, quiet=True),
                           log=lambda m: None)["opt_state"].lam
    a, b, c = run(1), run(1), run(2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_history_and_checkpoint_written(tmp_path):
    data = _data()
    cfg = TrainConfig(epochs=2, batch_size=40, seed=0, quiet=True)
    fit(_model(), BayesBiNN(lr=1e-2, tau=0.5, N=data.n_train), data, softmax_cross_entropy, cfg,
        out_dir=str(tmp_path), log=lambda m: None)
    hist = json.loads((tmp_path / "history.json").read_text())
    assert [e["epoch"] for e in hist["epochs"]] == [1, 2]
    s = hist["summary"]
    assert s["best_val_epoch"] in (1, 2)
    best = hist["epochs"][s["best_val_epoch"] - 1]
    assert s["test_acc_mode_at_best_val"] == best["test_acc_mode"]
    ck = load_checkpoint(tmp_path / "checkpoint.npz")
    assert ck["epoch"] == 2 and set(ck["rngs"]) == {"data", "noise", "drop"}
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f], "temporary files left behind"


def test_training_learns_something():
    data = _data(n=600)
    cfg = TrainConfig(epochs=10, batch_size=50, seed=0, quiet=True)
    res = fit(_model(), BayesBiNN(lr=1e-3, tau=1e-10, N=data.n_train, numerics="official"), data,
              softmax_cross_entropy, cfg, log=lambda m: None)
    # Chance is 1/3, with a standard error of 0.06 on 60 test points: 0.6 is > 4 SE above it.
    # (The loop reaches ~0.85 here; an untrained or broken loop stays near 0.33.)
    assert res["history"]["epochs"][-1]["test_acc_mode"] > 0.6


# -- a minibatch of one row cannot train BatchNorm: refused before the first step ----------------------
@pytest.mark.parametrize("argv, says", [
    (["--dataset", "mnist", "--max-train", "1001", "--batch-size", "900", "--hidden", "8"],
     "--batch-size 900 with 901 training rows (--max-train 1001 less the 10% validation split): the last "
     "minibatch of each epoch has 901 - 1*900 = 1 row"),
    (["--dataset", "mnist", "--batch-size", "11", "--hidden", "8"],
     "--batch-size 11 with 54000 training rows (the mnist training set less the 10% validation split)"),
    (["--dataset", "snelson", "--batch-size", "1"],
     "--batch-size 1 with 200 training rows (the snelson data set): every minibatch has 1 row"),
    (["--dataset", "two-moons", "--batch-size", "1", "--recalibrate-bn", "2"],
     "--recalibrate-bn needs --batch-size >= 2"),
])
def test_one_row_minibatches_are_refused_before_training(argv, says, tmp_path, capsys, monkeypatch, data_root):
    from refbinn.cli import main

    def no_training(*args, **kwargs):
        raise AssertionError("a training step ran")
    monkeypatch.setattr("refbinn.train.loop.train_step", no_training)
    assert main(["train", "--optimizer", "bayesbinn", "--epochs", "1", "--quiet", "--out", str(tmp_path),
                 "--data-root", str(data_root)] + argv) == 2
    err = capsys.readouterr().err
    assert says in err
    assert not (tmp_path / "runs").exists()


def test_continual_one_row_minibatch_is_refused_before_training(tmp_path, capsys, monkeypatch, data_root):
    from refbinn.cli import main
    monkeypatch.setattr("refbinn.train.loop.train_step", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    assert main(["continual", "--max-train", "101", "--epochs", "1", "--tasks", "1", "--quiet",
                 "--out", str(tmp_path), "--data-root", str(data_root)]) == 2
    assert "batch_size 100 with 101 training rows" in capsys.readouterr().err


def test_fit_refuses_a_one_row_minibatch_with_batchnorm_only():
    data = _data(n=41)                                        # 41 = 40 + 1
    cfg = TrainConfig(epochs=1, batch_size=40, seed=0, eval_samples=0, quiet=True)
    with pytest.raises(ValueError, match="batch_size 40 with 41 training rows"):
        fit(_model(), STEAdam(lr=1e-2), data, softmax_cross_entropy, cfg, log=lambda m: None)
    # without BatchNorm a one-row minibatch trains as before
    no_bn = models.mlp_toy(in_features=12, out_features=3)
    fit(no_bn, STEAdam(lr=1e-2), data, softmax_cross_entropy, cfg, log=lambda m: None)
