"""Continual learning's checkpoints: a run stopped anywhere and resumed gives the bits of an
uninterrupted one (``run_continual(out_dir=..., resume=True, stop_after=k)`` and ``refbinn
continual --resume``), and what is on disk is checked before any work."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from refbinn.cli import main
from refbinn.experiments import continual
from refbinn.train import load_checkpoint

TASKS, EPOCHS = 3, 2


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 784)).astype(np.float32)
    y = rng.integers(0, 10, 120)
    return x, y, x[:40], y[:40]


def _run(out_dir=None, **kw):
    kw = {"tasks": TASKS, "epochs": EPOCHS, "batch_size": 60, "test_samples": 2, "numerics": "official",
          "prior": "posterior", "quiet": True, "log": lambda m: None, **kw}
    return continual.run_continual(*_data(), out_dir=None if out_dir is None else str(out_dir), **kw)


RESULTS = ("acc_mean", "acc_mode", "tasks_done", "diagnostics", "settings")


def _same_results(a, b):
    np.testing.assert_equal({k: a[k] for k in RESULTS}, {k: b[k] for k in RESULTS})    # NaN equals NaN


def _same_state(a, b):
    """Two task checkpoints hold the same optimizer state and BatchNorm statistics, bit for bit."""
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    untimed = [[{k: v for k, v in rec.items() if not k.startswith(("seconds", "examples_per_s"))}
                for rec in c["history"]["epochs"]] for c in (ca, cb)]
    assert ca["epoch"] == cb["epoch"] and untimed[0] == untimed[1]
    for part in ("lam", "mu"):
        for k, v in getattr(ca["opt_state"], part).items():
            assert np.array_equal(v, getattr(cb["opt_state"], part)[k]), (part, k)
    for k, v in ca["bn_state"].items():
        assert np.array_equal(v, cb["bn_state"][k]), k


@pytest.mark.parametrize("prior, step", [("posterior", 1), ("posterior", 5), ("zero", 2)])
def test_a_run_stopped_anywhere_and_resumed_gives_the_uninterrupted_bits(tmp_path, prior, step):
    # stopped inside every task; across a task's end (5 = 2 + 2 + 1); at each task's end
    whole = _run(tmp_path / "whole", prior=prior)
    assert whole["tasks_done"] == TASKS and whole["epochs_this_call"] == TASKS * EPOCHS
    calls, res = 0, {"tasks_done": 0}
    while res["tasks_done"] < TASKS:
        res = _run(tmp_path / "parts", prior=prior, resume=calls > 0, stop_after=step)
        calls += 1
        assert res["epochs_this_call"] == min(step, TASKS * EPOCHS - step * (calls - 1))
    assert calls == -(-TASKS * EPOCHS // step)
    _same_results(res, whole)
    assert len(res["seconds_per_task"]) == TASKS
    for t in range(1, TASKS + 1):
        _same_state(tmp_path / "whole" / f"task{t}" / "checkpoint.npz",
                    tmp_path / "parts" / f"task{t}" / "checkpoint.npz")
    # the files change nothing: a run without them has the same accuracies
    _same_results(_run(prior=prior), whole)


def test_a_stopped_run_reports_the_tasks_it_finished(tmp_path):
    res = _run(tmp_path, stop_after=3)        # task 1 and half of task 2
    assert res["tasks_done"] == 1 and len(res["seconds_per_task"]) == 1 and len(res["diagnostics"]) == 1
    acc = np.array(res["acc_mean"])
    assert np.isfinite(acc[0, 0]) and np.isnan(acc[1:]).all()
    assert load_checkpoint(tmp_path / "task2" / "checkpoint.npz")["epoch"] == 1
    assert not (tmp_path / "task3").exists()


def test_resuming_a_finished_run_trains_nothing(tmp_path):
    whole = _run(tmp_path)
    again = _run(tmp_path, resume=True)
    assert again["epochs_this_call"] == 0
    _same_results(again, whole)


def test_a_task_started_afresh_removes_the_later_tasks_of_another_run(tmp_path):
    _run(tmp_path)
    (tmp_path / "task7").mkdir()                  # a longer run's; 'notes' is not a task folder
    (tmp_path / "notes").mkdir()
    _run(tmp_path, stop_after=1)                  # not resumed: task 1 starts again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "task1"]
    assert load_checkpoint(tmp_path / "task1" / "checkpoint.npz")["epoch"] == 1


def test_resume_with_other_settings_is_refused(tmp_path):
    _run(tmp_path, stop_after=1)
    with pytest.raises(ValueError, match=r"meta\.continual\.lr 0\.002 \(checkpoint: 0\.001\)"):
        _run(tmp_path, resume=True, lr=2e-3)
    with pytest.raises(ValueError, match=r"meta\.continual\.prior 'zero' \(checkpoint: 'posterior'\)"):
        _run(tmp_path, resume=True, prior="zero")


# -- refbinn continual ----------------------------------------------------------------------------
@pytest.fixture
def no_work(monkeypatch):
    def load_mnist(*args, **kwargs):
        raise AssertionError("continual started")
    monkeypatch.setattr("refbinn.data.load_mnist", load_mnist)


def _checkpoint(tmp_path, prior="posterior", name="continual_permuted_mnist"):
    path = tmp_path / "runs" / name / prior / "task1" / "checkpoint.npz"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize("setup, argv, says", [
    (_checkpoint, [], "already has checkpoints (TMP/runs/continual_permuted_mnist/posterior/task1/"
                      "checkpoint.npz): continue it with --resume, or start it again with --overwrite"),
    (lambda p: _checkpoint(p, "zero"), ["--prior", "zero"], "already has checkpoints"),
    (None, ["--resume"], "--resume: run 'continual_permuted_mnist' has no checkpoint of prior posterior "
                         "or zero in TMP/runs/continual_permuted_mnist; start it without --resume"),
    (lambda p: _checkpoint(p, "zero"), ["--resume", "--prior", "posterior"], "has no checkpoint of prior "
                                                                             "posterior in"),
    (_checkpoint, ["--resume", "--overwrite"], "--resume and --overwrite exclude each other"),
    (lambda p: (p / "continual_permuted_mnist.json").mkdir(), [],
     "the results file TMP/continual_permuted_mnist.json is a folder"),
    (None, ["--stop-after", "0"], "--stop-after must be an integer in [1, inf), got 0"),
])
def test_continual_checks_what_is_on_disk_before_any_work(tmp_path, capsys, no_work, setup, argv, says):
    if setup:
        setup(tmp_path)
    assert main(["continual", "--out", str(tmp_path), *argv]) == 2
    assert says.replace("TMP", str(tmp_path)) in capsys.readouterr().err


def test_continual_command_stopped_and_resumed_matches_an_uninterrupted_run(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(1)                # 200 training and 50 test images, MNIST's types
    images = rng.integers(0, 256, (250, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 250)
    monkeypatch.setattr("refbinn.data.load_mnist", lambda root: SimpleNamespace(
        x_train=images[:200], y_train=labels[:200], x_test=images[200:], y_test=labels[200:]))
    args = ["continual", "--tasks", "2", "--epochs", "2", "--test-samples", "2", "--quiet",
            "--out", str(tmp_path)]
    assert main(args + ["--name", "whole"]) == 0
    whole = json.loads((tmp_path / "whole.json").read_text())
    # 3 epochs: the posterior prior stops in its task 2; then 1 + 2 of the zero prior; then the rest
    for extra in (["--stop-after", "3"], ["--resume", "--stop-after", "3"], ["--resume"]):
        capsys.readouterr()
        assert main(args + ["--name", "parts", *extra]) == 0
        parts = json.loads((tmp_path / "parts.json").read_text())
        stopped = "continue with --resume" in capsys.readouterr().out
        assert stopped == (not parts["complete"]) == (extra != ["--resume"])
    assert whole["complete"] and set(parts) == set(whole) == {"command", "complete", "posterior", "zero"}
    for prior in ("posterior", "zero"):
        _same_results(parts[prior], whole[prior])


# -- refbinn continual: --stop-after over the priors, --overwrite, --max-train, the printed matrix ------
RUN_DIR = ("runs", "continual_permuted_mnist")


def _fake_mnist(monkeypatch, n_train=200):
    """200 training and 50 test images of MNIST's types; the first n_train training images only."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (250, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 250)
    monkeypatch.setattr("refbinn.data.load_mnist", lambda root: SimpleNamespace(
        x_train=images[:n_train], y_train=labels[:n_train], x_test=images[200:], y_test=labels[200:]))


