"""`refbinn evaluate --ood` and scripts/run_uncertainty.py on tiny MNIST checkpoints (1 epoch,
600 images, 64-wide MLP): the tables, the JSON, both PNGs, and numbers equal to refbinn.predict's."""
import json

import numpy as np
import pytest

from refbinn.bn_recalibration import calibration_batches, recalibrator
from refbinn.cli import main
from refbinn.experiments import load_data, run
from refbinn.experiments.uncertainty import evaluation_sets, load_run
from refbinn.metrics import calibration, nll
from refbinn.predict import predict_mean, predict_mode

from test_ood import fake_mnist
from test_scripts import load

try:
    import matplotlib   # noqa: F401
    HAVE_MPL = True
except ImportError:
    HAVE_MPL = False

RUNS = {"mnist_bayesbinn_s0": ("bayesbinn", 0), "mnist_bayesbinn_s1": ("bayesbinn", 1),
        "mnist_ste_s0": ("ste", 0), "mnist_vispa_s0": ("vispa", 0)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, data_root):
    """The tiny checkpoints, and a data root with MNIST and a fake Fashion-MNIST (30 images)."""
    out = tmp_path_factory.mktemp("uncertainty")
    for name, (optimizer, seed) in RUNS.items():
        run("mnist", optimizer, name, dict(epochs=1, max_train=600, eval_samples=2, seed=seed,
                                           model_kwargs={"hidden": (64, 64, 64)}),
            out=str(out), root=data_root, quiet=True, log=lambda m: None)
    with_fashion = out / "data"
    with_fashion.mkdir()
    (with_fashion / "mnist").symlink_to(data_root / "mnist")
    fake_mnist(with_fashion, "fashion-mnist")
    return out, {name: out / "runs" / name / "checkpoint.npz" for name in RUNS}


