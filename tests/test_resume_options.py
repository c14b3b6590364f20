"""``refbinn train``'s newer options (sweeps, issue 15) through ``experiments.guard.plan_train``:
they reach ``experiments.build``, apply only where they change something, and on ``--resume``
must equal the checkpoint's, except ``--checkpoint-every`` (how often files are written); and the
edges of the options' ranges (``refbinn.options.check_options``)."""
import json
import shutil

import numpy as np
import pytest

from refbinn.cli import build_parser, main
from refbinn.experiments.guard import plan_train, recorded_settings

RUN = "two-moons_bayesbinn"
TRAIN = ["train", "--dataset", "two-moons", "--optimizer", "bayesbinn", "--epochs", "2", "--quiet"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A two-moons BayesBiNN run of 2 epochs, stopped after 1, with non-default recording options."""
    out = tmp_path_factory.mktemp("resume_options") / "out"
    assert main(TRAIN + ["--stop-after", "1", "--out", str(out), "--eval-mean-every", "1",
                         "--diagnostics-every", "3", "--tau-end", "0.01", "--reweight", "0.5"]) == 0
    return out


def _plan(*argv):
    return plan_train(build_parser().parse_args(["train", *argv]))


def test_new_options_reach_the_overrides(tmp_path):
    plan = _plan("--dataset", "mnist", "--optimizer", "bayesbinn", "--out", str(tmp_path), "--hidden", "16", "8",
                 "--checkpoint-every", "3", "--recalibrate-bn", "2", "--no-diagnostics", "--tau-end", "1e-4",
                 "--eval-mean-every", "5", "--reweight", "0.25")
    o = plan.overrides
    assert o["model_kwargs"] == {"hidden": (16, 8)} and "hidden" not in o
    assert (o["checkpoint_every"], o["recalibrate_bn"], o["diagnostics"], o["tau_end"], o["eval_mean_every"],
            o["reweight"]) == (3, 2, False, 1e-4, 5, 0.25)
    left_out = _plan("--dataset", "mnist", "--optimizer", "bayesbinn", "--out", str(tmp_path)).overrides
    assert "model_kwargs" not in left_out          # None: the preset's (filtered out by build)
    assert all(left_out[k] is None for k in ("checkpoint_every", "recalibrate_bn", "diagnostics",
                                             "diagnostics_every", "tau_end", "eval_mean_every", "reweight"))


@pytest.mark.parametrize("argv,says", [
    (["--dataset", "two-moons", "--optimizer", "bayesbinn", "--hidden", "16"], "--hidden does not apply"),
    (["--dataset", "mnist", "--optimizer", "ste", "--tau-end", "0.1"], "--tau-end does not apply"),
    (["--dataset", "mnist", "--optimizer", "adam", "--reweight", "0.5"], "--reweight does not apply"),
    (["--dataset", "mnist", "--optimizer", "ste", "--diagnostics-every", "2"], "--diagnostics-every does not apply"),
    (["--dataset", "mnist", "--optimizer", "bayesbinn", "--diagnostics-every", "2", "--no-diagnostics"],
     "--diagnostics-every does not apply with --no-diagnostics"),
    # no mean prediction (no sample_params): its sample count and how often it is evaluated change nothing
    (["--dataset", "mnist", "--optimizer", "ste", "--eval-samples", "50"],
     r"--eval-samples does not apply to --optimizer ste \(it applies to bayesbinn, vispa\)"),
    (["--dataset", "mnist", "--optimizer", "adam", "--eval-mean-every", "1"], "--eval-mean-every does not apply"),
    (["--dataset", "two-moons", "--optimizer", "bop", "--eval-samples", "0"], "--eval-samples does not apply"),
    (["--dataset", "mnist", "--optimizer", "ste", "--tau", "1e-3"],
     r"--tau does not apply to --optimizer ste \(it applies to bayesbinn\)"),
    (["--dataset", "mnist", "--optimizer", "pmf", "--samples", "2"], "--samples does not apply to --optimizer pmf"),
    (["--dataset", "two-moons", "--optimizer", "bayesbinn", "--max-train", "100"],
     r"--max-train does not apply to --dataset two-moons \(it applies to mnist, fashion-mnist, cifar10, cifar100\)"),
    (["--dataset", "cifar10", "--optimizer", "ste", "--hidden", "16"],
     r"--hidden does not apply to --dataset cifar10 \(it applies to mnist, fashion-mnist\)"),
])
def test_options_that_would_change_nothing_are_errors(argv, says, tmp_path):
    with pytest.raises(ValueError, match=says):
        _plan(*argv, "--out", str(tmp_path))


@pytest.mark.parametrize("argv", [["--tau-end", "0", "--epochs", "1"], ["--reweight", "-1"], ["--reweight", "inf"],
                                  ["--hidden", "16", "0"], ["--eval-mean-every", "-1"], ["--recalibrate-bn", "-2"],
                                  ["--diagnostics-every", "-1"], ["--checkpoint-every", "0"]])
def test_new_options_are_range_checked_before_any_work(argv, tmp_path, capsys):
    assert main(["train", "--dataset", "mnist", "--optimizer", "bayesbinn", "--out", str(tmp_path / "o"),
                 "--data-root", str(tmp_path / "none"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and argv[0] + " must be" in err[0] and not (tmp_path / "o").exists()


def test_resume_takes_the_checkpoint_settings(base):
    plan = _plan("--name", RUN, "--resume", "--out", str(base))
    o = plan.overrides
    assert (plan.dataset, plan.optimizer) == ("two-moons", "bayesbinn")
    assert (o["eval_mean_every"], o["diagnostics_every"], o["diagnostics"], o["recalibrate_bn"]) == (1, 3, True, 0)
    assert (o["tau_end"], o["reweight"], o["checkpoint_every"]) == (0.01, 0.5, 1)
    assert o["model_kwargs"] == {"in_features": 2, "out_features": 1}


@pytest.mark.parametrize("argv,says", [
    (["--tau-end", "0.02"], "--tau-end 0.02 (checkpoint: 0.01)"),
    (["--reweight", "1"], "--reweight 1.0 (checkpoint: 0.5)"),
    (["--eval-mean-every", "2"], "--eval-mean-every 2 (checkpoint: 1)"),
    (["--recalibrate-bn", "4"], "--recalibrate-bn 4 (checkpoint: 0)"),
    (["--diagnostics-every", "5"], "--diagnostics-every 5 (checkpoint: 3)"),
    (["--no-diagnostics"], "--no-diagnostics"),
])
def test_resume_refuses_other_settings(base, argv, says):
    with pytest.raises(ValueError, match="--resume: the command line differs") as e:
        _plan("--name", RUN, "--resume", "--out", str(base), *argv)
    assert says in str(e.value)


def test_resume_with_the_same_settings_or_another_checkpoint_frequency(base):
    same = _plan("--name", RUN, "--resume", "--out", str(base), "--tau-end", "0.01", "--reweight", "0.5",
                 "--eval-mean-every", "1", "--diagnostics-every", "3", "--recalibrate-bn", "0")
    assert same.overrides["tau_end"] == 0.01
    assert _plan("--name", RUN, "--resume", "--out", str(base), "--checkpoint-every", "4").overrides[
        "checkpoint_every"] == 4


def test_resume_with_another_checkpoint_frequency_runs(base, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(base, out)
    assert main(["train", "--name", RUN, "--resume", "--out", str(out), "--quiet", "--checkpoint-every", "5"]) == 0
    res = json.loads((out / f"{RUN}.json").read_text())
    assert res["summary"]["epochs_run"] == 2 and "diagnostics" in res["history"][-1]
    with np.load(out / "runs" / RUN / "checkpoint.npz") as z:
        assert int(z["epoch"]) == 2 and json.loads(str(z["config"]))["checkpoint_every"] == 5


def test_recorded_hidden_widths_and_defaults():
    config = {"seed": 0, "epochs": 3, "meta": {"dataset": "mnist", "optimizer": "ste",
                                               "model": ["mlp_mnist", {}], "settings": {"lr": 1e-3}}}
    saved = recorded_settings(config)
    assert saved["hidden"] == (2048, 2048, 2048)             # mlp_mnist's default widths
    assert (saved["tau_end"], saved["reweight"]) == (None, 1.0)
    config["meta"]["model"][1]["hidden"] = [16, 8]
    assert recorded_settings(config)["hidden"] == (16, 8)


def test_resume_refuses_other_hidden_widths(tmp_path):
    ck = tmp_path / "runs" / "m" / "checkpoint.npz"
    ck.parent.mkdir(parents=True)
    config = {"seed": 0, "epochs": 3, "meta": {"dataset": "mnist", "optimizer": "ste",
                                               "model": ["mlp_mnist", {"hidden": [16]}], "settings": {"lr": 1e-3}}}
    np.savez(ck, config=np.array(json.dumps(config)))
    with pytest.raises(ValueError, match=r"--hidden 32 \(checkpoint: 16\)"):
        _plan("--name", "m", "--resume", "--out", str(tmp_path), "--hidden", "32")
    assert _plan("--name", "m", "--resume", "--out", str(tmp_path), "--hidden", "16").overrides[
        "model_kwargs"] == {"hidden": [16]}


def test_resume_refuses_a_setting_the_checkpoints_optimizer_ignores(tmp_path):
    ck = tmp_path / "runs" / "m" / "checkpoint.npz"
    ck.parent.mkdir(parents=True)
    config = {"seed": 0, "epochs": 3, "meta": {"dataset": "mnist", "optimizer": "ste",
                                               "model": ["mlp_mnist", {}], "settings": {"lr": 1e-3}}}
    np.savez(ck, config=np.array(json.dumps(config)))
    with pytest.raises(ValueError, match="--tau does not apply to --optimizer ste"):   # not recorded: no clash
        _plan("--name", "m", "--resume", "--out", str(tmp_path), "--tau", "1e-3")


@pytest.mark.parametrize("optimizer", ["bayesbinn", "ste", "bop", "pmf", "adam", "vispa"])
def test_eval_samples_apply_to_sampling_optimizers_and_defaults_never_count(optimizer, tmp_path):
    from refbinn.experiments.guard import SAMPLING
    from refbinn.optim.registry import OPTIMIZERS
    assert SAMPLING == ("bayesbinn", "vispa") == tuple(n for n, c in OPTIMIZERS.items() if hasattr(c, "sample_params"))
    plan = _plan("--dataset", "mnist", "--optimizer", optimizer, "--out", str(tmp_path))   # the preset's values
    assert plan.overrides["eval_samples"] is None and plan.overrides["eval_mean_every"] is None
    if optimizer in SAMPLING:
        plan = _plan("--dataset", "mnist", "--optimizer", optimizer, "--eval-samples", "5", "--eval-mean-every", "2",
                     "--out", str(tmp_path))
        assert (plan.overrides["eval_samples"], plan.overrides["eval_mean_every"]) == (5, 2)


# -- refbinn.options: the edges of each range (tests/test_hostile.py tries values far outside them) --------
def _check(*argv):
    from refbinn.options import check_options
    check_options(build_parser().parse_args(list(argv)))


@pytest.mark.parametrize("argv,message", [
    (["--epochs", "0"], "--epochs must be an integer in [1, inf), got 0"),
    (["--lr", "0"], "--lr must be in (0, inf), got 0.0"),
    (["--tau", "0"], "--tau must be in (0, inf), got 0.0"),
    (["--beta", "1"], "--beta must be in [0, 1), got 1.0"),
    (["--batch-size", "0"], "--batch-size must be an integer in [1, inf), got 0"),
    (["--max-train", "9"], "--max-train must be an integer in [10, inf), got 9"),
    (["--seed", str(2 ** 63)], "--seed must be an integer in [0, 9223372036854775807], got 9223372036854775808"),
    (["--hidden", "0", "16"], "--hidden must be an integer in [1, inf), got 0"),
])
def test_train_options_refuse_the_value_just_outside(argv, message, tmp_path):
    with pytest.raises(ValueError) as e:
        _check("train", "--dataset", "mnist", "--optimizer", "bayesbinn", "--out", str(tmp_path), *argv)
    assert str(e.value) == message


def test_options_take_the_edges_of_their_ranges(tmp_path):
    _check("train", "--dataset", "mnist", "--optimizer", "bayesbinn", "--out", str(tmp_path), "--epochs", "1",
           "--beta", "0", "--batch-size", "1", "--max-train", "10", "--seed", str(2 ** 63 - 1), "--samples", "1",
           "--eval-samples", "0", "--reweight", "0", "--lam-init", "-5", "--hidden", "1", "1")
    _check("evaluate", "c.npz", "--samples", "0", "1", "--seed", "0", "--out", str(tmp_path))
    _check("check-trace", "a.npz", "b.npz", "--rtol", "0", "--atol", "0")
    _check("continual", "--test-samples", "1", "--tasks", "1", "--epochs", "1", "--out", str(tmp_path))