def _continual(tmp_path, *extra):
    assert main(["continual", "--test-samples", "2", "--quiet", "--out", str(tmp_path), *extra]) == 0
    return json.loads((tmp_path / "continual_permuted_mnist.json").read_text())


def test_continual_stop_after_counts_the_epochs_of_both_priors(tmp_path, capsys, monkeypatch):
    _fake_mnist(monkeypatch)
    args = ["--tasks", "2", "--epochs", "2"]
    capsys.readouterr()
    res = _continual(tmp_path, *args, "--stop-after", "3")     # posterior: task 1, half of task 2; zero waits
    assert set(res) == {"command", "complete", "posterior"} and res["posterior"]["tasks_done"] == 1
    out = capsys.readouterr().out
    # the accuracy matrix: one row per task, blank where the task was not reached
    table = out.split("after task t (rows)\n")[1].splitlines()
    assert table[0].split() == ["after", "task", "task", "1", "task", "2"]
    assert [line.split() for line in table[2:4]] == [["1", f"{res['posterior']['acc_mean'][0][0]:.4f}"], ["2"]]
    assert "prior = zero" not in out and "stopped after 3 epochs" in out
    res = _continual(tmp_path, *args, "--resume", "--stop-after", "2")   # 1 epoch of posterior, 1 of zero
    assert (res["posterior"]["tasks_done"], res["zero"]["tasks_done"], res["complete"]) == (2, 0, False)
    assert load_checkpoint(tmp_path.joinpath(*RUN_DIR, "zero", "task1", "checkpoint.npz"))["epoch"] == 1


