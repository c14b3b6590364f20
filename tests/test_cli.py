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


# -- evaluate, one checkpoint: what reaches the evaluation, what is printed, which path -------------------
def _evaluate_tiny(tiny_run, data_root, out, *extra):
    ck = tiny_run[0] / "runs" / "tiny" / "checkpoint.npz"
    assert main(["evaluate", str(ck), *extra, "--out", str(out), "--data-root", str(data_root)]) == 0
    return ck


def test_evaluate_draws_samples_from_seed_and_prints_every_number(data_root, tmp_path, capsys):
    from refbinn.experiments import load_data
    from refbinn.train import evaluate, load_checkpoint
    from refbinn.train.checkpoint_check import model_of
    # |lambda| 0.5 at init: the weight samples differ from the mode (at 10 they all equal it)
    assert main(["train", "--dataset", "mnist", "--optimizer", "bayesbinn", "--epochs", "1", "--max-train", "200",
                 "--hidden", "8", "--lam-init", "0.5", "--eval-samples", "0", "--quiet", "--out", str(tmp_path),
                 "--name", "soft", "--data-root", str(data_root)]) == 0
    ck = tmp_path / "runs" / "soft" / "checkpoint.npz"
    c = load_checkpoint(ck)
    data, _ = load_data("mnist", data_root, seed=c["config"]["seed"], max_train=200)
    model = model_of(ck, c["config"])
    evs = {}
    for seed in (5, 6):
        capsys.readouterr()
        assert main(["evaluate", str(ck), "--samples", "3", "--seed", str(seed), "--max-test", "40",
                     "--out", str(tmp_path / str(seed)), "--data-root", str(data_root)]) == 0
        ev = evs[seed] = json.loads((tmp_path / str(seed) / "evaluate_soft.json").read_text())
        rng = np.random.default_rng(seed)                 # val first, then test, from one stream
        for split, x, y in (("val", data.x_val, data.y_val), ("test", data.x_test[:40], data.y_test[:40])):
            assert ev[split] == evaluate(model, c["opt"], c["opt_state"], c["bn_state"], x, y, samples=3, rng=rng)
        lines = [line.split() for line in capsys.readouterr().out.splitlines()]
        for split in ("val", "test"):
            e = ev[split]
            assert [split] + [f"{e[k]:.4f}" for k in ("acc_mode", "acc_mean", "nll_mode", "nll_mean")] in lines
    assert evs[5]["test"]["nll_mean"] != evs[6]["test"]["nll_mean"]


@pytest.mark.parametrize("extra", [["--samples", "1", "2"], ["--ood"]])
def test_evaluate_with_several_counts_or_ood_writes_the_uncertainty_tables(tiny_run, data_root, tmp_path,
                                                                           capsys, extra):
    # --ood given with no set name still asks for calibration (and no OOD set)
    _evaluate_tiny(tiny_run, data_root, tmp_path, *extra, "--max-test", "20")
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["uncertainty_tiny.json"]
    capsys.readouterr()


def test_both_evaluate_paths_recalibrate_batchnorm_alike(tiny_run, data_root, tmp_path, capsys):
    # the single-checkpoint table and the calibration table draw the same K training batches
    args = ["--samples", "1", "--recalibrate-bn", "2", "--max-test", "40"]
    _evaluate_tiny(tiny_run, data_root, tmp_path / "one", *args)
    _evaluate_tiny(tiny_run, data_root, tmp_path / "unc", *args, "--ood")
    one = json.loads((tmp_path / "one" / "evaluate_tiny.json").read_text())
    rows = json.loads((tmp_path / "unc" / "uncertainty_tiny.json").read_text())["rows"]
    mode = next(r for r in rows if r["prediction"] == "mode")
    assert one["recalibrate_bn"] == 2
    assert one["test"]["acc_mode"] == mode["test"]["acc"]
    np.testing.assert_allclose(one["test"]["nll_mode"], mode["test"]["nll"], rtol=1e-12)
    capsys.readouterr()


