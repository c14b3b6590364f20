"""The issue-15 experiment files: sweeps/issue15_*.toml name only settings `refbinn train` /
``experiments.build`` know, and scripts/run_continual_ratio.py runs in its smoke setting."""
import importlib.util
import itertools
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from refbinn.experiments import build
from refbinn.sweep.spec import parse_spec

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted((REPO / "sweeps").glob("issue15_*.toml"))
# the overrides experiments.build uses (plus the sweep file's dataset/optimizer/preset/model)
KNOWN = {"dataset", "optimizer", "preset", "epochs", "batch_size", "max_train", "eval_samples", "lr", "tau",
         "tau_end", "samples", "numerics", "lam_init", "beta", "reweight", "recalibrate_bn", "eval_mean_every",
         "diagnostics_every", "model"}


def test_there_are_sweep_files():
    assert len(SWEEPS) >= 6


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_file_settings_build(path, data_root):
    doc = tomllib.loads(path.read_text())
    assert doc["name"] == path.stem and doc["seeds"]
    base, grid = doc["base"], doc.get("grid", {})
    assert set(base) | set(grid) <= KNOWN, set(base) | set(grid) - KNOWN
    first = {k: v[0] for k, v in grid.items()}
    points = [first] + [{**first, k: v} for k, vs in grid.items() for v in vs[1:]]   # every value once
    for point in points:
        s = {**base, **point}
        over = {k: v for k, v in s.items() if k not in ("dataset", "optimizer", "preset", "model")}
        over["model_kwargs"] = {k: tuple(v) for k, v in s.get("model", {}).items()}
        over["max_train"] = 200
        setup = build(s["dataset"], s["optimizer"], preset=s["preset"], overrides=over, root=data_root)
        assert setup.opt.numerics == s["numerics"] and setup.cfg.recalibrate_bn == s["recalibrate_bn"]
        assert (setup.tau_schedule is None) == ("tau_end" not in s)
    # refbinn sweep expands the file to one run per seed and grid point
    assert len(parse_spec(doc, name=path.stem, path=str(path)).runs) == len(doc["seeds"]) * len(
        list(itertools.product(*grid.values())))


