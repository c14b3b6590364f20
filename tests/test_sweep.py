"""`refbinn sweep` and `refbinn report`: sweep files, a loopback dask cluster of 2 workers,
skipping, failures, a worker killed mid-run, an external scheduler, the report's numbers.

The runs are two-moons runs of a few dozen full-batch epochs (well under a second each),
so the file stays within about a minute on 2 cores.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from refbinn.cli import main
from refbinn.sweep import aggregate, load_spec, parse_spec, write_report
from refbinn.sweep.cluster import THREAD_VARS, open_client, thread_env
from refbinn.sweep.engine import run_sweep
from refbinn.sweep.report import load_runs

REPO = Path(__file__).resolve().parents[1]
TIMING = {"seconds", "examples_per_s", "train_seconds", "wall_seconds_this_invocation"}


def is_timing(key):
    return key in TIMING or key.startswith("seconds") or key.endswith("_seconds")
SMALL = {"name": "small", "seeds": [0, 1], "base": {"dataset": "two-moons", "epochs": 12},
         "grid": {"optimizer": ["bayesbinn", "ste"]}}


def quiet(*_):
    pass


def read(path):
    return json.loads(Path(path).read_text())


def deterministic(obj):
    """A run's JSON without what may differ between two executions: times, the command, the
    worker's host and pid (``sweep_run``)."""
    if isinstance(obj, dict):
        return {k: deterministic(v) for k, v in obj.items() if not is_timing(k) and k not in ("sweep_run", "command")}
    if isinstance(obj, list):
        return [deterministic(v) for v in obj]
    return obj


def checkpoint_arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k != "history"}      # the history holds times


@pytest.fixture(scope="module")
def cluster():
    """A loopback LocalCluster: 2 single-threaded worker processes -> (client, threads)."""
    with open_client(workers=2, threads_per_worker=1) as ct:
        yield ct


@pytest.fixture(scope="module")
def small(cluster, tmp_path_factory):
    """The SMALL sweep run once -> (sweep, its folder, run_sweep's answer)."""
    client, threads = cluster
    out = tmp_path_factory.mktemp("sweeps")
    sweep = parse_spec(SMALL)
    res = run_sweep(sweep, out, client=client, threads=threads, progress=False, log=quiet)
    return sweep, Path(res["dir"]), res


# -- the sweep file ------------------------------------------------------------------------------
def test_grid_times_seeds_with_stable_readable_names():
    doc = {"seeds": [0, 1], "base": {"dataset": "mnist", "optimizer": "bayesbinn", "epochs": 3,
                                     "model": {"hidden": [512, 512, 512]}},
           "grid": {"tau": [1e-6, 1e-8], "numerics": ["official", "exact"]}}
    sweep = parse_spec(doc, name="tau")
    names = [r.name for r in sweep.runs]
    assert names == [f"mnist_bayesbinn_tau{t}_{n}_s{s}" for t in ("1e-06", "1e-08")
                     for n in ("official", "exact") for s in (0, 1)]
    assert names == [r.name for r in parse_spec(doc, name="tau").runs]          # stable
    r = sweep.runs[3]
    assert r.setting == "mnist_bayesbinn_tau1e-06_exact" and r.seed == 1
    assert r.overrides == {"epochs": 3, "tau": 1e-6, "numerics": "exact",
                           "model_kwargs": {"hidden": [512, 512, 512]}, "seed": 1}
    assert r.train_args()[-8:-1] == ["--hidden", "512", "512", "512", "--seed", "1", "--name"]


def test_base_settings_go_only_to_the_optimizers_they_apply_to():
    sweep = parse_spec({"seeds": [3], "base": {"dataset": "two-moons", "tau": 0.5, "lr": 0.01},
                        "grid": {"optimizer": ["bayesbinn", "bop"]}}, name="x")
    bb, bop = sweep.runs
    assert bb.overrides == {"tau": 0.5, "lr": 0.01, "seed": 3}
    assert bop.overrides == {"seed": 3} and bop.name == "two-moons_bop_s3"
    assert bop.train_args() == ["train", "--dataset", "two-moons", "--optimizer", "bop", "--preset",
                                "paper", "--seed", "3", "--name", "two-moons_bop_s3"]


BASE = {"dataset": "two-moons", "optimizer": "ste"}


