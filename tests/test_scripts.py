"""The experiment scripts (scripts/run_*.py) in their smoke settings, in-process.

Each script runs with --quick (and smaller still where it helps) into tmp_path;
the tests check the JSON it writes (the rows and keys the README quotes), the
--stop-after/--resume hand-over, and that the settings at the top of each script
are the paper preset's (refbinn/presets.py), so the two cannot drift apart.
"""
import importlib.util
import json
import math
import os
from pathlib import Path

import pytest

from refbinn.experiments.presets import PAPER

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
TRAIN_KEYS = {"name", "command", "settings", "summary", "wall_seconds_this_invocation", "history"}


def load(name):
    """Import scripts/NAME.py as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"refbinn_script_{name}", SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def read(path):
    return json.loads(Path(path).read_text())


# -- the constants at the top of each script are the paper preset's -----------------------------------
@pytest.mark.parametrize("script, dataset", [("run_mnist", "mnist"), ("run_cifar", "cifar10"),
                                             ("run_cifar", "cifar100")])
def test_image_script_settings_are_the_presets(script, dataset):
    mod = load(script)
    runs = mod.RUNS if script == "run_mnist" else mod.RUNS[dataset]
    for run, (optimizer, settings) in runs.items():
        if run == "bayesbinn_exact":          # not in the paper: the exact math needs another tau
            assert settings["numerics"] == "exact" and settings["tau"] > PAPER[dataset]["bayesbinn"]["tau"]
            continue
        preset = PAPER[dataset][optimizer]
        assert {k: v for k, v in settings.items() if k in preset} == \
            {k: v for k, v in preset.items() if k in settings}, run
    assert mod.EPOCHS == PAPER[dataset]["epochs"] and mod.BATCH_SIZE == PAPER[dataset]["batch_size"]
    assert mod.QUICK["out"].startswith("results/runs/")    # smoke runs never overwrite results/*.json


@pytest.mark.parametrize("script, dataset", [("run_two_moons", "two-moons"), ("run_snelson", "snelson")])
def test_toy_script_settings_are_the_presets(script, dataset):
    mod = load(script)
    for optimizer, settings in mod.RUNS.items():
        preset = PAPER[dataset][optimizer]
        assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()} == \
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in preset.items()}, optimizer
    assert mod.EPOCHS == PAPER[dataset]["epochs"]


def test_sweep_settings_are_the_papers():
    lr, tau = load("run_lr_sweep"), load("run_tau_sweep")
    assert lr.TAU == PAPER["mnist"]["bayesbinn"]["tau"] and tau.LR == PAPER["mnist"]["bayesbinn"]["lr"]
    assert set(lr.LRS) == set(lr.PAPER) and len(lr.LRS) == 7
    assert set(tau.PAPER) <= set(tau.TAUS) and min(tau.TAUS) == 1e-12 and max(tau.TAUS) == 1e-2
    assert tau.paper_value(float("1e-10")) == 98.86 and tau.paper_value(1e-2) is None


# -- MNIST, every run ------------------------------------------------------------------------------------
def test_mnist_quick_all_runs(tmp_path, data_root, capsys):
    mod = load("run_mnist")
    args = ["--quick", "--optimizers", "all", "--max-train", "300", "--hidden", "16", "16", "16",
            "--out", str(tmp_path), "--data-root", str(data_root), "--quiet"]
    assert mod.main(args) == 0
    table = read(tmp_path / "mnist_table2.json")
    assert [r["run"] for r in table["rows"]] == [f"mnist_{r}" for r in mod.RUNS]
    for row in table["rows"]:
        run = read(tmp_path / f"{row['run']}.json")
        assert set(run) == TRAIN_KEYS                      # the shape `refbinn train` writes
        assert run["summary"]["epochs_run"] == 1 and len(run["history"]) == 1
        assert run["settings"]["model"] == ["mlp_mnist", {"hidden": [16, 16, 16]}]
        assert 0.0 <= row["test_acc_mode_at_best_val"] <= 1.0
        assert (tmp_path / "runs" / row["run"] / "checkpoint.npz").exists()
    by = {r["run"]: r for r in table["rows"]}
    assert read(tmp_path / "mnist_bayesbinn_official.json")["settings"]["optimizer_settings"]["numerics"] == "official"
    assert read(tmp_path / "mnist_bayesbinn_exact.json")["settings"]["optimizer_settings"]["numerics"] == "exact"
    assert by["mnist_bayesbinn_official"]["test_acc_mean_last"] is not None     # mean prediction, C samples
    assert by["mnist_adam"]["paper_test_acc"] == [99.01, 0.06]
    out = capsys.readouterr().out
    assert "98.86 +- 0.05" in out and "seed 0" in out


def test_mnist_stop_after_then_resume_matches_one_run(tmp_path, data_root):
    mod = load("run_mnist")
    base = ["--quick", "--optimizers", "bayesbinn_official", "--epochs", "2", "--max-train", "300",
            "--hidden", "16", "16", "16", "--data-root", str(data_root), "--quiet"]
    assert mod.main(base + ["--out", str(tmp_path / "a"), "--stop-after", "1"]) == 0
    assert read(tmp_path / "a" / "mnist_bayesbinn_official.json")["summary"]["epochs_run"] == 1
    assert mod.main(base + ["--out", str(tmp_path / "a"), "--resume"]) == 0
    assert mod.main(base + ["--out", str(tmp_path / "b")]) == 0
    resumed = read(tmp_path / "a" / "mnist_bayesbinn_official.json")
    whole = read(tmp_path / "b" / "mnist_bayesbinn_official.json")
    assert resumed["summary"]["epochs_run"] == 2
    keys = ("train_loss", "val_acc_mode", "test_acc_mode", "test_acc_mean")
    assert [[e.get(k) for k in keys] for e in resumed["history"]] == \
        [[e.get(k) for k in keys] for e in whole["history"]]


# -- the sweeps -------------------------------------------------------------------------------------------
def test_lr_sweep_quick(tmp_path, data_root, capsys):
    mod = load("run_lr_sweep")
    assert mod.main(["--quick", "--lrs", "1e-4", "3e-3", "--max-train", "300", "--hidden", "16", "16", "16",
                     "--out", str(tmp_path), "--data-root", str(data_root), "--quiet"]) == 0
    d = read(tmp_path / "lr_sweep.json")
    assert [(r["lr"], r["tau"], r["numerics"]) for r in d["rows"]] == [(1e-4, 1e-10, "official"),
                                                                       (3e-3, 1e-10, "official")]
    assert [r["paper_test_acc"] for r in d["rows"]] == [98.86, 98.81]
    assert all(r["epochs"] == 1 and 0 <= r["test_acc_mode_at_best_val"] <= 1 for r in d["rows"])
    assert (tmp_path / "runs" / "lr_sweep" / d["rows"][0]["run"] / "checkpoint.npz").exists()
    assert "98.81" in capsys.readouterr().out


def test_tau_sweep_quick_both_numerics_and_rows_accumulate(tmp_path, data_root, capsys):
    mod = load("run_tau_sweep")
    common = ["--quick", "--max-train", "300", "--hidden", "16", "16", "16", "--out", str(tmp_path),
              "--data-root", str(data_root), "--quiet"]
    assert mod.main(common + ["--taus", "1e-2", "1e-10"]) == 0
    d = read(tmp_path / "tau_sweep.json")
    assert [(r["tau"], r["numerics"]) for r in d["rows"]] == [
        (1e-2, "official"), (1e-10, "official"), (1e-2, "exact"), (1e-10, "exact")]
    keys = {"tau", "numerics", "epochs", "test_acc_mode_at_best_val", "test_acc_mode_last", "seconds"}
    assert all(keys <= set(r) and r["epochs"] == 1 for r in d["rows"])
    assert [r["paper_test_acc"] for r in d["rows"]] == [None, 98.86, None, 98.86]
    # a later invocation with another tau adds its rows and keeps the earlier ones
    assert mod.main(common + ["--taus", "1e-6", "--numerics", "official"]) == 0
    d2 = read(tmp_path / "tau_sweep.json")
    assert len(d2["rows"]) == 5 and d2["rows"][:4] == d["rows"] and d2["rows"][4]["paper_test_acc"] == 98.01
    assert "Table 7" in capsys.readouterr().out


# -- the synthetic figures ---------------------------------------------------------------------------------
def test_two_moons_quick(tmp_path):
    mod = load("run_two_moons")
    assert mod.main(["--quick", "--epochs", "20", "--out", str(tmp_path)]) == 0
    d = read(tmp_path / "two_moons.json")
    assert [r["method"] for r in d["rows"]] == ["BayesBiNN (mode)", "BayesBiNN (mean)", "STE-Adam (mode)"]
    assert all(0 <= r["test_acc"] <= 1 and math.isfinite(r["test_nll"]) for r in d["rows"])
    assert [set(r) for r in d["runs"]] == [TRAIN_KEYS] * 2
    assert d["runs"][0]["summary"]["epochs_run"] == 20 and len(d["runs"][0]["history"]) == 2   # thinned
    if d["png"] is not None:
        assert (tmp_path / "two_moons.png").stat().st_size > 1000


def test_two_moons_one_optimizer_draws_one_panel(tmp_path):
    """--optimizers ste gives one map: plt.subplots(1, 1) returns a bare Axes (it raised TypeError)."""
    pytest.importorskip("matplotlib")
    mod = load("run_two_moons")
    assert mod.main(["--optimizers", "ste", "--quick", "--epochs", "5", "--out", str(tmp_path)]) == 0
    d = read(tmp_path / "two_moons.json")
    assert [r["method"] for r in d["rows"]] == ["STE-Adam (mode)"] and len(d["runs"]) == 1
    assert d["png"] == str(tmp_path / "two_moons.png") and (tmp_path / "two_moons.png").stat().st_size > 1000


@pytest.mark.parametrize("script, optimizers, methods", [
    ("two_moons", ["ste", "bayesbinn"], ["STE-Adam (mode)", "BayesBiNN (mode)", "BayesBiNN (mean)"]),
    ("snelson", ["ste"], ["STE-Adam"])])
def test_figure_scripts_write_their_json_before_plotting(script, optimizers, methods, tmp_path, monkeypatch,
                                                         data_root):
    """A failing plot still leaves the trained results (the JSON was written after the plot)."""
    matplotlib = pytest.importorskip("matplotlib")
    import matplotlib.figure

    def broken(*args, **kwargs):
        raise RuntimeError("plot failed")
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)
    root = ["--data-root", str(data_root)] if script == "snelson" else []
    with pytest.raises(RuntimeError, match="plot failed"):
        load(f"run_{script}").main(["--optimizers", *optimizers, "--quick", "--epochs", "5",
                                    "--out", str(tmp_path), *root])
    d = read(tmp_path / f"{script}.json")
    assert [r["method"] for r in d["rows"]] == methods
    assert d["png"] is None and not (tmp_path / f"{script}.png").exists()


def test_snelson_quick(tmp_path, data_root):
    mod = load("run_snelson")
    assert mod.main(["--quick", "--epochs", "20", "--out", str(tmp_path), "--data-root", str(data_root)]) == 0
    d = read(tmp_path / "snelson.json")
    assert [r["method"] for r in d["rows"]] == ["BayesBiNN", "STE-Adam"]
    assert d["rows"][0]["train_mse_mean"] is not None and d["rows"][1]["train_mse_mean"] is None
    assert len(d["curves"]["BayesBiNN"]["mean"]) == len(d["curves"]["BayesBiNN"]["std"]) == 301
    assert d["curves"]["STE-Adam"]["std"] is None
    assert [set(r) for r in d["runs"]] == [TRAIN_KEYS] * 2


# -- CIFAR on generated data, permuted MNIST ------------------------------------------------------------------
def test_cifar_fake_quick(tmp_path):
    mod = load("run_cifar")
    assert mod.main(["--fake", "--quick", "--optimizers", "bayesbinn_official", "ste", "--max-train", "50",
                     "--eval-samples", "0", "--out", str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / "runs" / "fake_data" / "cifar-10-batches-py" / "test_batch").exists()
    d = read(tmp_path / "cifar10_table2.json")
    assert [r["run"] for r in d["rows"]] == ["cifar10_bayesbinn_official", "cifar10_ste"]
    assert all(r["fake_data"] and r["epochs"] == 1 for r in d["rows"])
    run = read(tmp_path / "cifar10_bayesbinn_official.json")
    assert set(run) == TRAIN_KEYS
    assert run["settings"]["optimizer_settings"]["tau"] == 1e-10
    assert run["settings"]["model"] == ["vgg_cifar", {"num_classes": 10, "width": 1 / 16}]


def test_permuted_mnist_quick_and_resume_skips_done_priors(tmp_path, data_root, capsys):
    mod = load("run_permuted_mnist")
    args = ["--quick", "--out", str(tmp_path), "--data-root", str(data_root), "--quiet"]
    assert mod.main(args) == 0
    path = tmp_path / "permuted_mnist.json"
    d = read(path)
    for prior in ("posterior", "zero"):
        m = d[prior]["acc_mean"]
        assert len(m) == 2 and m[0][1] is None and all(0 <= v <= 1 for v in (m[0][0], *m[1]))   # NaN -> null
        assert set(d["summary"][prior]) == {"task1_after_last", "average_after_last", "seconds"}
    assert d["settings"]["tasks"] == 2 and d["posterior"]["settings"]["tau"] == 1e-2
    capsys.readouterr()
    before = path.read_text()
    assert mod.main(args + ["--resume"]) == 0
    assert "skipped" in capsys.readouterr().out and path.read_text() == before
    # stopped after every epoch (2 tasks x 1 epoch x 2 priors) and resumed: the same accuracies
    parts = ["--quick", "--out", str(tmp_path / "parts"), "--data-root", str(data_root), "--quiet"]
    for call in range(4):
        assert mod.main(parts + ["--stop-after", "1"] + ["--resume"] * (call > 0)) == 0
        assert ("continue with --resume" in capsys.readouterr().out) == (call < 3)
    got = read(tmp_path / "parts" / "permuted_mnist.json")
    for prior in ("posterior", "zero"):
        assert (got[prior]["acc_mean"], got[prior]["acc_mode"]) == (d[prior]["acc_mean"], d[prior]["acc_mode"])


# -- scripts/_common.py, the plumbing the scripts share ----------------------------------------------------
def test_common_loads_only_the_standard_library():
    # bench_kernels / bench_train import it before numpy to set the thread counts (set_threads)
    import subprocess
    import sys
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import _common; "
            "print(sorted(m for m in ('numpy', 'numba', 'refbinn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(SCRIPTS)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_test_suite_loads_numpy_after_refbinn_set_the_idle_spins(tmp_path):
    """Under pytest too: a setup.cfg warning filter naming a Numba class imported numpy before
    tests/conftest.py imported refbinn, so the suite ran with OpenBLAS's long idle spin."""
    import os
    import subprocess
    import sys
    code = f"""if True:
        import os, sys
        class First:                               # notes the settings when numpy is first imported
            def find_spec(self, name, path=None, target=None):
                if name == "numpy":
                    sys.meta_path.remove(self)
                    with open({str(tmp_path / "seen")!r}, "w") as fh:
                        fh.write(f"{{os.environ.get('OPENBLAS_THREAD_TIMEOUT')}} {{os.environ.get('GOMP_SPINCOUNT')}}")
        sys.meta_path.insert(0, First())
        import pytest
        sys.exit(pytest.main(["-q", "--co", "-p", "no:cacheprovider", "tests/test_readme.py"]))
    """
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "GOMP_SPINCOUNT")}
    subprocess.run([sys.executable, "-c", code], env=env, cwd=SCRIPTS.parent, capture_output=True, check=True)
    assert (tmp_path / "seen").read_text() == "4 10000"


