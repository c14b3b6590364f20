"""The refbinn command end to end, on small settings."""
import json

import numpy as np
import pytest

from refbinn.cli import main


def test_demo_quick_writes_json_and_pngs(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("REFBINN_DATA", str(data_root))

    def no_diagnostics(*args, **kwargs):
        # the demo shows none of the training diagnostics, so it must not pay for them
        # (in its full-batch runs they cost as much as the training)
        raise AssertionError("the demo computed training diagnostics")

    monkeypatch.setattr("refbinn.train.loop.Diagnostics", no_diagnostics)
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    d = json.loads((tmp_path / "demo.json").read_text())
    accs = {r["method"]: r["test_acc"] for r in d["two_moons"]["rows"]}
    assert set(accs) == {"BayesBiNN (mode)", "BayesBiNN (mean)", "STE-Adam"}
    assert min(accs.values()) > 0.8          # two moons is easy; chance is 0.5
    assert (tmp_path / "two_moons.png").stat().st_size > 10_000
    assert d["snelson"] is not None and (tmp_path / "snelson.png").exists()


@pytest.fixture
def small_mnist_mlp(monkeypatch):
    """The paper's MLP at width 64 (the full 10M-weight network is exercised by the real runs)."""
    from refbinn.experiments.presets import PAPER
    monkeypatch.setitem(PAPER["mnist"], "model", ("mlp_mnist", {"hidden": (64, 64, 64)}))


@pytest.mark.parametrize("optimizer", ["bayesbinn", "ste", "bop", "pmf", "adam", "vispa"])
def test_train_mnist_smoke_then_resume_and_evaluate(tmp_path, data_root, optimizer, capsys,
                                                    small_mnist_mlp):
    args = ["train", "--dataset", "mnist", "--optimizer", optimizer, "--epochs", "2",
            "--max-train", "600", "--eval-samples", "2", "--out", str(tmp_path), "--quiet",
            "--data-root", str(data_root)]
    assert main(args + ["--stop-after", "1"]) == 0
    res = json.loads((tmp_path / f"mnist_{optimizer}.json").read_text())
    assert res["summary"]["epochs_run"] == 1
    assert 0.0 <= res["summary"]["test_acc_mode_last"] <= 1.0
    # --resume continues from the checkpoint, with its settings (the same as on the command line)
    assert main(args + ["--resume"]) == 0
    res2 = json.loads((tmp_path / f"mnist_{optimizer}.json").read_text())
    assert res2["summary"]["epochs_run"] == 2
    assert res2["history"][0] == res["history"][0]
    assert res2["settings"] == res["settings"] and res2["settings"]["max_train"] == 600
    ck = tmp_path / "runs" / f"mnist_{optimizer}" / "checkpoint.npz"
    assert main(["evaluate", str(ck), "--samples", "2", "--out", str(tmp_path),
                 "--data-root", str(data_root)]) == 0
    assert "acc (mode)" in capsys.readouterr().out
    ev = json.loads((tmp_path / f"evaluate_mnist_{optimizer}.json").read_text())
    assert ev["meta"]["model"] == ["mlp_mnist", {"hidden": [64, 64, 64]}]
    assert ev["test"]["acc_mode"] == res2["history"][-1]["test_acc_mode"]   # same weights, same number


def test_one_step_cifar_on_generated_data(tmp_path):
    from refbinn.data import write_fake_cifar
    write_fake_cifar(tmp_path / "data", kind="cifar10", n_train=50, n_test=20, seed=0)
    args = ["train", "--dataset", "cifar10", "--optimizer", "bayesbinn", "--epochs", "1",
            "--batch-size", "50", "--max-train", "50", "--eval-samples", "0", "--quiet",
            "--out", str(tmp_path / "out"), "--data-root", str(tmp_path / "data")]
    # the paper's VGG at full width is slow on CPU; one step on 45 images still runs every layer
    assert main(args) == 0
    res = json.loads((tmp_path / "out" / "cifar10_bayesbinn.json").read_text())
    assert res["summary"]["epochs_run"] == 1
    assert res["settings"]["optimizer_settings"]["tau"] == 1e-10


def test_bad_arguments_give_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "nope", "--optimizer", "ste"])
    rc = main(["train", "--dataset", "mnist", "--optimizer", "bayesbinn", "--lr", "-1",
               "--epochs", "1", "--max-train", "100", "--quiet", "--out", str(tmp_path),
               "--data-root", str(tmp_path / "missing")])
    assert rc == 2
    assert "error" in capsys.readouterr().err