def test_evaluate_averages_as_the_runs_preset_unless_told(data_root, tmp_path, capsys):
    assert main(["train", "--dataset", "mnist", "--optimizer", "bayesbinn", "--preset", "authors", "--epochs", "1",
                 "--max-train", "200", "--hidden", "8", "--eval-samples", "1", "--quiet", "--out", str(tmp_path),
                 "--name", "au", "--data-root", str(data_root)]) == 0
    ck = tmp_path / "runs" / "au" / "checkpoint.npz"
    for extra, average in (([], "logits"), (["--average", "prob"], "prob")):
        assert main(["evaluate", str(ck), "--samples", "1", "--max-test", "20", *extra, "--out", str(tmp_path),
                     "--data-root", str(data_root)]) == 0
        assert json.loads((tmp_path / "evaluate_au.json").read_text())["average"] == average
    capsys.readouterr()


def test_evaluate_of_a_toy_run_reports_its_test_split(tmp_path, capsys):
    # two moons has no validation split: the test split is still evaluated
    assert main(["train", "--dataset", "two-moons", "--optimizer", "bayesbinn", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path), "--name", "tm"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "runs" / "tm" / "checkpoint.npz"), "--samples", "2",
                 "--out", str(tmp_path)]) == 0
    ev = json.loads((tmp_path / "evaluate_tm.json").read_text())
    assert "val" not in ev and 0.0 <= ev["test"]["acc_mode"] <= 1.0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:-1]] == ["test"]


def test_continual_defaults_are_the_papers_settings():
    # Section 9: 5 tasks, 100 epochs per task, lr 1e-3, tau 1e-2, 100 test samples, |lambda| 10 at init
    from refbinn.cli import build_parser
    a = build_parser().parse_args(["continual"])
    assert (a.tasks, a.epochs, a.lr, a.tau, a.test_samples, a.lam_init, a.reweight) == (5, 100, 1e-3, 1e-2, 100,
                                                                                       10.0, 1.0)
    assert (a.prior, a.numerics, a.preset, a.seed, a.max_train, a.stop_after) == ("both", "official", "paper", 0,
                                                                                 None, None)
    e = build_parser().parse_args(["evaluate", "ck.npz"])
    assert (e.samples, e.seed, e.bins, e.recalibrate_bn, e.ood, e.average) == ([10], 0, 15, 0, None, None)


# -- main: its arguments and --debug ---------------------------------------------------------------
@pytest.fixture
def no_continual(monkeypatch):
    def load_mnist(*args, **kwargs):
        raise AssertionError("continual started")
    monkeypatch.setattr("refbinn.data.load_mnist", load_mnist)


def test_main_takes_sys_argv_or_any_objects_as_arguments(tmp_path, capsys, monkeypatch, no_continual):
    says = "--test-samples must be an integer in [1, inf), got 0"
    monkeypatch.setattr("sys.argv", ["refbinn", "continual", "--test-samples", "0", "--out", str(tmp_path)])
    assert main() == 2 and says in capsys.readouterr().err
    assert main(["continual", "--test-samples", 0, "--out", tmp_path]) == 2     # an int, a Path: as str()
    assert says in capsys.readouterr().err


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_command_shows_the_traceback(tmp_path, capsys, monkeypatch, no_continual,
                                                               where):
    monkeypatch.delenv("REFBINN_DEBUG", raising=False)
    argv = ["continual", "--test-samples", "0", "--out", str(tmp_path)]
    assert main(["--debug", *argv] if where == "before" else [*argv, "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "--test-samples must be an integer in [1, inf), got 0" in err


@pytest.mark.parametrize("argv", [["--ood"], ["--samples", "3", "0"]])
def test_evaluate_tables_refuse_samples_0_naming_the_option(tmp_path, capsys, argv):
    # the single-checkpoint table takes 0 (the mode only); the calibration tables' rows need >= 1
    assert main(["evaluate", "x/checkpoint.npz", "--samples", "0", *argv, "--out", str(tmp_path)]) == 2
    assert ("--samples (with --ood, several checkpoints or several counts) must be an integer in [1, inf), "
            "got 0") in capsys.readouterr().err


def test_continual_python_and_command_line_defaults_agree():
    """run_continual's keyword defaults are `refbinn continual`'s (numerics was 'exact' in Python,
    'official' on the command line: at tau = 1e-2 the exact numerics do not train)."""
    import inspect
    from refbinn.cli import build_parser
    from refbinn.experiments.continual import run_continual
    args = build_parser().parse_args(["continual"])
    params = inspect.signature(run_continual).parameters
    for name in ("numerics", "tasks", "epochs", "lr", "tau", "lam_init", "test_samples", "seed", "reweight"):
        assert params[name].default == getattr(args, name), name