def test_import_refbinn_and_set_threads_shorten_the_idle_spins_unless_set():
    """OpenBLAS's and libgomp's idle spins (refbinn/_threads.py says why) are shortened by
    ``import refbinn`` and by the scripts' ``set_threads``; a user's own values are kept."""
    import os
    import subprocess
    import sys
    show = "import os; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'), os.environ.get('GOMP_SPINCOUNT'))"
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "GOMP_SPINCOUNT")}

    def run(code, **given):
        return subprocess.run([sys.executable, "-c", code, str(SCRIPTS)], env={**env, **given}, cwd=SCRIPTS.parent,
                              capture_output=True, text=True, check=True).stdout.strip()
    assert run("import refbinn; " + show) == "4 10000"
    assert run("import sys; sys.path.insert(0, sys.argv[1]); import _common; _common.set_threads(2); " + show) \
        == "4 10000"
    # set_threads takes refbinn's values from refbinn/_threads.py without importing refbinn (or numpy)
    loaded = "print(sorted(m for m in ('numpy', 'numba', 'refbinn') if m in sys.modules))"
    assert run("import sys; sys.path.insert(0, sys.argv[1]); import _common; _common.set_threads(2); " + loaded) \
        == "[]"
    assert run("import sys; sys.path.insert(0, sys.argv[1]); import _common, refbinn._threads as t; "
               "print(_common._refbinn_threads().__file__ == t.__file__)") == "True"
    assert run("import refbinn; " + show, OPENBLAS_THREAD_TIMEOUT="1", GOMP_SPINCOUNT="7") == "1 7"


