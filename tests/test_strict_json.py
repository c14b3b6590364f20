"""Results JSON is strict JSON (RFC 8259): a NaN or inf is written as ``null``, never as the
``NaN`` / ``Infinity`` tokens that jq, JavaScript's JSON.parse and serde_json refuse; and the
readers take a ``null`` as the missing value a ``NaN`` was (files written before still read).
"""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from refbinn.io import json_dumps, jsonable, write_json

REPO = Path(__file__).resolve().parents[1]
NAN, INF = float("nan"), float("inf")


def strict_loads(text):
    """``json.loads`` that refuses NaN, Infinity and -Infinity, as a strict parser does."""
    def refuse(token):
        raise ValueError(f"not strict JSON: {token}")
    return json.loads(text, parse_constant=refuse)


def script(name):
    """Import scripts/NAME.py as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"strict_json_{name}", REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_both(root, name, doc):
    """``doc`` as ROOT/nan/NAME (Python's default json: NaN tokens, as files written before) and as
    ROOT/null/NAME (``write_json``); returns the two roots."""
    for sub, text in (("nan", json.dumps(doc, indent=1)), ("null", json_dumps(doc, indent=1))):
        path = root / sub / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "nan", root / "null"


# -- the writer ----------------------------------------------------------------------------------------
def test_non_finite_values_become_null_in_any_container():
    doc = {"float": NAN, "inf": INF, "minus_inf": -INF, "f64": np.float64(NAN), "f32": np.float32(INF),
           "f16": np.float16(-INF), "zero_d": np.array(NAN), "array": np.array([[1.5, NAN], [-INF, 2.0]]),
           "array32": np.array([NAN, 0.25], dtype=np.float32), "nested": [{"a": (NAN, 1)}, [np.float32(NAN)]],
           "kept": [0.5, np.float32(0.5), 3, np.int64(3), True, np.bool_(False), None, "NaN"]}
    want = {"float": None, "inf": None, "minus_inf": None, "f64": None, "f32": None, "f16": None,
            "zero_d": None, "array": [[1.5, None], [None, 2.0]], "array32": [None, 0.25],
            "nested": [{"a": [None, 1]}, [None]], "kept": [0.5, 0.5, 3, 3, True, False, None, "NaN"]}
    assert jsonable(doc) == want
    assert strict_loads(json_dumps(doc)) == want
    assert strict_loads(json_dumps(doc, indent=1)) == want


def test_write_json_files_are_strict(tmp_path):
    path = tmp_path / "r.json"
    write_json(path, {"acc": np.array([[0.9, NAN], [0.8, 0.95]]), "ratio": INF, "seed": np.int64(1)})
    assert strict_loads(path.read_text()) == {"acc": [[0.9, None], [0.8, 0.95]], "ratio": None, "seed": 1}


def test_a_non_finite_value_out_of_reach_fails_instead_of_writing_nan():
    with pytest.raises(ValueError):          # a float dict key is not converted: allow_nan=False refuses it
        json_dumps({NAN: 1})


def tracked_results():
    """results/**/*.json less the git-ignored run folders (results/runs/, results/sweeps/*/runs/)."""
    out = []
    for p in (REPO / "results").rglob("*.json"):
        parts = p.relative_to(REPO / "results").parts
        if parts[0] != "runs" and not (parts[0] == "sweeps" and parts[2:3] == ("runs",)):
            out.append(p)
    return sorted(out)


def test_there_are_results_files():
    assert len(tracked_results()) > 20


@pytest.mark.parametrize("path", tracked_results(), ids=lambda p: str(p.relative_to(REPO)))
def test_results_files_are_strict_json(path):
    strict_loads(path.read_text())


# -- the readers: null reads as NaN did ------------------------------------------------------------------
def continual_run(seed):
    """What ``run_continual`` returns for 2 tasks: NaN above the diagonal; seed 2 a NaN ratio for task 2."""
    return {"prior": "posterior", "acc_mean": [[0.9 + 0.01 * seed, NAN], [0.7, 0.92]],
            "acc_mode": [[0.89, NAN], [0.69, 0.91]], "seconds_per_task": [1.0, 1.0],
            "diagnostics": [{"data_over_prior": 3.0 + seed, "ratio_median": 2.0},
                            {"data_over_prior": NAN if seed == 2 else 1.0}]}


def test_continual_ratio_summary_reads_null_as_nan(tmp_path):
    mod = script("run_continual_ratio")
    runs = {"official_rw10": {str(s): continual_run(s) for s in (1, 2)}}
    old, new = write_both(tmp_path, "continual_ratio.json", {"runs": runs})
    want = mod.summarize(runs, 2)
    assert want["official_rw10"]["data_over_prior_per_task"] == [4.5, 1.0]      # NaN left out
    for root in (old, new):
        got = mod.summarize(json.loads((root / "continual_ratio.json").read_text())["runs"], 2)
        assert got == want


def test_paper_math_reads_null_as_nan(tmp_path):
    pytest.importorskip("matplotlib")
    mod = script("paper_math")
    # one issue-15 run (paper_math needs one) with a NaN in its in-epoch diagnostics
    epochs = [{"epoch": 1, "seconds": 10.0, "test_acc_mode": 0.8, "test_acc_mode_trainbn": 0.7,
               "diagnostics": {"all": {"scale_p99": 2.0, "lam_abs_max": 5.0},
                               "steps": [{"step": 1, "all": {"scale_p99": NAN, "lam_abs_max": 3.0}}]}}]
    history = {"config": {"epochs": 1, "seed": 0, "n_train": 100, "batch_size": 100}, "epochs": epochs,
               "summary": {"best_val_epoch": 1, "test_acc_mode_at_best_val": 0.8, "test_acc_mode_last": 0.8}}
    write_both(tmp_path, "sweeps/issue15_bn_scale/runs/mnist_bayesbinn_s0/history.json", history)
    retention = {"tasks": 2, "runs": {
        f"{side}_s{s}": {"side": side, "seed": s, "acc": continual_run(s)["acc_mean"], "avg_after_last": 0.8,
                         "task1_after_last": 0.7,
                         "diagnostics": continual_run(s)["diagnostics"] if side == "refbinn" else None}
        for side in ("authors", "refbinn") for s in (1, 2)}}
    write_both(tmp_path, "retention/retention.json", retention)
    ratio = {"settings": {"tasks": 2, "max_train": None}, "configs": {"official_rw10": {"reweight": 10.0}},
             "runs": {"official_rw10": {str(s): continual_run(s) for s in (1, 2)}}}
    old, new = write_both(tmp_path, "retention/continual_ratio.json", ratio)
    for root in (old, new):
        assert mod.main(["--results", str(root), "--out", str(root / "pm")]) == 0
    for name in ("summary.json", "summary.md"):
        assert (new / "pm" / name).read_text() == (old / "pm" / name).read_text()
    doc = strict_loads((new / "pm" / "summary.json").read_text())
    ratio = doc["continual_ratio"]["official_rw10"]
    assert ratio["data_over_prior_per_task"] == [4.5, None] and ratio["task1_after_last"]["values"] == [0.7, 0.7]
    assert doc["settings"]["bn_scale: base"]["steps_mean"] == [[1, None, 3.0], [1, 2.0, 5.0]]


def permuted_quick_settings(mod):
    """The settings that ``run_permuted_mnist --quick`` records (and ``--resume`` compares)."""
    q = mod.QUICK
    return dict(tasks=q["tasks"], epochs=q["epochs"], batch_size=mod.BATCH_SIZE, lr=mod.LR, tau=mod.TAU,
                lam_init=mod.LAM_INIT, test_samples=q["test_samples"], numerics=mod.NUMERICS, seed=mod.SEED,
                max_train=q["max_train"], max_test=q["max_test"])


def test_permuted_mnist_resume_reads_null_as_nan(tmp_path, data_root, capsys):
    mod = script("run_permuted_mnist")
    doc = {"experiment": "permuted_mnist", "settings": permuted_quick_settings(mod),
           "posterior": continual_run(1), "zero": continual_run(2)}
    outputs = []
    for root in write_both(tmp_path, "permuted_mnist.json", doc):   # done before: --resume trains nothing
        capsys.readouterr()
        assert mod.main(["--quick", "--resume", "--out", str(root), "--data-root", str(data_root)]) == 0
        outputs.append(capsys.readouterr().out.replace(str(root), "OUT"))
    assert outputs[0] == outputs[1] and "skipped (--resume)" in outputs[1]



# -- --resume with every run already in the file -----------------------------------------------------
def test_permuted_mnist_resume_reports_the_priors_it_kept(tmp_path, data_root, capsys):
    # both priors in the file: --resume trains nothing and still tabulates both
    mod = script("run_permuted_mnist")
    doc = {"settings": permuted_quick_settings(mod), "posterior": continual_run(1), "zero": continual_run(2)}
    (tmp_path / "permuted_mnist.json").write_text(json_dumps(doc))
    assert mod.main(["--quick", "--resume", "--out", str(tmp_path), "--data-root", str(data_root)]) == 0
    out = capsys.readouterr().out
    summary = out[out.index("After task 2"):]
    assert "posterior  70.00" in summary and "zero       70.00" in summary and "81.00" in summary
    assert mod.summarize(doc)["zero"] == {"task1_after_last": 0.7, "average_after_last": 0.81, "seconds": 2.0}


def test_continual_ratio_resume_with_every_run_done(tmp_path, data_root, capsys):
    mod = script("run_continual_ratio")
    q = mod.QUICK
    settings = dict(tasks=q["tasks"], epochs=q["epochs"], test_samples=q["test_samples"], max_train=q["max_train"],
                    max_test=q["max_test"], prior="posterior", preset="paper")
    doc = {"settings": settings, "configs": {k: mod.CONFIGS[k] for k in ("official_rw1", "official_rw10")},
           "runs": {"official_rw1": {"0": continual_run(0)}, "official_rw10": {"0": continual_run(1)}}}
    (tmp_path / "continual_ratio.json").write_text(json_dumps(doc))
    res = mod.main(["--quick", "--resume", "--out", str(tmp_path), "--data-root", str(data_root),
                    "--configs", "official_rw1"])
    out = capsys.readouterr().out
    assert "skipped (--resume)" in out and "official_rw10" in out
    # the run kept from the file is summarised, and its configuration listed with it
    assert set(res["summary"]) == set(res["configs"]) == {"official_rw1", "official_rw10"}
    assert res["summary"]["official_rw1"]["avg_after_last"] == [0.81, 0.0]

def test_sweep_report_reads_a_null_loss_as_nan(tmp_path):
    pytest.importorskip("matplotlib")
    from refbinn.sweep import write_report
    for seed, first_loss in ((0, NAN), (1, 2.0), (2, 3.0)):       # a NaN loss in the first epoch of one seed
        run = {"name": f"a_s{seed}", "settings": {"dataset": "mnist", "optimizer": "bayesbinn"},
               "sweep_run": {"setting": "a", "seed": seed, "point": {}},
               "summary": {"epochs_run": 2, "test_acc_mode_last": 0.9},
               "history": [{"epoch": e + 1, "seconds": 1.0, "train_loss": loss, "test_acc_mode": 0.9}
                           for e, loss in enumerate((first_loss, 0.01))]}
        old, new = write_both(tmp_path, f"sweep/runs/a_s{seed}.json", run)
    for root in (old, new):
        write_report(str(root / "sweep"))
        assert (root / "sweep" / "curves.png").stat().st_size > 1000
    for name in ("report.json", "report.md"):
        assert (new / "sweep" / name).read_text() == (old / "sweep" / name).read_text()



def test_checkpoint_history_is_strict_json_with_a_current_summary(tmp_path):
    """The checkpoint's copy of the history held Infinity where history.json has null, and the
    summary of the epoch before (a resumed run's had none): now strict, and current."""
    import numpy as np
    from refbinn.cli import main
    from refbinn.models import build_model
    from refbinn.optim.registry import make
    from refbinn.train import load_checkpoint
    from refbinn.train.checkpoint import save_checkpoint
    model = build_model("mlp_toy", {"in_features": 2, "out_features": 1})
    params, bn = model.init(np.random.default_rng(0))
    opt = make("adam")
    save_checkpoint(tmp_path / "ck.npz", opt=opt, opt_state=opt.init(params), bn_state=bn,
                    rngs={"data": np.random.default_rng(0)}, epoch=1,
                    history={"epochs": [{"x": float("inf"), "y": float("nan")}]}, config={})
    text = str(np.load(tmp_path / "ck.npz")["history"])
    assert "Infinity" not in text and "NaN" not in text
    assert load_checkpoint(tmp_path / "ck.npz")["history"]["epochs"] == [{"x": None, "y": None}]
    assert main(["train", "--dataset", "two-moons", "--optimizer", "ste", "--epochs", "2", "--out",
                 str(tmp_path / "o"), "--quiet"]) == 0
    ck = load_checkpoint(tmp_path / "o" / "runs" / "two-moons_ste" / "checkpoint.npz")
    assert ck["history"]["summary"]["epochs_run"] == 2 == ck["epoch"]          # was 1: a lagging summary


def test_the_readme_lists_the_keys_of_a_runs_files(tmp_path, data_root):
    """The README's table of a training run's files names these keys: a renamed or added key
    must be written there too."""
    import json
    from refbinn.cli import main
    assert main(["train", "--dataset", "mnist", "--optimizer", "bayesbinn", "--epochs", "1", "--max-train", "200",
                 "--hidden", "8", "--out", str(tmp_path), "--quiet", "--name", "r", "--data-root", str(data_root)]) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    hist = json.loads((tmp_path / "runs" / "r" / "history.json").read_text())
    assert set(res) == {"name", "command", "settings", "summary", "history", "wall_seconds_this_invocation"}
    assert set(res["settings"]) == {"dataset", "optimizer", "preset", "epochs", "batch_size", "seed",
                                    "optimizer_settings", "model", "eval_samples", "max_train"}
    assert set(hist) == {"config", "epochs", "summary"} and res["history"] == hist["epochs"]
    assert set(hist["summary"]) == {"epochs_run", "best_val_epoch", "val_acc_mode_best", "test_acc_mode_at_best_val",
                                    "test_acc_mode_last", "test_acc_mean_last", "last", "train_seconds"}
    assert {"epoch", "lr", "train_loss", "train_acc_running", "val_acc_mode", "val_nll_mode", "test_acc_mode",
            "test_nll_mode", "seconds", "examples_per_s"} <= set(hist["epochs"][0])