def test_evaluate_ood_writes_one_table_json_and_both_pngs(tiny, data_root, tmp_path, capsys):
    out, ck = tiny
    if not HAVE_MPL:
        pytest.skip("needs matplotlib (the plots extra)")
    args = ["evaluate", str(ck["mnist_bayesbinn_s0"]), str(ck["mnist_ste_s0"]), str(ck["mnist_vispa_s0"]),
            "--ood", "uniform", "gaussian", "permuted", "fashion-mnist", "--samples", "2", "3",
            "--max-test", "300", "--out", str(tmp_path), "--data-root", str(data_root)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "ECE (15 bins)" in text and "AUROC (H)" in text and "AUPR (1-max p)" in text
    res = json.loads((tmp_path / "uncertainty_uncertainty.json").read_text())
    got = [(r["run"], r["prediction"], r["samples"]) for r in res["rows"]]
    assert got == [("mnist_bayesbinn_s0", "mode", None), ("mnist_bayesbinn_s0", "mean", 2),
                   ("mnist_bayesbinn_s0", "mean", 3), ("mnist_ste_s0", "mode", None),
                   ("mnist_vispa_s0", "mode", None), ("mnist_vispa_s0", "ensemble", 2),
                   ("mnist_vispa_s0", "ensemble", 3)]
    status = res["ood_sets"]["mnist"]
    assert status["fashion-mnist"].startswith("skipped: not found in") and status["uniform"] == "n = 300"
    for r in res["rows"]:
        assert set(r["ood"]) == {"uniform", "gaussian", "permuted"}
        assert sum(r["test"]["calibration"]["counts"]) == 300
        assert sum(r["entropy_hist"]["test"]) == 300 and sum(r["entropy_hist"]["gaussian"]) == 300
        assert all(0.0 <= v <= 1.0 for m in r["ood"].values() for v in
                   (m["auroc_entropy"], m["aupr_entropy"], m["auroc_maxprob"], m["aupr_maxprob"]))
    for png in ("reliability_uncertainty.png", "entropy_uncertainty.png"):
        assert (tmp_path / png).stat().st_size > 20_000


def test_evaluate_numbers_are_refbinn_predicts(tiny, data_root, tmp_path):
    """Full test set, calibration only: the mode's accuracy is the one training logged for the
    same weights; the mean's numbers are those of predict_mean with the documented stream."""
    out, ck = tiny
    assert main(["evaluate", str(ck["mnist_bayesbinn_s0"]), "--ood", "--samples", "2", "--bins", "10",
                 "--out", str(tmp_path), "--data-root", str(data_root)]) == 0
    res = json.loads((tmp_path / "uncertainty_mnist_bayesbinn_s0.json").read_text())
    mode, mean = res["rows"]
    history = json.loads((out / "mnist_bayesbinn_s0.json").read_text())["history"]
    assert mode["test"]["acc"] == history[-1]["test_acc_mode"]
    r = load_run(ck["mnist_bayesbinn_s0"])
    x, y, sets, _ = evaluation_sets("mnist", [], root=data_root)
    assert sets == {} and len(x) == 10000
    p = predict_mean(r["model"], r["opt"], r["opt_state"], r["bn_state"], x, 2, np.random.default_rng([0, 1]),
                     link="classes")
    assert mean["test"]["acc"] == float(np.mean(p.argmax(1) == y))
    assert mean["test"]["ece"] == pytest.approx(calibration(p, y, 10).ece, rel=1e-12)
    assert mode["test"]["nll"] == pytest.approx(history[-1]["test_nll_mode"], rel=1e-12)
    if HAVE_MPL:
        assert (tmp_path / "reliability_mnist_bayesbinn_s0.png").exists()
        assert not (tmp_path / "entropy_mnist_bayesbinn_s0.png").exists()       # no OOD set: no histogram


def test_named_ood_set_when_present(tiny, tmp_path):
    out, ck = tiny
    assert main(["evaluate", str(ck["mnist_ste_s0"]), "--ood", "fashion-mnist", "permuted", "--max-test", "100",
                 "--name", "fm", "--out", str(tmp_path), "--data-root", str(out / "data")]) == 0
    res = json.loads((tmp_path / "uncertainty_fm.json").read_text())
    assert res["ood_sets"]["mnist"] == {"fashion-mnist": "n = 30", "permuted": "n = 100"}
    assert sum(res["rows"][0]["entropy_hist"]["fashion-mnist"]) == 30


def test_ood_needs_an_image_set_other_than_the_own(data_root, capsys):
    with pytest.raises(ValueError, match="OOD sets need an image data set"):
        evaluation_sets("two-moons", ["uniform"])
    with pytest.raises(ValueError, match="is the checkpoint's own data set"):
        evaluation_sets("mnist", ["mnist"], root=data_root, max_test=10)


def test_evaluate_without_ood_keeps_its_old_output(tiny, data_root, tmp_path, capsys):
    out, ck = tiny
    assert main(["evaluate", str(ck["mnist_ste_s0"]), "--samples", "2", "--out", str(tmp_path),
                 "--data-root", str(data_root)]) == 0
    assert "acc (mode)" in capsys.readouterr().out
    ev = json.loads((tmp_path / "evaluate_mnist_ste_s0.json").read_text())
    assert set(ev) == {"checkpoint", "epoch", "meta", "average", "val", "test"}


def test_run_uncertainty_script_averages_over_seeds(tiny, data_root, tmp_path, capsys):
    out, _ = tiny
    mod = load("run_uncertainty")
    assert mod.main(["--group", f"BayesBiNN={out}/runs/mnist_bayesbinn_s*/checkpoint.npz",
                     "--group", f"STE-Adam={out}/runs/mnist_ste_s*/checkpoint.npz",
                     "--ood", "uniform", "permuted", "--samples", "2", "--max-test", "200",
                     "--out", str(tmp_path), "--data-root", str(data_root)]) == 0
    text = capsys.readouterr().out
    assert "AUROC(H) uniform" in text and " +- " in text
    res = json.loads((tmp_path / "uncertainty_seeds.json").read_text())
    agg = {(a["group"], a["prediction"]): a for a in res["aggregate"]}
    assert set(agg) == {("BayesBiNN", "mode"), ("BayesBiNN", "mean"), ("STE-Adam", "mode")}
    b = agg[("BayesBiNN", "mode")]
    accs = [r["test"]["acc"] for r in res["rows"] if r["group"] == "BayesBiNN" and r["prediction"] == "mode"]
    assert b["checkpoints"] == 2 and b["acc"] == [np.mean(accs), np.std(accs, ddof=1)]
    assert agg[("STE-Adam", "mode")]["ece"][1] is None                      # one seed: no std
    assert set(k for k in b if "/" in k) == {f"{s}/{m}" for s in ("uniform", "permuted") for m in
                                             ("auroc_entropy", "aupr_entropy", "auroc_maxprob", "aupr_maxprob")}
    if HAVE_MPL:
        assert (tmp_path / "reliability_seeds.png").exists() and (tmp_path / "entropy_seeds.png").exists()
    with pytest.raises(ValueError, match="no checkpoint matches"):
        mod.main(["--group", f"X={tmp_path}/nothing*", "--out", str(tmp_path)])


def test_evaluate_ood_recalibrates_bn(tiny, data_root, tmp_path):
    """--recalibrate-bn K with --ood: every network is evaluated with BatchNorm statistics
    recomputed from the same K training batches (Generator([seed, 3])), as predict does
    with a recalibrator; not with the statistics saved by training."""
    out, ck = tiny
    assert main(["evaluate", str(ck["mnist_bayesbinn_s0"]), "--ood", "--samples", "2", "--max-test", "500",
                 "--recalibrate-bn", "3", "--out", str(tmp_path), "--data-root", str(data_root)]) == 0
    res = json.loads((tmp_path / "uncertainty_mnist_bayesbinn_s0.json").read_text())
    assert res["settings"]["recalibrate_bn"] == 3
    mode, mean = res["rows"]
    r = load_run(ck["mnist_bayesbinn_s0"])
    x, y, _, _ = evaluation_sets("mnist", [], root=data_root, max_test=500)
    # the run's own training split: its --max-train 600 images less the validation split
    train, _ = load_data("mnist", str(data_root), split=0.1, seed=0, max_train=600)
    recal = recalibrator(r["model"], calibration_batches(train.x_train, 3, 100, np.random.default_rng([0, 3])),
                         r["bn_state"])
    args = (r["model"], r["opt"], r["opt_state"], r["bn_state"], x)
    p_mode = predict_mode(*args, link="classes", bn_state_for=recal)
    p_mean = predict_mean(*args, 2, np.random.default_rng([0, 1]), link="classes", bn_state_for=recal)
    assert mode["test"]["nll"] == pytest.approx(nll(p_mode, y), rel=1e-12)
    assert mean["test"]["nll"] == pytest.approx(nll(p_mean, y), rel=1e-12)
    assert mode["test"]["nll"] != pytest.approx(nll(predict_mode(*args, link="classes"), y), rel=1e-6)


@pytest.mark.parametrize("argv, folder", [
    (["runs/myrun/checkpoint.npz"], "entropy_myrun.png"),                     # named by the run's folder
    (["runs/a/checkpoint.npz", "runs/b/checkpoint.npz"], "uncertainty_uncertainty.json"),
    (["runs/a/checkpoint.npz", "--name", "x"], "reliability_x.png"),
])
def test_evaluate_refuses_an_output_file_that_is_a_folder_before_evaluating(tmp_path, capsys, monkeypatch,
                                                                             argv, folder):
    def no_work(*args, **kwargs):
        raise AssertionError("evaluation started")
    monkeypatch.setattr("refbinn.experiments.uncertainty.evaluate_checkpoints", no_work)
    (tmp_path / folder).mkdir()
    assert main(["evaluate", *argv, "--ood", "--out", str(tmp_path)]) == 2
    assert f"the output file {tmp_path / folder} is a folder" in capsys.readouterr().err
