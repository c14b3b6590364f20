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
    # --eval-samples only where there is a mean prediction (for the others it is an error: it changes nothing)
    args = ["train", "--dataset", "mnist", "--optimizer", optimizer, "--epochs", "2",
            "--max-train", "600", "--out", str(tmp_path), "--quiet", "--data-root", str(data_root)]
    args += ["--eval-samples", "2"] if optimizer in ("bayesbinn", "vispa") else []
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


# -- evaluate: the run's own splits, --max-test, regression runs; continual --test-samples -----------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_root):
    """One epoch of BayesBiNN on the first 300 MNIST images (270 train, 30 validation), width 16."""
    out = tmp_path_factory.mktemp("tiny_run")
    assert main(["train", "--dataset", "mnist", "--optimizer", "bayesbinn", "--epochs", "1", "--max-train", "300",
                 "--hidden", "16", "--eval-samples", "2", "--quiet", "--out", str(out), "--name", "tiny",
                 "--data-root", str(data_root)]) == 0
    return out, json.loads((out / "tiny.json").read_text())


def test_evaluate_uses_the_runs_max_train_split(tiny_run, data_root, tmp_path, capsys, monkeypatch):
    out, res = tiny_run
    ck = out / "runs" / "tiny" / "checkpoint.npz"
    assert main(["evaluate", str(ck), "--samples", "2", "--out", str(tmp_path), "--data-root", str(data_root)]) == 0
    ev = json.loads((tmp_path / "evaluate_tiny.json").read_text())
    last = res["history"][-1]
    # the validation split of the run (30 of its 300 images), not 6000 of the full training set,
    # some of which the run trained on: the same weights give the same numbers as the training's
    assert (ev["val"]["acc_mode"], ev["val"]["nll_mode"]) == (last["val_acc_mode"], last["val_nll_mode"])
    assert round(ev["val"]["acc_mode"] * 30, 9) == int(round(ev["val"]["acc_mode"] * 30))
    # --recalibrate-bn draws its batches from the run's 270 training images, in both evaluate paths
    import refbinn.bn_recalibration as bnr
    from refbinn.experiments import uncertainty
    seen, real = [], bnr.calibration_batches

    def spy(x, *args):
        seen.append(len(x))
        return real(x, *args)
    monkeypatch.setattr(bnr, "calibration_batches", spy)
    monkeypatch.setattr(uncertainty, "calibration_batches", spy)
    assert main(["evaluate", str(ck), "--samples", "2", "--recalibrate-bn", "2", "--out", str(tmp_path / "r"),
                 "--data-root", str(data_root)]) == 0
    assert main(["evaluate", str(ck), "--samples", "2", "--recalibrate-bn", "2", "--ood", "--max-test", "50",
                 "--out", str(tmp_path / "r"), "--data-root", str(data_root)]) == 0
    assert seen == [270, 270]
    capsys.readouterr()


def test_evaluate_max_test_limits_the_test_set(tiny_run, data_root, tmp_path, capsys):
    from refbinn.experiments import load_data
    from refbinn.train import evaluate, load_checkpoint
    from refbinn.train.checkpoint_check import model_of
    out, _ = tiny_run
    ck = out / "runs" / "tiny" / "checkpoint.npz"
    assert main(["evaluate", str(ck), "--samples", "0", "--max-test", "50", "--out", str(tmp_path),
                 "--data-root", str(data_root)]) == 0
    ev = json.loads((tmp_path / "evaluate_tiny.json").read_text())
    assert ev["max_test"] == 50
    c = load_checkpoint(ck)
    data, _ = load_data("mnist", data_root)
    want = evaluate(model_of(ck, c["config"]), c["opt"], c["opt_state"], c["bn_state"], data.x_test[:50],
                    data.y_test[:50])
    assert ev["test"]["acc_mode"] == want["acc_mode"] and ev["test"]["nll_mode"] == want["nll_mode"]
    capsys.readouterr()


def test_evaluate_of_a_regression_run_is_an_error(tmp_path, capsys):
    assert main(["train", "--dataset", "snelson", "--optimizer", "ste", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path), "--name", "sn"]) == 0
    capsys.readouterr()
    ck = tmp_path / "runs" / "sn" / "checkpoint.npz"
    assert main(["evaluate", str(ck), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "'snelson', a regression set with no validation or test split" in err
    assert not (tmp_path / "evaluate_sn.json").exists()


def test_continual_test_samples_must_be_positive(tmp_path, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("continual started")
    monkeypatch.setattr("refbinn.data.load_mnist", no_work)
    assert main(["continual", "--test-samples", "0", "--out", str(tmp_path)]) == 2
    assert "--test-samples must be an integer in [1, inf), got 0" in capsys.readouterr().err


def test_train_refuses_a_results_file_that_is_a_folder_before_training(tmp_path, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("training started")
    monkeypatch.setattr("refbinn.train.fit", no_work)
    (tmp_path / "sn.json").mkdir()
    assert main(["train", "--dataset", "snelson", "--optimizer", "ste", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path), "--name", "sn"]) == 2
    assert f"the results file {tmp_path / 'sn.json'} is a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sn.json"]


@pytest.mark.parametrize("name", ["demo.json", "two_moons.png", "snelson.png"])
def test_demo_refuses_an_output_file_that_is_a_folder_before_training(tmp_path, capsys, monkeypatch, name):
    def no_work(*args, **kwargs):
        raise AssertionError("training started")
    monkeypatch.setattr("refbinn.experiments.demo.two_moons", no_work)
    (tmp_path / name).mkdir()
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 2
    assert f"the output file {tmp_path / name} is a folder" in capsys.readouterr().err


def test_results_record_the_arguments_given_to_main_not_the_host_process(tmp_path):
    # main(argv) called from a program (here pytest) recorded the program's own sys.argv
    import shlex
    out = tmp_path / "with space"
    argv = ["train", "--dataset", "snelson", "--optimizer", "ste", "--epochs", "1", "--quiet",
            "--out", str(out), "--name", "sn"]
    assert main(argv) == 0
    command = json.loads((out / "sn.json").read_text())["command"]
    assert command == shlex.join(["refbinn", *argv]) and shlex.split(command)[1:] == argv
