"""`refbinn evaluate --ood` and scripts/run_uncertainty.py on tiny MNIST checkpoints (1 epoch,
600 images, 64-wide MLP): the tables, the JSON, both PNGs, and numbers equal to refbinn.predict's."""
import json
import warnings

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
    assert res["command"].startswith("refbinn evaluate ") and "--name fm" in res["command"]   # main's argv


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
    # a group matching nothing: one error line and exit 2 (it was a traceback)
    capsys.readouterr()
    assert mod.main(["--group", f"X={tmp_path}/nothing*", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run_uncertainty.py: error: --group X: no checkpoint matches" in err[0]


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


# ---- fast tests on small hand-made inputs (no MNIST training) -------------------------------

def hand_made_run(lam_init, classes=3, seed=0):
    """A one-layer binary network 2 -> classes without bias (zero input: uniform p) with a
    BayesBiNN posterior; |lam_init| = 1e4 makes every sample the mode."""
    from refbinn.nn import Dense, Sequential
    from refbinn.optim import BayesBiNN
    model = Sequential(Dense(2, classes, bias=False, name="fc"))
    params, bn_state = model.init(np.random.default_rng(seed), np.float64)
    opt = BayesBiNN(N=100, tau=1.0, lam_init=lam_init)
    return {"label": "hand", "path": "hand/checkpoint.npz", "model": model, "opt": opt,
            "opt_state": opt.init(params, np.random.default_rng(seed)), "bn_state": bn_state,
            "dataset": "mnist", "optimizer": "bayesbinn", "seed": 0, "epoch": 1}


def test_can_sample_asks_the_binary_optimizer_of_a_partition():
    from refbinn.optim import Adam, BayesBiNN, Partition, STEAdam
    from refbinn.experiments.uncertainty import can_sample
    kinds = {"fc.weight": "binary", "fc.bias": "real"}
    assert can_sample(BayesBiNN(N=10, tau=1.0)) and not can_sample(STEAdam())
    assert can_sample(Partition(BayesBiNN(N=10, tau=1.0), Adam(), kinds))
    assert not can_sample(Partition(STEAdam(), Adam(), kinds))       # the Partition itself has sample_params


def test_run_label_is_the_checkpoints_folder():
    from refbinn.experiments.uncertainty import run_label
    assert run_label("results/runs/abc/checkpoint.npz") == "abc"
    assert run_label("/checkpoint.npz") == "/checkpoint.npz"            # no folder name: the path


def test_evaluation_sets_of_toy_data():
    """Snelson (regression) has no classification test set; two moons without OOD sets is
    fine, and its test points are those of the run's seed."""
    with pytest.raises(ValueError, match="need a classification test set; 'snelson' has none"):
        evaluation_sets("snelson", [])
    x, y, sets, status = evaluation_sets("two-moons", [], data_seed=1, max_test=20)
    data, _ = load_data("two-moons", None, split=0.1, seed=1)
    np.testing.assert_array_equal(x, data.x_test[:20])
    np.testing.assert_array_equal(y, data.y_test[:20])
    assert (sets, status) == ({}, {})


def test_evaluation_sets_streams_and_sizes(data_root, tmp_path):
    """Each OOD set is drawn from Generator([seed, 2, index in OOD_SETS]), whatever else is
    asked for; a named set is cut to the first max_test images, like the test set."""
    from refbinn.data.ood import OOD_SETS, gaussian_noise, uniform_noise
    (tmp_path / "mnist").symlink_to(data_root / "mnist")
    fake_mnist(tmp_path, "fashion-mnist")                               # 30 images
    x, y, sets, status = evaluation_sets("mnist", ["uniform", "gaussian", "fashion-mnist"],
                                         root=tmp_path, seed=3, max_test=10)
    assert x.shape == (10, 784) and y.shape == (10,)
    assert status == {"uniform": "n = 10", "gaussian": "n = 10", "fashion-mnist": "n = 10"}
    assert sets["fashion-mnist"].shape == (10, 784)
    for name, draw in (("uniform", uniform_noise), ("gaussian", gaussian_noise)):
        want = draw(10, (784,), "mnist", np.random.default_rng([3, 2, OOD_SETS.index(name)]))
        np.testing.assert_array_equal(sets[name], want)
    _, _, alone, _ = evaluation_sets("mnist", ["gaussian"], root=tmp_path, seed=3, max_test=10)
    np.testing.assert_array_equal(alone["gaussian"], sets["gaussian"])


def test_prediction_rows_score_ood_inputs_as_out():
    """Confident test inputs against zero inputs (uniform p, entropy log K, counted in the last
    histogram bin although rounding puts it above log K): the entropy and
    1 - max p separate them perfectly, AUROC = 1 in the direction test = in, OOD = out."""
    from refbinn.experiments.uncertainty import HIST_BINS, prediction_rows
    run = hand_made_run(lam_init=1e4, classes=5)       # K = 5: H(uniform p) = log K + 1 ulp, clipped to log K
    x = 50.0 * np.random.default_rng(1).standard_normal((40, 2))
    y = np.zeros(40, np.int64)
    rows = prediction_rows(run, x, y, {"zeros": np.zeros((20, 2))}, samples=(3,), bins=4)
    assert [(r["prediction"], r["samples"]) for r in rows] == [("mode", None), ("mean", 3)]
    for r in rows:
        o = r["ood"]["zeros"]
        assert o["auroc_entropy"] == 1.0 and o["auroc_maxprob"] == 1.0
        assert o["entropy_out"] == pytest.approx(np.log(5), rel=1e-12)
        assert len(r["test"]["calibration"]["edges"]) == 4 + 1
        h = r["entropy_hist"]
        assert len(h["edges"]) == HIST_BINS + 1 and len(h["test"]) == len(h["zeros"]) == HIST_BINS
        assert h["edges"][0] == 0.0 and h["edges"][-1] == pytest.approx(np.log(5), rel=1e-15)
        assert sum(h["test"]) == 40 and h["zeros"][-1] == 20           # entropy log K: in the last bin


def test_prediction_rows_use_the_same_networks_for_test_and_ood():
    """The mean's networks come from Generator([seed, 1]) (|lam| = 0.3: samples differ), and
    an OOD set equal to the test set gets the same mean predictions: every score ties,
    AUROC = 0.5, and its mean entropy is the test set's."""
    from refbinn.experiments.uncertainty import prediction_rows
    run = hand_made_run(lam_init=0.3)
    x = np.random.default_rng(2).standard_normal((30, 2))
    y = np.random.default_rng(3).integers(0, 3, 30)
    rows = prediction_rows(run, x, y, {"copy": x.copy()}, samples=(5,), seed=4)
    p = predict_mean(run["model"], run["opt"], run["opt_state"], run["bn_state"], x, 5,
                     np.random.default_rng([4, 1]), link="classes")
    assert rows[1]["test"]["nll"] == nll(p, y)
    assert rows[1]["test"]["nll"] != nll(predict_mean(run["model"], run["opt"], run["opt_state"], run["bn_state"],
                                                      x, 5, np.random.default_rng([4, 2]), link="classes"), y)
    for r in rows:
        assert r["ood"]["copy"]["auroc_entropy"] == 0.5 and r["ood"]["copy"]["auroc_maxprob"] == 0.5
        assert r["ood"]["copy"]["entropy_out"] == r["test"]["entropy"]
        assert r["entropy_hist"]["copy"] == r["entropy_hist"]["test"]


@pytest.mark.parametrize("kwargs, message", [
    ({"samples": (2, 0)}, r"samples must be an integer in \[1, inf\), got 0"),
    ({"bins": 0}, r"bins must be an integer in \[1, inf\), got 0"),
    ({"seed": -1}, r"seed must be an integer in \[0, inf\), got -1"),
    ({"average": "mean"}, "average must be one of 'prob', 'logits'"),
    ({"max_test": 0}, r"max_test must be an integer in \[1, inf\), got 0"),
    ({"recalibrate_bn": -1}, r"recalibrate_bn must be an integer in \[0, inf\), got -1"),
    ({"ood": ["uniform", "svhn"]}, "OOD set must be one of 'uniform'"),
], ids=["samples", "bins", "seed", "average", "max_test", "recalibrate_bn", "ood"])
def test_evaluate_checkpoints_checks_its_arguments_before_loading(tmp_path, kwargs, message):
    from refbinn.experiments.uncertainty import evaluate_checkpoints
    missing = str(tmp_path / "no" / "checkpoint.npz")                  # never opened
    with pytest.raises(ValueError, match=message):
        evaluate_checkpoints([missing], **kwargs)
    with pytest.raises(ValueError, match="at least one checkpoint"):
        evaluate_checkpoints([])


def hand_made_result(bins=10, ood=True):
    """What evaluate_checkpoints returns, for two rows with B = ``bins`` ECE bins."""
    edges = np.linspace(0, 1, bins + 1).tolist()
    cal = {"edges": edges, "counts": [0] * (bins - 2) + [3, 7], "confidence": [None] * (bins - 2) + [0.85, 0.97],
           "accuracy": [None] * (bins - 2) + [0.67, 1.0]}
    test = {"acc": 0.9, "nll": 0.3, "brier": 0.1, "ece": 0.05, "entropy": 0.2, "calibration": cal}
    o = {"auroc_entropy": 0.8, "aupr_entropy": 0.7, "auroc_maxprob": 0.75, "aupr_maxprob": 0.65,
         "entropy_in": 0.2, "entropy_out": 1.5}
    hist = {"edges": np.linspace(0, np.log(10), 31).tolist(), "test": [10] + [0] * 29, "uniform": [0] * 29 + [10]}
    rows = [{"run": "r", "checkpoint": "r/checkpoint.npz", "prediction": p, "samples": s, "test": test,
             "ood": {"uniform": o} if ood else {}, "entropy_hist": hist if ood else {"edges": hist["edges"], "test": hist["test"]}}
            for p, s in (("mode", None), ("mean", 2))]
    return {"settings": {"bins": bins}, "rows": rows}


def test_tables_name_the_rows_and_the_bins():
    from refbinn.experiments.uncertainty import tables
    text = tables(hand_made_result(bins=10, ood=False))
    assert "ECE (10 bins)" in text and "mean (C=2)" in text and "mode " in text
    assert "AUROC" not in text                                         # no OOD set: no second table
    assert "AUROC (H)" in tables(hand_made_result(bins=10, ood=True))


def test_plots_are_written_or_not(tmp_path, capsys):
    from refbinn.experiments.uncertainty_plots import entropy_histograms, reliability_diagram
    if not HAVE_MPL:
        pytest.skip("needs matplotlib (the plots extra)")
    rows = hand_made_result(ood=True)["rows"][:1]                      # one row, one OOD set: a 1 x 1 grid
    assert reliability_diagram(rows, str(tmp_path / "r.png")) and (tmp_path / "r.png").stat().st_size > 0
    assert entropy_histograms(rows, str(tmp_path / "e.png")) and (tmp_path / "e.png").stat().st_size > 0
    empty = hand_made_result(ood=True)["rows"][:1]
    empty[0]["entropy_hist"]["uniform"] = [0] * 30                     # an OOD set of no inputs: no bars, no NaN
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert entropy_histograms(empty, str(tmp_path / "e0.png")) and (tmp_path / "e0.png").exists()
    assert not entropy_histograms([], str(tmp_path / "none.png"))
    assert not entropy_histograms(hand_made_result(ood=False)["rows"], str(tmp_path / "none.png"))
    assert "no OOD set: no entropy histogram written" in capsys.readouterr().out
    assert not (tmp_path / "none.png").exists()


def test_without_a_working_matplotlib_only_the_json_is_written(tmp_path, monkeypatch, capsys):
    """A broken matplotlib install (ImportError, not only ModuleNotFoundError) counts as none."""
    import sys
    from refbinn.experiments.uncertainty import write_outputs
    from refbinn.experiments.uncertainty_plots import entropy_histograms, reliability_diagram

    class Broken:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "matplotlib":
                raise ImportError("matplotlib is broken")

    for mod in [m for m in sys.modules if m.split(".")[0] == "matplotlib"]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(sys, "meta_path", [Broken(), *sys.meta_path])
    result = hand_made_result(ood=True)
    assert not reliability_diagram(result["rows"], str(tmp_path / "r.png"))
    assert not entropy_histograms(result["rows"], str(tmp_path / "e.png"))
    assert write_outputs(result, str(tmp_path), "x", log=lambda m: None) == [str(tmp_path / "uncertainty_x.json")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["uncertainty_x.json"]
    assert "matplotlib is not installed" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, message", [
    ({"max_test": 0}, r"max_test must be an integer in \[1, inf\), got 0"),
    ({"max_test": -5}, r"max_test must be an integer in \[1, inf\), got -5"),    # was: all but the last 5
    ({"seed": -1}, r"seed must be an integer in \[0, inf\), got -1"),
    ({"data_seed": -1}, r"data_seed must be an integer in \[0, inf\), got -1"),
], ids=["max_test=0", "max_test=-5", "seed", "data_seed"])
def test_evaluation_sets_checks_its_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluation_sets("two-moons", [], **kwargs)


@pytest.mark.parametrize("seed", [-1, 1.5])
def test_prediction_rows_checks_the_seed(seed):
    from refbinn.experiments.uncertainty import prediction_rows
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, inf\)"):
        prediction_rows(hand_made_run(lam_init=0.3), np.zeros((4, 2)), np.zeros(4, np.int64), {}, seed=seed)


def test_toy_checkpoints_are_evaluated_on_their_own_seeds_test_points(tmp_path):
    """Two moons draws its test points from the run's seed: runs with seeds 1 and 2, evaluated
    together, are each scored on load_data(seed)'s test set (not seed 0's, not each other's)."""
    from refbinn.experiments.uncertainty import evaluate_checkpoints
    paths, want = [], []
    for seed in (1, 2):
        run("two-moons", "ste", f"moons_s{seed}", dict(epochs=1, seed=seed), out=str(tmp_path), quiet=True,
            log=lambda m: None)
        paths.append(str(tmp_path / "runs" / f"moons_s{seed}" / "checkpoint.npz"))
        r = load_run(paths[-1])
        nlls = []
        for data_seed in (0, 1, 2):
            data, _ = load_data("two-moons", None, split=0.1, seed=data_seed)
            p = predict_mode(r["model"], r["opt"], r["opt_state"], r["bn_state"], data.x_test, link="classes")
            nlls.append(nll(p, data.y_test))
        assert len(set(nlls)) == 3                                     # the three test sets score differently
        want.append(nlls[seed])
    res = evaluate_checkpoints(paths, log=lambda m: None)
    assert [row["test"]["nll"] for row in res["rows"]] == want
