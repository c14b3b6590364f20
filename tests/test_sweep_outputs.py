"""`refbinn sweep` and `refbinn report` on the paths they read and write, checked before any
cluster starts: a file where a folder goes, a folder where a file goes, a missing sweep
folder; and the status file after Ctrl-C. No cluster starts here (``open_client`` is
replaced by one that fails the test).
"""
import json
import os

import pytest

from refbinn.cli import main
from refbinn.sweep import load_spec, parse_spec

SPEC = 'name = "s"\nseeds = [0, 1]\n[base]\ndataset = "two-moons"\noptimizer = "ste"\n'
RUN = "two-moons_ste_s0"


@pytest.fixture
def no_cluster(monkeypatch):
    from refbinn.sweep import cluster

    def fail(*_, **__):
        raise AssertionError("a cluster was started")
    monkeypatch.setattr(cluster, "open_client", fail)


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SPEC)
    return path


@pytest.mark.parametrize("file, says", [
    ("s", "the sweep's folder {out}/s is a file; give a folder"),
    ("s/runs", "the sweep's folder {out}/s/runs is a file; give a folder"),
    (f"s/runs/{RUN}", f"the run's folder {{out}}/s/runs/{RUN} is a file; give a folder"),
])
def test_a_file_where_the_sweep_writes_a_folder_exits_2_before_anything(spec, tmp_path, capsys, no_cluster,
                                                                         file, says):
    out = tmp_path / "out"
    (out / file).parent.mkdir(parents=True)
    (out / file).write_text("x")
    before = sorted(p for p in out.rglob("*"))
    assert main(["sweep", str(spec), "--out", str(out)]) == 2
    assert capsys.readouterr().err.splitlines() == ["refbinn sweep: error: " + says.format(out=out)]
    assert sorted(p for p in out.rglob("*")) == before               # nothing written


@pytest.mark.parametrize("folder, says", [
    (f"s/runs/{RUN}.json", f"the run's results file {{out}}/s/runs/{RUN}.json is a folder"),
    ("s/sweep.json", "the sweep file {out}/s/sweep.json is a folder"),
])
def test_a_folder_where_the_sweep_writes_a_file_exits_2_before_training(spec, tmp_path, capsys, no_cluster,
                                                                         folder, says):
    out = tmp_path / "out"
    (out / folder).mkdir(parents=True)
    assert main(["sweep", str(spec), "--out", str(out)]) == 2
    (err,) = capsys.readouterr().err.splitlines()
    assert err.startswith("refbinn sweep: error: " + says.format(out=out))
    assert sorted(os.listdir(out / "s")) == [folder.split("/")[1]]


def test_dry_run_checks_the_paths_too(spec, tmp_path, capsys):
    (tmp_path / "s").write_text("x")
    assert main(["sweep", str(spec), "--out", str(tmp_path), "--dry-run"]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err


@pytest.mark.parametrize("make, says", [
    (lambda p: None, "{p}: no such folder"),
    (lambda p: p.write_text("{}"), "{p} is a file, not a sweep folder"),
])
def test_report_of_a_missing_folder_or_a_file_says_so(tmp_path, capsys, make, says):
    p = tmp_path / "sweep"
    make(p)
    assert main(["report", str(p)]) == 2
    assert capsys.readouterr().err.splitlines() == ["refbinn report: error: " + says.format(p=p)]


def test_ctrl_c_marks_the_runs_that_finished_while_the_cluster_closed(spec, tmp_path, monkeypatch, capsys):
    import contextlib
    from refbinn.sweep import cluster, engine
    sweep = load_spec(spec)
    d = tmp_path / "s"

    def interrupted(*_, **__):            # one run writes its result after the sweep stopped collecting
        (d / "runs").mkdir(parents=True)
        rows = [{"name": r.name, "status": "pending"} for r in sweep.runs]
        (d / "sweep.json").write_text(json.dumps({"runs": rows}))
        result = {"sweep_run": {"identity": sweep.runs[0].identity(), "seconds": 1.5, "resumed_from_epoch": 0}}
        (d / "runs" / f"{RUN}.json").write_text(json.dumps(result))
        raise KeyboardInterrupt
    monkeypatch.setattr(cluster, "open_client", lambda *a, **k: contextlib.nullcontext((None, 1)))
    monkeypatch.setattr(engine, "run_sweep", interrupted)
    assert main(["sweep", str(spec), "--out", str(tmp_path), "--quiet"]) == 130
    assert capsys.readouterr().err == "refbinn sweep: interrupted\n"
    state = json.loads((d / "sweep.json").read_text())
    assert [(r["name"], r["status"]) for r in state["runs"]] == [(RUN, "done"), ("two-moons_ste_s1", "pending")]
    assert state["counts"] == {"done": 1, "skipped": 0, "failed": 0, "pending": 1}
    assert state["runs"][0]["seconds"] == 1.5


def test_checkpoint_every_is_not_part_of_a_runs_identity():
    from refbinn.sweep.spec import run_identity, same_identity
    doc = {"seeds": [0], "base": {"dataset": "two-moons", "optimizer": "ste"}}
    run = parse_spec(doc, name="a").runs[0]
    every = parse_spec({**doc, "base": {**doc["base"], "checkpoint_every": 5}}, name="a").runs[0]
    assert every.overrides["checkpoint_every"] == 5 and "checkpoint_every" not in every.identity()["overrides"]
    assert every.identity() == run.identity() == run_identity(run.to_dict())
    # an identity written before checkpoint_every was left out (it held the setting) still matches
    old = {**run.identity(), "overrides": {**run.overrides, "checkpoint_every": 2}}
    assert same_identity(old, every.identity())
    other = parse_spec({**doc, "base": {**doc["base"], "epochs": 5}}, name="a").runs[0]
    assert not same_identity(other.identity(), run.identity())


def test_out_below_a_file_is_refused_before_any_work(spec, tmp_path, capsys):
    """--out f/sub with f a file could never be made: refused up front (it failed with
    NotADirectoryError after the cluster had started)."""
    (tmp_path / "f").write_text("x")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "f" / "sub"), "--dry-run"]) == 2
    assert f"{tmp_path / 'f'} is a file, so the folder cannot be made" in capsys.readouterr().err