def test_common_settings_rows_and_flags(tmp_path):
    import argparse
    c = load("_common")
    a = argparse.Namespace(quick=True, epochs=None, hidden=[8], max_train=0, out="o")
    q = {"epochs": 1, "max_train": 600, "out": "quick"}
    # the flag wins, then --quick's value, then the default; only None counts as unset (0 is a value)
    assert c.resolve(a, q, epochs=500, hidden=(2048,), max_train=None, out="results") == (1, [8], 0, "o")
    assert c.resolve(a, {}, epochs=500, max_train=None) == (500, 0)

    path = tmp_path / "rows.json"
    path.write_text(json.dumps({"rows": [{"run": "a", "v": 1}, {"run": "b", "v": 2}]}))
    assert c.merge_rows(str(path), [{"run": "a", "v": 3}, {"run": "c", "v": 4}]) == \
        [{"run": "b", "v": 2}, {"run": "a", "v": 3}, {"run": "c", "v": 4}]
    assert c.merge_rows(str(tmp_path / "none.json"), [{"run": "a"}]) == [{"run": "a"}]

    assert c.paper_lookup({1e-10: 98.86}, float("1.0000000001e-10")) == 98.86
    assert c.paper_lookup({1e-10: 98.86}, 1.1e-10) is None

    base = {"lr": 1e-4, "tau": 1e-10}
    assert c.with_overrides(base, "bayesbinn", lr=3e-4, tau=None, samples=2) == {"lr": 3e-4, "tau": 1e-10, "samples": 2}
    assert c.with_overrides({"threshold": 1e-8}, "bop", lr=3e-4, tau=1.0) == {"threshold": 1e-8}
    assert base == {"lr": 1e-4, "tau": 1e-10}                                  # a copy, not the preset

    assert c.thin(list(range(1, 26)), 10) == [10, 20, 25]
    assert list(c.accuracies({"test_acc_mean_last": 0.5}, mean=False)) == \
        ["test_acc_mode_at_best_val", "test_acc_mode_last", "val_acc_mode_best"]

    p = argparse.ArgumentParser()
    c.add_run_args(p, "results", "results/runs/quick", "smoke", unit="row", stop_after=False, quiet=False)
    got = p.parse_args(["--out", "x", "--data-root", "d", "--resume", "--quick"])
    assert (got.out, got.data_root, got.resume, got.quick) == ("x", "d", True, True)
    with pytest.raises(SystemExit):
        p.parse_args(["--stop-after", "1"])
    assert "continue each row from its checkpoint" in p.format_help()