def _load_script(name):
    spec = importlib.util.spec_from_file_location(f"refbinn_script_{name}", REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_continual_ratio_script_quick(tmp_path, data_root):
    mod = _load_script("run_continual_ratio")
    res = mod.main(["--quick", "--out", str(tmp_path), "--data-root", str(data_root), "--quiet",
                    "--configs", "official_rw1", "official_rw10"])
    saved = json.loads((tmp_path / "continual_ratio.json").read_text())
    assert set(saved["summary"]) == {"official_rw1", "official_rw10"}
    d1 = saved["runs"]["official_rw1"]["0"]["diagnostics"]
    d10 = saved["runs"]["official_rw10"]["0"]["diagnostics"]
    assert len(d1) == 2 and d1[0]["data_over_prior"] > 0
    # reweight multiplies the prior term: at task 1 (same start, same data) the prior RMS is larger
    assert d10[0]["prior_rms"] > d1[0]["prior_rms"]
    assert res["summary"]["official_rw1"]["seeds"] == 1
    assert mod.CONFIGS["official_rw1"] == dict(numerics="official", tau=1e-2, lr=1e-3, lam_init=10.0, reweight=1.0)


def test_exact_probes_script_quick(tmp_path, data_root):
    mod = _load_script("run_exact_probes")
    doc = mod.main(["--quick", "--out", str(tmp_path), "--data-root", str(data_root)])
    (row,) = doc["rows"]
    assert row["name"] == "base" and row["curve"] == [row["mode"]] and row["mode_trainbn"] is not None
    assert row["active"] is not None and row["dp"] > 0
    names = [n for n, _ in mod.PROBES]
    assert len(names) == len(set(names))
    committed = json.loads((REPO / "results" / "issue15_probes.json").read_text())
    assert [r["name"] for r in committed["rows"]] == names          # the JSON holds every probe, in order
    assert all(r["over"] == dict(over) for r, (_, over) in zip(committed["rows"], mod.PROBES))
    with pytest.raises(ValueError, match="unknown probes"):
        mod.main(["--only", "nope", "--out", str(tmp_path)])


def test_continual_ratio_script_authors_preset(tmp_path, data_root):
    mod = _load_script("run_continual_ratio")
    mod.main(["--quick", "--out", str(tmp_path), "--data-root", str(data_root), "--quiet",
              "--configs", "official_rw10", "--preset", "authors", "--seeds", "3"])
    saved = json.loads((tmp_path / "continual_ratio.json").read_text())
    assert saved["settings"]["preset"] == "authors" and list(saved["runs"]["official_rw10"]) == ["3"]


# -- validate/authors_cl.py: the side-by-side harness -------------------------------------------
def _authors_printout(tasks, epochs, acc):
    """What main_permute_mnist_CL.py prints: per-epoch rows, then 'test acc:' and the task rows."""
    out = []
    for t in range(tasks):
        for e in range(epochs):
            out.append(f"Epoch[{e}]:")
            out += [f"## Individual Task[{k}], Test Loss:  0.5   &   Test Accuracy:  1.0" for k in range(t + 1)]
        out.append(f"test acc: {acc[t][t]}")
        out += [f"## Individual Task[{k}], Test Loss:  0.123   &   Test Accuracy:  {acc[t][k]}" for k in range(t + 1)]
        out.append(f"## After Task[{t}],Averaged Test Accuracy:  50.0")
    return "\n".join(out)


def test_authors_cl_parses_only_the_after_task_rows():
    from validate.authors_cl import parse_authors, summarise
    acc = [[97.5, 0, 0], [90.0, 96.25, 0], [80.5, 91.0, 95.0]]
    a = parse_authors(_authors_printout(3, 2, acc), 3)
    assert a[2, 0] == pytest.approx(0.805) and a[1, 1] == pytest.approx(0.9625)
    assert np.isnan(a[0, 1]) and np.isnan(a[1, 2])
    assert summarise(a) == {"avg_after_last": pytest.approx((0.805 + 0.91 + 0.95) / 3),
                            "task1_after_last": pytest.approx(0.805)}
    with pytest.raises(ValueError, match="finished tasks"):
        parse_authors(_authors_printout(2, 1, acc), 3)          # a run that stopped after task 2


FAKE_AUTHORS = '''
import numpy as np, torch
from torchvision import datasets, transforms
from torch.utils.tensorboard import SummaryWriter
import sys
tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
test = datasets.MNIST("./data", train=False, transform=tf)
x, y = test[3]
np.save("first.npy", x.numpy())
SummaryWriter("log").close()
import utils.train_cl_utils as tcu
print("EPOCHTEST", tcu.test_model_cl(None)[1])
seed = int(sys.argv[sys.argv.index("--seed") + 1])
for t in range(2):
    print("test acc: 1")
    for k in range(t + 1):
        print(f"## Individual Task[{k}], Test Loss:  0.1   &   Test Accuracy:  {50 + 10 * t + k + seed}")
print("SHAPE", tuple(x.shape), y, len(test), torch.get_num_threads(), float(x[0, 14, 14]))
'''


def test_authors_cl_runs_a_checkout_with_the_stand_ins(tmp_path, data_root, monkeypatch):
    pytest.importorskip("torch")
    import validate.authors_cl as acl
    (tmp_path / "main_permute_mnist_CL.py").write_text(FAKE_AUTHORS)
    (tmp_path / "utils").mkdir()
    (tmp_path / "utils" / "__init__.py").write_text("")
    (tmp_path / "utils" / "train_cl_utils.py").write_text("def test_model_cl(*a, **k):\n    return 1.0, 99.0\n")
    seen = {}
    real_run = acl.subprocess.run

    def spy(cmd, **kw):
        p = real_run(cmd, **kw)
        seen["stdout"] = p.stdout
        return p
    monkeypatch.setattr(acl.subprocess, "run", spy)
    a, secs = acl.run_authors(str(tmp_path), str(data_root), seed=1, tasks=2, epochs=1)
    assert a[1].tolist() == [pytest.approx(0.61), pytest.approx(0.62)] and secs > 0
    from refbinn import data as D
    ds = D.load_mnist(data_root)
    shape_line = [s for s in seen["stdout"].splitlines() if s.startswith("SHAPE")][0]
    assert shape_line.startswith(f"SHAPE (1, 28, 28) {int(ds.y_test[3])} {len(ds.y_test)} 1 ")
    want = D.normalize(ds.x_test[3:4], "mnist")[0, 14, 14]
    assert float(shape_line.split()[-1]) == pytest.approx(float(want), rel=1e-6)
    assert "EPOCHTEST 0.0" in seen["stdout"]               # the per-epoch evaluation is skipped ...
    acl.run_authors(str(tmp_path), str(data_root), seed=1, tasks=2, epochs=1, epoch_tests=True)
    assert "EPOCHTEST 99.0" in seen["stdout"]              # ... unless asked for


# -- scripts/paper_math.py ---------------------------------------------------------------------
def _fake_run(root, sweep, name, seed, accs, done=True):
    d = root / "sweeps" / f"issue15_{sweep}" / "runs" / f"{name}_s{seed}"
    d.mkdir(parents=True)
    eps = [{"epoch": i + 1, "seconds": 10.0, "test_acc_mode": a, "test_acc_mode_trainbn": a - 0.1,
            "diagnostics": {"all": {"scale_p99": 100.0 * (i + 1), "lam_abs_max": 5.0, "active_frac": 0.5,
                                    "data_over_prior": 3.0, "flip_frac": 0.01, "scale_median": 1.0, "scale_max": 1e3},
                            "gap_test": 0.01,
                            "steps": [{"step": 100 * (i + 1), "all": {"scale_p99": 1.0, "lam_abs_max": 2.0}}]}}
           for i, a in enumerate(accs)]
    best = int(np.argmax(accs)) + 1
    summary = {"best_val_epoch": best, "test_acc_mode_at_best_val": accs[best - 1], "test_acc_mean_last": 0.5,
               "test_acc_mean_trainbn_last": 0.4, "test_acc_mode_last": accs[-1]} if done else {}
    (d / "history.json").write_text(json.dumps({"config": {"epochs": len(accs), "seed": seed, "n_train": 250, "batch_size": 100},
                                                "epochs": eps, "summary": summary}))
    (d / "run.json").write_text(json.dumps({"overrides": {"lr": 0.01, "seed": seed}}))


def test_paper_math_tables_from_runs(tmp_path):
    mod = _load_script("paper_math")
    _fake_run(tmp_path, "bn_scale", "mnist_bayesbinn_lr0.01", 0, [0.8, 0.9, 0.85])
    _fake_run(tmp_path, "bn_scale", "mnist_bayesbinn_lr0.01", 1, [0.7, 0.8, 0.95])
    _fake_run(tmp_path, "bn_scale", "mnist_bayesbinn_lr0.01", 2, [0.1], done=False)   # still running
    assert mod.main(["--results", str(tmp_path), "--out", str(tmp_path / "pm")]) == 0
    doc = json.loads((tmp_path / "pm" / "summary.json").read_text())
    row = doc["settings"]["bn_scale: lr0.01"]
    assert row["n"] == 2 and row["seeds"] == [0, 1] and row["point"] == {"lr": 0.01, "seed": 0}
    assert row["test_mode_recal"]["values"] == [0.9, 0.95]
    assert row["test_mode_trainbn"]["values"] == pytest.approx([0.8, 0.85])
    assert row["peak_epoch"]["values"] == [2, 3] and row["curve_mean"] == pytest.approx([0.75, 0.85, 0.9])
    assert row["scale_p99"]["mean"] == 300.0
    md = (tmp_path / "pm" / "summary.md").read_text()
    assert "| bn_scale: lr0.01 | 2 | 3 | 92.50 +- 3.54 |" in md
    assert (tmp_path / "pm" / "curves.png").stat().st_size > 1000
    assert mod.main(["--results", str(tmp_path / "empty"), "--out", str(tmp_path / "pm2")]) == 1


def test_paper_math_outputs_go_through_the_atomic_writer(tmp_path, monkeypatch):
    """Each of summary.json, summary.md, curves.png is written by refbinn.io's atomic writer; an interrupted
    figure leaves the old curves.png, not a truncated one."""
    pytest.importorskip("matplotlib")
    import matplotlib.figure
    import refbinn.io.atomic as atomic
    _fake_run(tmp_path, "bn_scale", "mnist_bayesbinn_lr0.01", 0, [0.8, 0.9, 0.85])
    written, inner = [], atomic._atomic_file

    def spy(path, *a, **k):
        written.append(Path(path).name)
        return inner(path, *a, **k)
    monkeypatch.setattr(atomic, "_atomic_file", spy)
    mod, out = _load_script("paper_math"), tmp_path / "pm"
    assert mod.main(["--results", str(tmp_path), "--out", str(out)]) == 0
    assert sorted(written) == ["curves.png", "summary.json", "summary.md"]
    old = (out / "curves.png").read_bytes()

    def half(self, fname, **kwargs):                # writes part of the image, then fails
        (open(fname, "wb") if isinstance(fname, (str, Path)) else fname).write(b"\x89PNG")
        raise RuntimeError("disk full")
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", half)
    with pytest.raises(RuntimeError, match="disk full"):
        mod.main(["--results", str(tmp_path), "--out", str(out)])
    assert (out / "curves.png").read_bytes() == old and not list(out.glob(".*.partial"))


def test_paper_math_numbers_diagnostics_steps_from_the_start():
    mod = _load_script("paper_math")
    h = {"config": {"n_train": 250, "batch_size": 100},        # 3 steps per epoch
         "epochs": [{"diagnostics": {"all": {"a": 1}, "steps": [{"step": 2, "all": {"a": 0}}]}},
                    {"diagnostics": {"all": {"a": 3}, "steps": [{"step": 2, "all": {"a": 2}}]}}]}
    assert mod.global_steps(h) == [(2, {"a": 0}), (3, {"a": 1}), (5, {"a": 2}), (6, {"a": 3})]


def test_paper_math_retention_table(tmp_path):
    mod = _load_script("paper_math")
    _fake_run(tmp_path, "bn_scale", "mnist_bayesbinn_lr0.01", 0, [0.8])
    runs = {}
    for side, vals in (("authors", [0.70, 0.74]), ("refbinn", [0.71, 0.77])):
        for seed, v in zip((1, 2), vals):
            diags = [{"data_over_prior": 1e-5, "ratio_median": 2.0}] * 2 if side == "refbinn" and seed == 2 else None
            runs[f"{side}_s{seed}"] = {"side": side, "seed": seed, "avg_after_last": v, "task1_after_last": v - 0.1,
                                       "diagnostics": diags}
    (tmp_path / "retention").mkdir()
    (tmp_path / "retention" / "retention.json").write_text(json.dumps({"tasks": 2, "runs": runs}))
    assert mod.main(["--results", str(tmp_path), "--out", str(tmp_path / "pm")]) == 0
    ret = json.loads((tmp_path / "pm" / "summary.json").read_text())["retention"]
    d = ret["refbinn_minus_authors"]
    assert d["mean"] == pytest.approx(0.02)
    assert d["se"] == pytest.approx(np.sqrt(np.var([0.70, 0.74], ddof=1) / 2 + np.var([0.71, 0.77], ddof=1) / 2))
    assert ret["refbinn"]["ratio_median_per_task"] == [2.0, 2.0] and ret["refbinn"]["ratio_median_seeds"] == [2]
    assert "| refbinn - the authors' script | | +2.00 +- " in (tmp_path / "pm" / "summary.md").read_text()


def test_side_by_side_commands_refuse_bad_input(tmp_path, data_root, capsys):
    pytest.importorskip("torch")
    import validate.authors_cl as acl
    import validate.authors_step as ast
    for mod, args, msg in ((acl, ["--authors", str(tmp_path)], "main_permute_mnist_CL.py"),
                           (ast, ["--authors", str(tmp_path)], "optimizers/BayesBiNN.py"),
                           (acl, ["--authors", str(tmp_path), "--epochs", "0"], ">= 1")):
        (tmp_path / "main_permute_mnist_CL.py").write_text("") if ">= 1" in msg else None
        with pytest.raises(SystemExit) as e:
            mod.main(args + ["--data-root", str(data_root), "--out", str(tmp_path / "out")])
        assert e.value.code == 2 and msg in capsys.readouterr().err
    assert not (tmp_path / "out").exists()                 # nothing written