@pytest.mark.parametrize("doc, match", [
    ({"seeds": [0], "base": BASE, "grids": {}}, "unknown key 'grids'"),
    ({"seeds": [0], "base": {**BASE, "lrr": 1}}, "base: unknown key 'lrr'; allowed: dataset"),
    ({"seeds": [0], "base": {**BASE, "lr": -1}}, r"base.lr must be in \(0, inf\), got -1"),
    ({"seeds": [0], "base": {**BASE, "lr": "big"}}, "base.lr must be a number, got 'big'"),
    ({"seeds": [0], "base": {**BASE, "epochs": 2.5}}, r"base.epochs must be an integer in \[1, inf\), got 2.5"),
    ({"seeds": [0], "base": {"dataset": "two-moons"}, "grid": {"optimizer": ["ste", "sgd"]}},
     r"grid.optimizer\[1\] must be one of 'bayesbinn', .*got 'sgd'"),
    ({"seeds": [0], "base": {**BASE, "dataset": "imagenet"}}, "base.dataset must be one of"),
    ({"seeds": [0], "base": BASE, "grid": {}}, "grid is empty"),
    ({"seeds": [0], "base": BASE, "grid": {"epochs": []}}, "grid.epochs must be a non-empty list"),
    ({"seeds": [0], "base": BASE, "grid": {"epochs": 5}}, "grid.epochs must be a non-empty list"),
    ({"seeds": [], "base": BASE}, "seeds must be a non-empty list"),
    ({"seeds": [0, 0], "base": BASE}, "seeds must not repeat"),
    ({"seeds": [-1], "base": BASE}, r"seeds\[0\] must be an integer in \[0, inf\), got -1"),
    ({"seeds": [0], "base": {**BASE, "seed": 1}}, "base.seed: give the seeds as the top-level list"),
    ({"seeds": [0], "base": {**BASE, "epochs": 2}, "grid": {"epochs": [1, 2]}}, "epochs is set in both"),
    ({"seeds": [0], "base": {"dataset": "two-moons"}, "grid": {"optimizer": ["ste", "bayesbinn"],
                                                               "tau": [1, 2]}},
     "grid.tau applies only to the optimizers bayesbinn"),
    ({"seeds": [0], "base": {**BASE, "numerics": "exact"}}, "base.numerics applies only to"),
    ({"seeds": [0], "base": {**BASE, "max_train": 100}}, "max_train applies only to the image data sets"),
    ({"seeds": [0], "base": {**BASE, "model": {"width": 3}}}, "base.model: unknown key 'width' for the two-moons"),
    ({"seeds": [0], "base": {**BASE, "model": {"hidden": 0}}}, r"base.model: mlp_toy: hidden must be an integer in \[1, inf\), got 0"),
    ({"seeds": [0], "base": {"optimizer": "ste"}}, "dataset must be set"),
    ({"seeds": [0], "base": BASE, "grid": {"lr": [0.1, 0.1]}}, "grid.lr lists a value twice"),
    ({"seeds": [0], "base": BASE, "name": "a/b"}, "name must be a folder name"),
    ({"seeds": [0], "base": {**BASE, "diagnostics": 1}}, "base.diagnostics must be true or false, got 1"),
    ({"seeds": [0], "base": {**BASE, "tau_end": 0.1}}, "base.tau_end applies only to the optimizers bayesbinn"),
    ({"seeds": [0], "base": {**BASE, "optimizer": "bayesbinn", "reweight": -1}},
     r"base.reweight must be in \[0, inf\), got -1"),
    # as `refbinn train --max-train` (a 10% validation split must not be empty)
    ({"seeds": [0], "base": {**BASE, "dataset": "mnist", "max_train": 5}},
     r"base.max_train must be an integer in \[10, inf\), got 5"),
    # model arguments the data set decides
    ({"seeds": [0], "base": {**BASE, "dataset": "mnist", "model": {"in_features": 20}}},
     r"base.model: in_features is set by the data set \(mnist\), not a setting"),
    ({"seeds": [0], "base": {**BASE, "dataset": "mnist", "model": {"classes": 3}}}, "classes is set by the data set"),
    ({"seeds": [0], "base": {**BASE, "dataset": "cifar10", "model": {"num_classes": 5}}},
     "num_classes is set by the data set"),
    ({"seeds": [0], "base": {**BASE, "dataset": "cifar10"}, "grid": {"model": {"image_size": [16, 32]}}},
     r"grid.model.image_size\[0\]: image_size is set by the data set"),
    ({"seeds": [0], "base": {**BASE, "dataset": "cifar10", "model": {"in_channels": 1}}}, "in_channels is set by"),
    ({"seeds": [0], "base": {**BASE, "model": {"in_features": 3}}}, "in_features is set by the data set"),
    # `refbinn train`'s applicability rules (experiments.guard.USED_BY, check_applicable)
    ({"seeds": [0], "base": BASE, "grid": {"diagnostics_every": [1, 5]}},
     "grid.diagnostics_every applies only to the optimizers bayesbinn, but the sweep also runs ste"),
    ({"seeds": [0], "base": BASE, "grid": {"eval_samples": [0, 5]}},
     "grid.eval_samples applies only to the optimizers bayesbinn, vispa"),
    ({"seeds": [0], "base": {**BASE, "eval_mean_every": 1}}, "base.eval_mean_every applies only to the optimizers"),
    ({"seeds": [0], "base": {**BASE, "optimizer": "bayesbinn", "diagnostics": False, "diagnostics_every": 5}},
     "run two-moons_bayesbinn_s0: `refbinn train` would refuse its settings: --diagnostics-every does not "
     "apply with --no-diagnostics"),
    ({"seeds": [0], "base": {**BASE, "optimizer": "bayesbinn", "diagnostics_every": 5},
      "grid": {"diagnostics": [True, False]}}, "run two-moons_bayesbinn_diagnosticsFalse_s0: `refbinn train`"),
    ({"seeds": [0], "base": {**BASE, "dataset": "mnist", "model": {"hidden": []}}},
     r"base.model: hidden of the mnist model mlp_mnist must be a non-empty list of integer widths.*got \[\]"),
    ({"seeds": [0], "base": {**BASE, "dataset": "mnist"}, "grid": {"model": {"hidden": [[8], []]}}},
     r"grid.model.hidden\[1\]: hidden of the mnist model"),
    # named by the sweep's own keys, not only by `refbinn train`'s later refusal of a run
    ({"seeds": [0], "base": {**BASE, "optimizer": "bayesbinn", "beta": 1}}, r"^base.beta must be in \[0, 1\), got 1"),
    ({"seeds": [0], "base": {**BASE, "model": {"hidden": 8}}, "grid": {"model": {"hidden": [4, 16]}}},
     "model.hidden is set in both base.model and grid.model"),
    ({"seeds": [0], "base": {"optimizer": "ste", "max_train": 100}, "grid": {"dataset": ["mnist", "two-moons"]}},
     "max_train applies only to the image data sets .* the sweep uses mnist, two-moons"),
    ({"seeds": [0], "base": BASE, "name": ".."}, "name must be a folder name"),
    # the same value twice in another spelling: two runs of one configuration under two names
    ({"seeds": [0], "base": BASE, "grid": {"model": {"hidden": [64, 64.0]}}},
     r"grid.model.hidden lists a value twice: \[64, 64.0\]"),
    ({"seeds": [0], "base": {**BASE, "dataset": "mnist"}, "grid": {"model": {"hidden": [[8], [8.0]]}}},
     r"grid.model.hidden\[1\]: hidden of the mnist model mlp_mnist must be a non-empty list of integer widths"),
    ({"seeds": [0], "base": {**BASE, "dataset": "mnist", "model": {"hidden": [8, True]}}},   # --hidden takes ints
     r"base.model: hidden .* integer widths .* got \[8, True\]"),
    ({"seeds": [0], "base": BASE, "grid": {"model": {}}}, "grid is empty"),
    ({"seeds": [0], "base": {**BASE, "model": 3}}, "base.model must be a table, got 3"),
    ({"seeds": [0], "base": BASE, "grid": {"model": 3}}, "grid.model must be a table, got 3"),
])
def test_bad_sweep_files_are_value_errors_naming_the_key(doc, match):
    with pytest.raises(ValueError, match=match):
        parse_spec(doc, name="bad")