@pytest.mark.parametrize("script, args, flag", [
    ("run_mnist", ["--epochs", "0"], "--epochs must be an integer in [1, inf), got 0"),
    ("run_mnist", ["--samples", "0"], "--samples must be an integer in [1, inf)"),
    ("run_mnist", ["--hidden", "16", "0", "16"], "--hidden must be an integer in [1, inf)"),
    ("run_mnist", ["--eval-samples", "-1"], "--eval-samples must be an integer in [0, inf)"),
    ("run_cifar", ["--width", "0"], "--width must be in (0, inf)"),
    ("run_cifar", ["--max-train", "0"], "--max-train must be an integer in [10, inf)"),
    ("run_two_moons", ["--epochs", "0"], "--epochs must be an integer in [1, inf)"),
    ("run_snelson", ["--hidden", "0"], "--hidden must be an integer in [1, inf)"),
    ("run_tau_sweep", ["--taus", "1e-2", "-1"], "--taus must be in (0, inf)"),
    ("run_lr_sweep", ["--stop-after", "0"], "--stop-after must be an integer in [1, inf)"),
    ("run_permuted_mnist", ["--test-samples", "0"], "--test-samples must be an integer in [1, inf)"),
    ("run_permuted_mnist", ["--tasks", "0"], "--tasks must be an integer in [1, inf)"),
    ("run_continual_ratio", ["--seeds", "0", "-1"], "--seeds must be an integer in [0, "),
    ("run_continual_ratio", ["--max-test", "0"], "--max-test must be an integer in [1, inf)"),
    ("run_uncertainty", ["--group", "a=x", "--samples", "2", "0"], "--samples must be an integer in [1, inf)"),
    ("run_uncertainty", ["--group", "a=x", "--bins", "0"], "--bins must be an integer in [1, 10000], got 0"),
])
def test_runner_flags_out_of_range_exit_before_any_work(script, args, flag, tmp_path, monkeypatch, capsys):
    """A numeric flag set to 0 (or below its range) is an error naming it, before any data is read or
    run trained; `resolve` took 0 as unset before (--epochs 0 started the 500-epoch run)."""
    import refbinn.data
    import refbinn.experiments

    def work(*a, **k):
        raise AssertionError("work started")
    for mod, name in ((refbinn.experiments, "run"), (refbinn.experiments, "build"), (refbinn.data, "load_mnist")):
        monkeypatch.setattr(mod, name, work)
    with pytest.raises(SystemExit) as e:
        load(script).main(args + ["--out", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{script}.py: error: {flag}") and "\n" not in err


def test_resolve_keeps_a_zero_flag():
    import argparse
    c = load("_common")
    a = argparse.Namespace(epochs=0, test_samples=0, max_train=None)
    assert c.resolve(a, {"epochs": 1, "max_train": 600}, epochs=500, test_samples=100, max_train=None) == (0, 0, 600)


# -- result files are written atomically (refbinn.io), never by a plain open(..., "w") -----------------------
def _writes_in_place(path):
    """(line, call) of each call in ``path`` that writes a file in place (open in a write mode,
    write_text / write_bytes, json.dump, savefig, np.save / savez)."""
    import ast
    bad = []
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
        if name == "open":
            mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"),
                                                                  None)
            if isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax+"):
                bad.append((node.lineno, ast.unparse(node)))
        elif name in ("write_text", "write_bytes", "savefig", "save", "savez", "savez_compressed") or (
                name == "dump" and isinstance(f, ast.Attribute) and getattr(f.value, "id", None) == "json"):
            bad.append((node.lineno, ast.unparse(node)))
    return bad


@pytest.mark.parametrize("path", sorted(str(p.relative_to(SCRIPTS.parent)) for p in
                                        [*SCRIPTS.glob("*.py"), *(SCRIPTS.parent / "validate").glob("*.py")]))
def test_scripts_and_validate_write_results_atomically(path):
    """lemma1_table, paper_math, bench_sweep, bench_kernels, authors_cl, authors_step wrote in place:
    a crash left a truncated file. They go through refbinn.io (write_json, atomic_write, save_figure)."""
    assert _writes_in_place(SCRIPTS.parent / path) == []


# -- run_exact_search: a row is skipped only if it was trained with the same settings -------------------------
def test_exact_search_reruns_when_hidden_max_train_or_seed_change(tmp_path, monkeypatch, capsys):
    mod = load("run_exact_search")
    calls = []

    def fake_run(dataset, optimizer, name, over, **kw):
        calls.append((over["model_kwargs"]["hidden"], over["max_train"], over["seed"]))
        acc = 0.1 * len(calls)
        return {"summary": {"val_acc_mode_best": acc, "test_acc_mode_last": acc}}
    monkeypatch.setattr(mod, "run", fake_run)
    base = ["--taus", "1", "--lrs", "1e-3", "--lam-inits", "1", "--epochs", "1", "--out", str(tmp_path)]
    mod.main(base + ["--hidden", "8"])
    mod.main(base + ["--hidden", "8"])                               # same settings: kept, not re-run
    assert calls == [((8,), None, 0)]
    mod.main(base + ["--hidden", "16"])
    mod.main(base + ["--hidden", "16", "--max-train", "100"])
    mod.main(base + ["--hidden", "16", "--max-train", "100", "--seed", "3"])
    assert calls == [((8,), None, 0), ((16,), None, 0), ((16,), 100, 0), ((16,), 100, 3)]
    rows = read(tmp_path / "exact_search.json")["rows"]
    assert [(r["hidden"], r["max_train"], r["seed"]) for r in rows] == [([8], None, 0), ([16], None, 0),
                                                                       ([16], 100, 0), ([16], 100, 3)]
    # the table and the best row are this invocation's settings only (the 4th row, not the best overall)
    capsys.readouterr()
    mod.main(base + ["--hidden", "8"])
    out = capsys.readouterr().out
    assert len(calls) == 4 and "0.1000" in out and "0.4000" not in out


# -- hostile paths, names and counts: one line, exit 2, before any work, nothing written ---------------------
@pytest.mark.parametrize("script, args, says", [
    ("run_two_moons", ["--out", ""], "--out is empty; give a path"),           # wrote into the current folder
    ("run_mnist", ["--out", "FILE"], "--out FILE is a file; give a folder for the results"),
    ("run_cifar", ["--fake", "--data-root", "FILE"], "--data-root FILE is a file; give the data folder"),
    ("run_lr_sweep", ["--data-root", ""], "--data-root is empty; give a path"),
    ("run_mnist", ["--tag", "a/b"], "--tag must be a plain name (no folders), got 'a/b'"),
    ("run_mnist", ["--tag", "a\nb"],                                        # a newline in the file names
     "--tag must not hold control characters (newline, tab, escape), got 'a\\nb'"),
    ("run_exact_search", ["--taus", "1", "-1"], "--taus must be in (0, inf), got -1.0"),
    ("run_exact_search", ["--out", ""], "--out is empty; give a path"),
    ("run_uncertainty", ["--group", "x"], "--group must be LABEL=GLOB, got 'x'"),
    ("run_uncertainty", ["--group", "a=nothing*"], "--group a: no checkpoint matches 'nothing*'"),
])
def test_runner_paths_names_and_groups_are_checked_before_any_work(script, args, says, tmp_path, monkeypatch,
                                                                   capsys):
    """Each was a traceback (some after training) or, for an empty --out, results in the current folder."""
    import refbinn.data
    import refbinn.experiments

    def work(*a, **k):
        raise AssertionError("work started")
    mod = load(script)
    for m, name in ((refbinn.experiments, "run"), (refbinn.experiments, "build"), (refbinn.data, "load_mnist"),
                    (mod, "run")):
        monkeypatch.setattr(m, name, work, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FILE").write_text("keep")
    try:
        code = mod.main([a.replace("FILE", str(tmp_path / "FILE")) for a in args])
    except SystemExit as e:
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"{script}.py: error: {says}".replace("FILE", str(tmp_path / "FILE"))
    assert os.listdir(tmp_path) == ["FILE"] and (tmp_path / "FILE").read_text() == "keep"


@pytest.mark.parametrize("args, says", [
    (["--seed", "-1"], "--seed must be an integer in [0, "),                   # numpy's error, a traceback
    (["--taus", "1", "0"], "--taus must be in (0, inf), got 0.0"),             # ValueError: tau ... traceback
    (["--samples", "1"], "--samples must be an integer in [2, inf), got 1"),
    (["--out", "."], "--out . is a folder; give the file to write"),           # after the whole table
])
def test_lemma1_table_refuses_bad_flags_before_any_work(args, says, capsys, monkeypatch):
    mod = load("lemma1_table")
    monkeypatch.setattr(mod, "teacher_problem", lambda *a: pytest.fail("work started"))
    with pytest.raises(SystemExit) as e:
        mod.main(["--samples", "10", "--out", ""] + args)
    assert e.value.code == 2
    assert f"error: {says}" in capsys.readouterr().err


def test_paper_math_refuses_bad_folders_and_names_a_damaged_run(tmp_path, capsys):
    mod = load("paper_math")
    (tmp_path / "FILE").write_text("keep")
    for args, says in ((["--out", str(tmp_path / "FILE")], f"--out {tmp_path / 'FILE'} is a file"),
                       (["--out", ""], "--out is empty"), (["--results", ""], "--results is empty")):
        with pytest.raises(SystemExit) as e:                  # the first two were tracebacks at the end
            mod.main(["--results", str(tmp_path)] + args)
        assert e.value.code == 2 and says in capsys.readouterr().err
    bad = tmp_path / "sweeps" / "issue15_bn_scale" / "runs" / "a_s0" / "history.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"summ')                                  # a JSONDecodeError that named no file
    assert mod.main(["--results", str(tmp_path), "--out", str(tmp_path / "pm")]) == 2
    assert capsys.readouterr().err.startswith(f"paper_math.py: error: {bad}: not a valid JSON file")
    assert not (tmp_path / "pm").exists()


@pytest.mark.parametrize("script, args, says", [
    ("bench_optim", ["--repeats", "0"], "--repeats must be an integer in [1, inf), got 0"),    # ran the default
    ("bench_vispa", ["--repeats", "-1"], "--repeats must be an integer in [1, inf), got -1"),  # timed nothing: NaN
    ("bench_layers", ["--repeats", "0"], "--repeats must be >= 1, got 0"),                   # a traceback
    ("bench_sweep", ["--workers", "0"], "--workers must be >= 1, got 0"),
    ("bench_sweep", ["--out", ""], "--out is empty; give the file to write"),
    ("bench_kernels", ["--out", "."], "--out . is a folder; give the file to write"),
    ("bench_train", ["--numerics", ","], "--numerics must be a comma-separated list of official, exact"),
    ("bench_train", ["--seed", "-1"], "--seed >= 0"),
])
def test_benchmark_flags_are_checked_before_any_timing(script, args, says, tmp_path):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, str(SCRIPTS / f"{script}.py"), *args], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and says in r.stderr.splitlines()[-1], r.stderr
    assert r.stdout == "" and os.listdir(tmp_path) == []


@pytest.mark.parametrize("script, args, says", [
    ("run_mnist", ["--epochs", "1"], "run_mnist.py: error: data set 'mnist' not found"),
    ("run_permuted_mnist", ["--epochs", "1"], "run_permuted_mnist.py: error: data set 'mnist' not found"),
    ("run_uncertainty", ["--group", "X=ck.npz"], "run_uncertainty.py: error: "),
])
def test_bad_input_found_during_the_work_is_one_line_not_a_traceback(script, args, says, tmp_path):
    """A missing data set or a damaged checkpoint, found after the options passed, ended the
    runners in a traceback; they now stop as `refbinn` does: one line, exit 2."""
    import subprocess
    import sys
    (tmp_path / "ck.npz").write_bytes(b"junk")
    (tmp_path / "empty").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "REFBINN_DATA"}
    r = subprocess.run([sys.executable, str(SCRIPTS / f"{script}.py"), *args, "--data-root",
                        str(tmp_path / "empty"), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and err[0].startswith(says), r.stderr
    assert "Traceback" not in r.stderr


def test_a_runner_that_returns_its_results_exits_0_and_quietly(tmp_path):
    """run_main passed main()'s results dict to sys.exit: lemma1_table, run_continual_ratio and
    run_exact_probes printed the whole dict on stderr and exited 1 after a successful run."""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, str(SCRIPTS / "lemma1_table.py"), "--samples", "200", "--taus", "1",
                        "--out", str(tmp_path / "t.json")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "lemma1" in r.stdout and read(tmp_path / "t.json")["settings"]["samples"] == 200


def test_paper_math_stops_on_a_damaged_history_with_one_line(tmp_path):
    """A history.json without its config ended paper_math in a KeyError traceback."""
    import subprocess
    import sys
    run = tmp_path / "sweeps" / "issue15_clipped" / "runs" / "r_s0"
    run.mkdir(parents=True)
    (run / "history.json").write_text('{"summary": {"epochs_run": 1}}')
    r = subprocess.run([sys.executable, str(SCRIPTS / "paper_math.py"), "--results", str(tmp_path),
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == (f"paper_math.py: error: {run / 'history.json'}: not a "
                                                      "refbinn run history (KeyError: 'config')"), r.stderr
    assert not (tmp_path / "out").exists()