def test_continual_overwrite_starts_a_run_with_checkpoints_again(tmp_path, capsys, monkeypatch):
    _fake_mnist(monkeypatch)
    args = ["--tasks", "1", "--epochs", "2", "--prior", "zero", "--stop-after", "1"]
    _continual(tmp_path, *args)
    res = _continual(tmp_path, *args, "--overwrite")
    assert res["zero"]["tasks_done"] == 0                      # a resumed run would have finished task 1
    assert load_checkpoint(tmp_path.joinpath(*RUN_DIR, "zero", "task1", "checkpoint.npz"))["epoch"] == 1
    capsys.readouterr()


def test_continual_max_train_keeps_the_first_images(tmp_path, capsys, monkeypatch):
    args = ["--tasks", "1", "--epochs", "1", "--prior", "zero"]
    _fake_mnist(monkeypatch, n_train=150)
    cut = _continual(tmp_path / "cut", *args)
    _fake_mnist(monkeypatch)
    flag = _continual(tmp_path / "flag", *args, "--max-train", "150")
    _same_results(flag["zero"], cut["zero"])
    capsys.readouterr()


def test_continual_command_is_run_continual_on_normalised_mnist(tmp_path, capsys, monkeypatch):
    from refbinn import data as D
    _fake_mnist(monkeypatch)
    ds = D.load_mnist(None)
    res = _continual(tmp_path, "--tasks", "2", "--epochs", "1", "--prior", "zero")["zero"]
    x, xt = (D.normalize(v, "mnist").reshape(len(v), -1) for v in (ds.x_train, ds.x_test))    # (n, 784)
    want = continual.run_continual(x, ds.y_train, xt, ds.y_test, tasks=2, epochs=1, test_samples=2, prior="zero",
                                   numerics="official", quiet=True, log=lambda m: None)
    for k in ("acc_mean", "acc_mode"):                     # a task not yet seen: NaN, null in the JSON
        np.testing.assert_equal(np.array(res[k], dtype=float), want[k])
    for k in ("tasks_done", "diagnostics", "settings"):
        assert res[k] == want[k]
    capsys.readouterr()


@pytest.mark.parametrize("folder, file", [("task1", None), ("task1.old", "checkpoint.npz"),
                                          ("task1", "checkpoint.npz.tmp")])
def test_continual_counts_only_task_checkpoints(tmp_path, capsys, no_work, folder, file):
    # an empty task folder (a run that stopped before its first checkpoint) or a renamed one is no checkpoint
    d = tmp_path.joinpath(*RUN_DIR, "posterior", folder)
    d.mkdir(parents=True)
    if file:
        (d / file).write_bytes(b"")
    assert main(["continual", "--prior", "posterior", "--resume", "--out", str(tmp_path)]) == 2
    assert "--resume: run 'continual_permuted_mnist' has no checkpoint of prior posterior" in capsys.readouterr().err