def test_every_run_of_a_sweep_is_a_command_refbinn_train_accepts(tmp_path):
    from refbinn.cli import build_parser
    from refbinn.experiments.guard import plan_train
    from refbinn.options import check_options
    sweep = parse_spec({"seeds": [0], "base": {"dataset": "mnist", "epochs": 1, "max_train": 10,
                                               "eval_samples": 3, "diagnostics_every": 2, "model": {"hidden": [8]}},
                        "grid": {"optimizer": ["bayesbinn", "ste", "bop", "pmf", "adam", "vispa"]}}, name="y")
    for run in sweep.runs:
        a = build_parser().parse_args(run.train_args() + ["--out", str(tmp_path)])
        check_options(a)
        plan = plan_train(a)
        assert plan.overrides["eval_samples"] == (3 if run.optimizer in ("bayesbinn", "vispa") else None)
        assert plan.overrides["diagnostics_every"] == (2 if run.optimizer == "bayesbinn" else None)


def test_cli_bad_file_exits_2_with_one_line_before_starting(tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text('seeds = [0]\n[base]\ndataset = "two-moons"\noptimizer = "ste"\nbeta = 0.5\n')
    assert main(["sweep", str(spec), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"refbinn sweep: error: {spec}: base.beta applies only to the optimizers bayesbinn, "
                   "and the sweep runs ste"]
    assert not (tmp_path / "bad").exists()                    # nothing started
    spec.write_text("seeds = [0\n")
    assert main(["sweep", str(spec)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_the_readmes_sweep_file_example_is_a_valid_sweep():
    import re
    import tomllib
    (block,) = re.findall(r"```toml\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    runs = parse_spec(tomllib.loads(block)).runs
    assert len(runs) == 30 and runs[0].name == "mnist_bayesbinn_s0"


def test_the_repositorys_sweep_files_parse_with_the_intended_runs():
    runs = {p.stem: load_spec(p).runs for p in sorted((REPO / "sweeps").glob("*.toml"))}
    assert {"two_moons", "snelson", "mnist512", "tau512"} <= set(runs)
    assert [r.name for r in runs["two_moons"]][:2] == ["two-moons_bayesbinn_s0", "two-moons_bayesbinn_s1"]
    assert len(runs["two_moons"]) == len(runs["snelson"]) == 2 * 5
    assert sorted({r.optimizer for r in runs["mnist512"]}) == ["adam", "bayesbinn", "bop", "pmf", "ste", "vispa"]
    assert len(runs["mnist512"]) == 6 * 5
    assert all(r.overrides["model_kwargs"] == {"hidden": [512, 512, 512]} for r in runs["mnist512"] + runs["tau512"])
    assert {r.overrides["numerics"] for r in runs["tau512"]} == {"official", "exact"}
    assert sorted({r.seed for r in runs["tau512"]}) == [0, 1, 2]


# -- running on the cluster -----------------------------------------------------------------------
def test_small_grid_completes_and_runs_are_refbinn_train_runs(small, tmp_path, capsys):
    sweep, d, res = small
    assert res["counts"] == {"done": 4, "skipped": 0, "failed": 0, "pending": 0}
    state = read(d / "sweep.json")
    assert [r["name"] for r in state["runs"]] == [r.name for r in sweep.runs]
    assert state["dir"] == str(d) and os.path.isabs(state["dir"])       # absolute, whatever --out was
    for r in sweep.runs:
        out = read(d / "runs" / f"{r.name}.json")
        assert out["summary"]["epochs_run"] == 12 and out["sweep_run"]["seed"] == r.seed
        assert (d / "runs" / r.name / "checkpoint.npz").exists()
    # the same run by `refbinn train` gives the same numbers: one code path
    run = sweep.runs[1]
    assert main(run.train_args() + ["--epochs", "12", "--out", str(tmp_path), "--quiet"]) == 0
    capsys.readouterr()
    assert deterministic(read(tmp_path / f"{run.name}.json")) == deterministic(read(d / "runs" / f"{run.name}.json"))


def test_rerun_skips_finished_runs_and_reruns_changed_settings(small, cluster, tmp_path, monkeypatch):
    sweep, d, _ = small
    client, threads = cluster
    stamps = {p: p.stat().st_mtime_ns for p in (d / "runs").glob("*.json")}
    submitted, submit = [], client.submit
    monkeypatch.setattr(client, "submit", lambda *a, **k: submitted.append(k["key"]) or submit(*a, **k))
    res = run_sweep(sweep, d.parent, client=client, threads=threads, progress=False, log=quiet)
    assert res["counts"] == {"done": 0, "skipped": 4, "failed": 0, "pending": 0}
    assert submitted == []                                   # skipped by the client, not sent to a worker
    monkeypatch.undo()
    assert {p: p.stat().st_mtime_ns for p in (d / "runs").glob("*.json")} == stamps
    # same names, other settings: not skipped, and the old checkpoints are not resumed
    changed = parse_spec({**SMALL, "name": "changed", "base": {**SMALL["base"], "epochs": 6}})
    first = run_sweep(changed, tmp_path, client=client, threads=threads, progress=False, log=quiet)
    changed = parse_spec({**SMALL, "name": "changed", "base": {**SMALL["base"], "epochs": 4}})
    lines = []
    again = run_sweep(changed, tmp_path, client=client, threads=threads, progress=False, log=lines.append)
    assert first["counts"]["done"] == again["counts"]["done"] == 4
    assert "4 to run on 2 workers (4 of them replace finished results of other settings)" in lines[0]
    assert all(r["resumed_from_epoch"] == 0 for r in again["runs"])
    assert all(read(Path(again["dir"]) / "runs" / f"{r.name}.json")["summary"]["epochs_run"] == 4
               for r in changed.runs)


def test_a_changed_checkpoint_every_keeps_finished_runs_and_resumes_the_others(cluster, tmp_path):
    # how often a run writes its files changes nothing it computes (`refbinn train --resume` may change it)
    client, threads = cluster
    doc = {**SMALL, "name": "ck", "seeds": [0], "base": {**SMALL["base"], "checkpoint_every": 4}}
    first = run_sweep(parse_spec(doc), tmp_path, client=client, threads=threads, progress=False, log=quiet)
    d = Path(first["dir"]) / "runs"
    kept, unfinished = (r["name"] for r in first["runs"])
    stamp = (d / f"{kept}.json").stat().st_mtime_ns
    (d / f"{unfinished}.json").unlink()                   # its checkpoint (epoch 12) is all that is left
    doc["base"]["checkpoint_every"] = 3
    lines = []
    again = run_sweep(parse_spec(doc), tmp_path, client=client, threads=threads, progress=False,
                      log=lines.append)
    assert again["counts"] == {"done": 1, "skipped": 1, "failed": 0, "pending": 0}
    assert "replace" not in lines[0]
    assert (d / f"{kept}.json").stat().st_mtime_ns == stamp
    assert read(d / f"{unfinished}.json")["sweep_run"]["resumed_from_epoch"] == 12


def test_an_interrupted_sweep_records_the_runs_that_finished(cluster, tmp_path, monkeypatch):
    import distributed
    client, threads = cluster
    real = distributed.wait

    def interrupted(fs, **_):              # every run finishes, then Ctrl-C before the sweep collects them
        real(fs)
        raise KeyboardInterrupt
    monkeypatch.setattr(distributed, "wait", interrupted)
    sweep = parse_spec({**SMALL, "name": "int", "seeds": [0]})
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sweep, tmp_path, client=client, threads=threads, progress=False, log=quiet)
    state = read(tmp_path / "int" / "sweep.json")
    assert state["counts"] == {"done": 2, "skipped": 0, "failed": 0, "pending": 0}
    assert all(r["status"] == "done" and r["seconds"] > 0 for r in state["runs"])


def test_local_workers_ignore_ctrl_c(cluster):
    # Ctrl-C reaches the whole process group: the sweep's process alone stops it, and the workers
    # print no tracebacks (a worker the nanny restarts after a crash takes it again)
    client, _ = cluster
    assert set(client.run(lambda: signal.getsignal(signal.SIGINT) == signal.SIG_IGN).values()) == {True}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler      # this process: restored


def test_local_workers_pin_blas_and_numba_to_their_threads(cluster):
    client, threads = cluster

    def probe():
        import numba
        return {v: os.environ.get(v) for v in THREAD_VARS}, numba.config.NUMBA_NUM_THREADS

    answers = client.run(probe)
    assert threads == 1 and len(answers) == 2
    assert all(env == thread_env(1) and n == 1 for env, n in answers.values())


WORKER_COMPILES = """
import numba  # imported by __main__ before any worker starts, as the `refbinn` console script does
from refbinn.sweep.cluster import open_client


def compile_in_worker():
    import numba
    from refbinn.sweep.task import pin_threads
    pin_threads(1)
    numba.njit(lambda x: x + 1)(1)       # a fresh compilation re-reads the environment
    return numba.get_num_threads(), numba.config.NUMBA_NUM_THREADS


if __name__ == "__main__":
    with open_client(workers=1) as (client, threads):
        print(*client.submit(compile_in_worker, pure=False).result())
"""


def test_workers_compile_when_the_parents_main_imported_numba(tmp_path):
    # A spawned worker re-imports the parent's __main__; when that imports Numba, Numba reads
    # NUMBA_NUM_THREADS before the nanny's `env` arrives, and every later compilation failed
    # ("Cannot set NUMBA_NUM_THREADS to a different value once the threads have been launched")
    script = tmp_path / "main_imports_numba.py"
    script.write_text(WORKER_COMPILES)
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1", "1"]          # one thread used, spawned with NUMBA_NUM_THREADS=1


def test_pin_threads_survives_a_changed_numba_environment():
    # an existing cluster's worker (`dask worker`) whose NUMBA_NUM_THREADS changed after Numba
    # started: pin_threads puts it back, so compiling works, and sets the threads in use
    code = ("import os, numba\n"
            "n = numba.config.NUMBA_NUM_THREADS\n"
            "numba.njit(lambda x: x)(1)\n"
            "os.environ['NUMBA_NUM_THREADS'] = str(n + 1)\n"
            "from refbinn.sweep.task import pin_threads\n"
            "pin_threads(1)\n"
            "numba.njit(lambda x: x + 1)(1)\n"
            "print(numba.get_num_threads())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1"]


def test_a_failing_run_is_reported_and_the_others_finish(cluster, tmp_path):
    client, threads = cluster
    empty = tmp_path / "no_data"
    empty.mkdir()
    # MNIST is not in the empty data root (Snelson would be: it ships with the package)
    sweep = parse_spec({"name": "fail", "seeds": [0], "base": {"optimizer": "ste", "epochs": 3},
                        "grid": {"dataset": ["mnist", "two-moons"]}})
    lines = []
    res = run_sweep(sweep, tmp_path, client=client, threads=threads, data_root=str(empty), progress=False,
                    log=lines.append)
    status = {r["name"]: r for r in res["runs"]}
    assert status["two-moons_ste_s0"]["status"] == "done"
    assert status["mnist_ste_s0"]["status"] == "failed"
    assert "mnist" in status["mnist_ste_s0"]["error"].lower()
    assert "mnist_ste_s0" in "\n".join(lines)
    assert read(Path(res["dir"]) / "sweep.json")["counts"]["failed"] == 1
    assert "Traceback" in (Path(res["dir"]) / "runs" / "mnist_ste_s0" / "log.txt").read_text()


def test_a_task_that_raises_is_a_failed_run(cluster, tmp_path, monkeypatch):
    # a task whose workers died too often raises KilledWorker from .result(): the run is failed, not done
    from refbinn.sweep import engine
    client, threads = cluster

    def lost(run, *_):                  # (a local function: dask sends it by value)
        raise RuntimeError(f"lost {run['name']}")
    monkeypatch.setattr(engine, "execute", lost)
    sweep = parse_spec({**SMALL, "name": "lost", "seeds": [0]})
    res = run_sweep(sweep, tmp_path, client=client, threads=threads, progress=False, log=quiet)
    assert res["counts"] == {"done": 0, "skipped": 0, "failed": 2, "pending": 0}
    assert [r["error"] for r in res["runs"]] == [f"RuntimeError: lost {r.name}" for r in sweep.runs]


def test_a_finished_run_is_skipped_by_its_task_too(small):
    # (another client may have finished it after this one submitted it)
    from refbinn.sweep.task import execute, result_path
    sweep, d, _ = small
    run = sweep.runs[0].to_dict()
    before = Path(result_path(d, run["name"])).stat().st_mtime_ns
    assert execute(run, str(d))["status"] == "skipped"
    assert Path(result_path(d, run["name"])).stat().st_mtime_ns == before


def test_workers_with_a_scheduler_is_an_error_before_connecting():
    with pytest.raises(ValueError, match="--workers applies to the local cluster only"):
        with open_client("tcp://127.0.0.1:9", workers=2):
            pass


def test_the_thread_variables_are_restored_after_the_workers_start(monkeypatch):
    from refbinn.sweep.cluster import _environment
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "7")
    with _environment(thread_env(1)):
        assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "1"
    assert "OMP_NUM_THREADS" not in os.environ and os.environ["MKL_NUM_THREADS"] == "7"


@pytest.mark.parametrize("failed, code", [(0, 0), (1, 1)])
def test_cli_sweep_exits_1_if_a_run_failed(tmp_path, monkeypatch, capsys, failed, code):
    import contextlib
    from refbinn.sweep import cluster, engine
    monkeypatch.setattr(cluster, "open_client", lambda *a, **k: contextlib.nullcontext((None, 1)))
    counts = {"done": 2 - failed, "skipped": 0, "failed": failed, "pending": 0}
    monkeypatch.setattr(engine, "run_sweep", lambda *a, **k: {"dir": str(tmp_path), "counts": counts, "runs": []})
    spec = tmp_path / "s.toml"
    spec.write_text('seeds = [0, 1]\n[base]\ndataset = "two-moons"\noptimizer = "ste"\n')
    assert main(["sweep", str(spec), "--out", str(tmp_path), "--quiet"]) == code
    assert "report: refbinn report" in capsys.readouterr().out


def test_a_killed_worker_run_is_resumed_and_bit_identical(cluster, tmp_path):
    client, threads = cluster
    sweep = parse_spec({"name": "kill", "seeds": [0, 1],
                        "base": {"dataset": "two-moons", "optimizer": "bayesbinn", "epochs": 150,
                                 "checkpoint_every": 5}})
    ref = run_sweep(sweep, tmp_path / "ref", client=client, threads=threads, progress=False, log=quiet)
    assert ref["counts"]["done"] == 2
    pids = client.run(os.getpid)                     # worker address -> its process id
    box = {}
    th = threading.Thread(target=lambda: box.update(res=run_sweep(
        sweep, tmp_path / "kill", client=client, threads=threads, progress=False, log=quiet)))
    th.start()
    d = tmp_path / "kill" / "kill" / "runs"
    killed, deadline = None, time.time() + 60
    while killed is None and time.time() < deadline and th.is_alive():
        for r in sweep.runs:
            if (d / r.name / "checkpoint.npz").exists() and not (d / f"{r.name}.json").exists():
                for addr, keys in client.processing().items():
                    if addr in pids and any(f"-{r.name}-" in k for k in keys):
                        os.kill(pids[addr], signal.SIGKILL)
                        killed = r.name
                        break
            if killed:
                break
        time.sleep(0.005)
    th.join(120)
    assert killed is not None, "no run was caught mid-way"
    assert box["res"]["counts"]["done"] == 2
    res = read(d / f"{killed}.json")
    assert res["sweep_run"]["resumed_from_epoch"] >= 5            # it went on from a checkpoint
    assert "resumed from" in (d / killed / "log.txt").read_text()  # (the training loop's own line)
    for r in sweep.runs:
        a, b = read(tmp_path / "ref" / "kill" / "runs" / f"{r.name}.json"), read(d / f"{r.name}.json")
        assert deterministic(a) == deterministic(b)
        ca = checkpoint_arrays(tmp_path / "ref" / "kill" / "runs" / r.name / "checkpoint.npz")
        cb = checkpoint_arrays(d / r.name / "checkpoint.npz")
        assert ca.keys() == cb.keys()
        assert all(np.array_equal(ca[k], cb[k]) for k in ca)


def test_scheduler_option_uses_an_existing_cluster(tmp_path, capsys):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    info = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", str(info)],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline, address = time.time() + 60, None
        while address is None and time.time() < deadline:
            try:                                # the scheduler creates the file, then writes it
                address = json.loads(info.read_text())["address"]
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                time.sleep(0.1)
        assert address is not None, "the dask scheduler wrote no address within 60 s"
        assert address.startswith("tcp://127.0.0.1:")
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                       "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                                       "--host", "127.0.0.1"],
                                      cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        spec = tmp_path / "ext.toml"
        spec.write_text('seeds = [0, 1]\n[base]\ndataset = "two-moons"\noptimizer = "ste"\nepochs = 3\n')
        assert main(["sweep", str(spec), "--scheduler", address, "--out", str(tmp_path), "--quiet"]) == 0
        assert f"report: refbinn report {tmp_path / 'ext'}" in capsys.readouterr().out
        assert read(tmp_path / "ext" / "sweep.json")["counts"]["done"] == 2
        assert read(tmp_path / "ext" / "runs" / "two-moons_ste_s1.json")["sweep_run"]["pid"] != os.getpid()
        # the scheduler file works as well as the address (and the finished runs are skipped)
        assert main(["sweep", str(spec), "--scheduler", str(info), "--out", str(tmp_path), "--quiet"]) == 0
        assert read(tmp_path / "ext" / "sweep.json")["counts"]["skipped"] == 2
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


# -- the report -----------------------------------------------------------------------------------
def test_report_means_and_stds_over_seeds_and_files(small, tmp_path, capsys):
    sweep, d, _ = small
    assert main(["report", str(d), "--out", str(tmp_path)]) == 0
    assert "two-moons_ste" in capsys.readouterr().out
    rep = read(tmp_path / "report.json")
    assert [r["setting"] for r in rep["rows"]] == ["two-moons_bayesbinn", "two-moons_ste"]
    for row in rep["rows"]:
        runs = [read(d / "runs" / f"{row['setting']}_s{s}.json") for s in (0, 1)]
        acc = [r["summary"]["test_acc_mode_last"] for r in runs]
        nll = [r["history"][-1]["test_nll_mode"] for r in runs]
        q = row["quantities"]
        assert q["test_acc_last"]["mean"] == pytest.approx((acc[0] + acc[1]) / 2, abs=1e-15)
        assert q["test_acc_last"]["std"] == pytest.approx(abs(acc[0] - acc[1]) / np.sqrt(2), abs=1e-15)
        assert q["test_nll_last"]["values"] == nll
        assert row["seeds"] == [0, 1] and row["epochs"] == [12]
        assert "test_acc_at_best_val" not in q            # two moons has no validation split
    md = (tmp_path / "report.md").read_text()
    mean, std = (rep["rows"][1]["quantities"]["test_acc_last"][k] for k in ("mean", "std"))
    assert f"| two-moons_ste | 0, 1 | 12 | {100 * mean:.2f} +- {100 * std:.2f} |" in md
    png = (tmp_path / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_report_of_one_seed_has_no_std_and_of_no_runs_is_an_error(small, tmp_path):
    _, d, _ = small
    rows = aggregate([r for r in load_runs(d) if r["sweep_run"]["seed"] == 0])
    assert all(q["std"] is None for r in rows for q in r["quantities"].values())
    with pytest.raises(FileNotFoundError, match="no finished sweep runs"):
        write_report(tmp_path)


def test_checkpoint_every_writes_less_often_and_resumes_identically(tmp_path, capsys):
    args = ["train", "--dataset", "two-moons", "--optimizer", "ste", "--epochs", "30", "--quiet",
            "--checkpoint-every", "7"]
    assert main(args + ["--out", str(tmp_path / "a"), "--stop-after", "10"]) == 0
    ck = tmp_path / "a" / "runs" / "two-moons_ste" / "checkpoint.npz"
    with np.load(ck) as z:
        assert int(z["epoch"]) == 10                  # the end of the call, not only multiples of 7
    assert main(args + ["--out", str(tmp_path / "a"), "--resume"]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    a, b = (read(tmp_path / d / "two-moons_ste.json") for d in "ab")
    assert deterministic(a) == deterministic(b) and a["summary"]["epochs_run"] == 30
    assert main(["train", "--dataset", "two-moons", "--optimizer", "ste", "--checkpoint-every", "0",
                 "--out", str(tmp_path / "c")]) == 2
    assert "--checkpoint-every must be an integer in [1, inf), got 0" in capsys.readouterr().err


def test_report_files_and_the_spec_copy_are_written_atomically(small, tmp_path, monkeypatch):
    from types import SimpleNamespace
    from refbinn.sweep.engine import _copy_spec
    _, d, _ = small
    replaced, real = [], os.replace

    def spy(src, dst):                       # every atomic write ends with os.replace(temp, target)
        replaced.append(os.path.basename(dst))
        assert os.path.basename(src).endswith(".partial")
        return real(src, dst)
    monkeypatch.setattr(os, "replace", spy)
    _, paths = write_report(d, tmp_path / "rep")
    assert sorted(replaced) == sorted(os.path.basename(p) for p in paths.values())
    assert {"report.md", "report.json", "curves.png"} <= set(replaced)
    assert (tmp_path / "rep" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    spec = tmp_path / "s.toml"
    spec.write_text('seeds = [0]  # é\n')
    replaced.clear()
    _copy_spec(SimpleNamespace(path=str(spec)), str(tmp_path / "sw"))
    assert replaced == ["sweep.toml"] and (tmp_path / "sw" / "sweep.toml").read_bytes() == spec.read_bytes()
    assert not list((tmp_path / "rep").glob(".*.partial")) and not list((tmp_path / "sw").glob(".*"))


def fake_run(setting, seed, acc, loss=1.0, history=True):
    """A finished run's JSON as `execute` writes it (only what the report reads), made-up numbers."""
    hist = [{"epoch": 1, "seconds": 0.5, "train_loss": loss, "test_acc_mode": acc, "test_nll_mode": 1 - acc,
             "test_nll_mean": 2 - acc}] if history else []
    return {"name": f"{setting}_s{seed}", "settings": {"dataset": "two-moons", "optimizer": "bayesbinn"},
            "summary": {"epochs_run": len(hist), "test_acc_mode_last": acc, "test_acc_mean_last": acc / 2},
            "history": hist, "sweep_run": {"name": f"{setting}_s{seed}", "setting": setting, "seed": seed, "point": {}}}


def test_report_rows_keep_settings_apart_with_their_seeds_in_order():
    # two tau values of one data set and optimizer are two rows; seeds sorted as numbers (2 before 10)
    a, b = "two-moons_bayesbinn_tau0.5", "two-moons_bayesbinn_tau1.0"
    rows = aggregate([fake_run(a, 10, 0.75), fake_run(b, 0, 0.5), fake_run(a, 2, 0.875)])
    assert [(r["setting"], r["seeds"], r["n"]) for r in rows] == [(a, [2, 10], 2), (b, [0], 1)]
    q = rows[0]["quantities"]
    assert q["test_acc_last"]["values"] == [0.875, 0.75] and q["test_acc_last"]["mean"] == 0.8125
    assert q["test_nll_last"]["values"] == [0.125, 0.25]
    assert q["test_nll_mean_last"]["values"] == [1.125, 1.25]     # the mean prediction's, not the mode's
    assert q["test_acc_mean_last"]["values"] == [0.4375, 0.375]


def test_report_reads_finished_runs_only_in_the_sweeps_order(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for r in (fake_run("two-moons_bayesbinn", 0, 0.5), fake_run("two-moons_ste", 0, 0.5),
              fake_run("two-moons_adam", 0, 0.5, history=False)):          # no epoch finished
        (runs / f"{r['name']}.json").write_text(json.dumps(r))
    (runs / "other.json").write_text(json.dumps({"history": [{"epoch": 1}]}))   # not a sweep run
    order = ["two-moons_ste_s0", "two-moons_adam_s0", "two-moons_bayesbinn_s0"]
    (tmp_path / "sweep.json").write_text(json.dumps({"runs": [{"name": n} for n in order]}))
    assert [r["name"] for r in load_runs(tmp_path)] == ["two-moons_ste_s0", "two-moons_bayesbinn_s0"]


def test_report_curves_band_is_the_sample_std(tmp_path, monkeypatch):
    from matplotlib.axes import Axes
    from refbinn.sweep.report import plot_curves
    bands, real = [], Axes.fill_between
    monkeypatch.setattr(Axes, "fill_between", lambda ax, x, lo, hi, **k: bands.append((lo, hi)) or real(ax, x, lo, hi, **k))
    plot_curves([fake_run("s", 0, 0.5, loss=1.0), fake_run("s", 1, 0.5, loss=2.0)], tmp_path / "c.png", "t")
    lo, hi = bands[0]                                         # the training loss: 1.5 +- std([1, 2], ddof=1)
    np.testing.assert_allclose([lo[0], hi[0]], [1.5 - np.sqrt(0.5), 1.5 + np.sqrt(0.5)], rtol=1e-12)


def test_a_sweep_file_that_is_not_text_is_named(tmp_path):
    f = tmp_path / "s.toml"
    f.write_bytes(b"\x9c\xff" + bytes(range(256)))
    with pytest.raises(ValueError, match=f"^{f}: not valid TOML: 'utf-8' codec"):
        load_spec(str(f))


def _edited(r, path, value):
    """A deep copy of the run ``r`` with the entry at ``path`` (keys) set to ``value`` (None: removed)."""
    r = json.loads(json.dumps(r))
    x = r
    for k in path[:-1]:
        x = x[k]
    if value is None:
        del x[path[-1]]
    else:
        x[path[-1]] = value
    return r


GOOD = fake_run("two-moons_bayesbinn", 0, 0.5)
DAMAGED_RUNS = [                       # (what the runs/*.json holds, what the message says)
    ('{"name": "x", "sweep_run": {', "Expecting property name"),
    ("", "Expecting value"),
    (b"\xff\xfe\x00", "codec can't decode"),
    ("[1, 2]", "a JSON list, not an object"),
    (_edited(GOOD, ["settings"], None), "settings must be an object, got None"),
    (_edited(GOOD, ["summary", "epochs_run"], None), "no entry summary.epochs_run"),
    (_edited(GOOD, ["sweep_run"], 3), "sweep_run must be an object, got 3"),
    (_edited(GOOD, ["sweep_run", "seed"], "a"), "sweep_run.seed an integer, got 'two-moons_bayesbinn' and 'a'"),
    (_edited(GOOD, ["history"], {"a": 1}), "history must be a list of objects"),
    (_edited(GOOD, ["history"], [1, 2]), "history must be a list of objects"),
    (_edited(GOOD, ["history", 0, "seconds"], None), r"history\[0\].seconds must be a number, got None"),
    (_edited(GOOD, ["history", 0, "train_loss"], "x"), r"history\[0\].train_loss must be a number, got 'x'"),
    (_edited(GOOD, ["summary", "test_acc_mode_last"], "x"), "test_acc_last must be a number, got 'x'"),
]


@pytest.mark.parametrize("content,says", DAMAGED_RUNS)
def test_report_of_a_damaged_run_names_the_file_and_writes_nothing(tmp_path, content, says):
    from refbinn.errors import FileFormatError
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "a_s1.json").write_text(json.dumps(fake_run("two-moons_bayesbinn", 1, 0.5)))
    bad = runs / "b_s0.json"
    if isinstance(content, dict):
        content = json.dumps(content)
    (bad.write_bytes if isinstance(content, bytes) else bad.write_text)(content)
    with pytest.raises(FileFormatError, match=f"^{bad}: not a valid sweep run result .*{says}"):
        write_report(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["runs"]


@pytest.mark.parametrize("state,says", [
    ('{"runs": [', "Expecting value"), ("[]", "a JSON list, not an object"),
    ("{}", "it needs runs"), ('{"runs": [{}]}', "it needs runs"),
    ('{"runs": [], "description": 3}', "description strings"),
])
def test_report_of_a_damaged_sweep_json_names_it(tmp_path, state, says):
    from refbinn.errors import FileFormatError
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "a_s0.json").write_text(json.dumps(GOOD))
    (tmp_path / "sweep.json").write_text(state)
    with pytest.raises(FileFormatError, match=f"^{tmp_path / 'sweep.json'}: not a valid sweep state file .*{says}"):
        write_report(tmp_path)


def test_report_with_a_folder_in_the_way_writes_none_of_its_files(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "a_s0.json").write_text(json.dumps(GOOD))
    (tmp_path / "curves.png").mkdir()
    with pytest.raises(ValueError, match="curves.png is a folder"):
        write_report(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["curves.png", "runs"]


@pytest.mark.parametrize("result", ["[1]", '{"sweep_run": 3}', '"text"'])
def test_a_damaged_result_is_not_a_finished_run(tmp_path, result):
    from refbinn.sweep.task import finished
    run = parse_spec({"seeds": [0], "base": BASE}, name="t").runs[0].to_dict()
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / f"{run['name']}.json").write_text(result)
    assert finished(str(tmp_path), run) is None
