"""Hostile and careless input through the real ``refbinn`` command (issue 13).

Each case runs ``python -m refbinn ...`` in a subprocess, as a user would, in a folder of its
own, and asserts the exit code; for an error, exactly one line on stderr that names the file
or option, and no traceback anywhere; and that every file present before the command is
byte-for-byte unchanged after it (SHA-256), except the files a successful run is meant to
write. The subprocesses run concurrently, so the battery takes seconds per core, not minutes.

Case groups (the class of input) are the first field of each case; ``GROUPS`` counts them.
"""
import collections
import concurrent.futures
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PY = [sys.executable, "-m", "refbinn"]
RUN = "two-moons_bayesbinn"               # the run the fixtures train: 2 epochs, stopped after 1


class Case(NamedTuple):
    group: str                            # the class of input
    name: str
    argv: Callable                        # (d, fx) -> argv after 'refbinn'; may write files into d first
    code: int = 2                         # expected exit code
    says: tuple = ()                      # the error line (or stdout when code < 2) contains each; {d}: the folder
    check: Callable = None                # more assertions: (d, proc) -> None
    changes: tuple = ()                   # files (relative to d) the command may change or remove
    env: dict = None
    umask: int = None


# -- fixtures built in-process, once --------------------------------------------------------------
def _train(out, *extra):
    from refbinn.cli import main
    assert main(["train", "--dataset", "two-moons", "--optimizer", "bayesbinn", "--epochs", "2",
                 "--stop-after", "1", "--out", str(out), "--quiet", *extra]) == 0


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    from refbinn.cli import main
    from refbinn.data import write_idx
    from refbinn.train.trace import write_trace
    base = tmp_path_factory.mktemp("hostile_base")
    _train(base / "out")
    ck = base / "out" / "runs" / RUN / "checkpoint.npz"
    assert main(["export", str(ck), str(base / "packed.npz")]) == 0
    for steps in (3, 5):
        write_trace(base / f"trace{steps}.npz", model_name="tiny", optimizer_name="adam", steps=steps)
    rng = np.random.default_rng(0)                    # a tiny, valid MNIST to damage
    (base / "data" / "mnist").mkdir(parents=True)
    for split, n in (("train", 60), ("t10k", 20)):
        write_idx(base / "data" / "mnist" / f"{split}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(base / "data" / "mnist" / f"{split}-labels-idx1-ubyte.gz",
                  rng.integers(0, 10, n, dtype=np.uint8))
    return {"base": base, "out": base / "out", "ck": ck, "packed": base / "packed.npz",
            "t3": base / "trace3.npz", "t5": base / "trace5.npz", "data": base / "data"}


# -- ways to damage a file ------------------------------------------------------------------------
def _npz(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def damaged(kind, src, dst, **edit):
    """Write a damaged copy of ``src`` to ``dst`` and return ``dst`` (str)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    raw = Path(src).read_bytes()
    if kind == "truncated":
        dst.write_bytes(raw[:len(raw) // 2])
    elif kind == "empty":
        dst.write_bytes(b"")
    elif kind == "random":
        dst.write_bytes(np.random.default_rng(1).bytes(4096))
    elif kind == "folder":
        dst.mkdir()
    elif kind == "npy":
        with open(dst, "wb") as fh:
            np.save(fh, np.zeros(3))
    elif kind == "edit":                   # edit: drop=[keys], set={key: array}, json={key: fn(obj)}
        d = _npz(src)
        for k in edit.get("drop", ()):
            d.pop(k)
        d.update(edit.get("set", {}))
        for k, fn in edit.get("json", {}).items():
            d[k] = np.array(json.dumps(fn(json.loads(str(d[k])))))
        with open(dst, "wb") as fh:
            np.savez(fh, **d)
    else:
        raise ValueError(kind)
    return str(dst)


def _first_state_array(fx):
    return next(k for k in _npz(fx["ck"]) if k.startswith("state/") and k.endswith("#array"))


def _set_meta(**kw):
    def fn(c):
        c["meta"].update(kw)
        return c
    return fn


# checkpoint damage: name -> (kind, edit) ; the edits need the fixture, hence lambdas
CHECKPOINT_DAMAGE = {
    "truncated": lambda fx: ("truncated", {}),
    "empty": lambda fx: ("empty", {}),
    "random bytes": lambda fx: ("random", {}),
    "a folder": lambda fx: ("folder", {}),
    "an .npy": lambda fx: ("npy", {}),
    "no epoch": lambda fx: ("edit", {"drop": ["epoch"]}),
    "state of another shape": lambda fx: ("edit", {"set": {_first_state_array(fx): np.zeros((1, 2), np.float32)}}),
    "integer state": lambda fx: ("edit", {"set": {_first_state_array(fx): np.zeros((64, 2), np.int64)}}),
    "NaN in the state": lambda fx: ("edit", {"set": {_first_state_array(fx): np.full((64, 2), np.nan, np.float32)}}),
    "config not JSON": lambda fx: ("edit", {"set": {"config": np.array("{not json")}}),
    "model arguments": lambda fx: ("edit", {"json": {"config": _set_meta(model=["mlp_toy", {"evil": 1}])}}),
    "optimizer os:system": lambda fx: ("edit", {"set": {"optimizer#object": np.array("os:system")}}),
    "state subprocess:run": lambda fx: ("edit", {"set": {"state#namedtuple": np.array("subprocess:run")}}),
}


def _bad_checkpoint(damage, target):
    def argv(d, fx):
        kind, edit = CHECKPOINT_DAMAGE[damage](fx)
        return damaged(kind, fx["ck"], d / target, **edit)
    return argv


def _resume_with(damage):
    def argv(d, fx):
        shutil.copytree(fx["out"], d / "out")
        ck = d / "out" / "runs" / RUN / "checkpoint.npz"
        kind, edit = CHECKPOINT_DAMAGE[damage](fx)
        src = d / "good.npz"
        shutil.move(ck, src)
        damaged(kind, src, ck, **edit)
        src.unlink()
        return ["train", "--name", RUN, "--resume", "--out", str(d / "out"), "--quiet"]
    return argv


# -- the cases ------------------------------------------------------------------------------------
TRAIN = ["train", "--dataset", "two-moons", "--optimizer", "bayesbinn", "--quiet"]
CASES = []

# 1. an option out of range: checked before any work (no --out folder appears)
for opt, value in [("--epochs", "0"), ("--lr", "inf"), ("--lr", "nan"), ("--lr", "1e400"), ("--beta", "1"),
                   ("--batch-size", "0")]:
    CASES.append(Case("option out of range (train)", f"{opt} {value}",
                      lambda d, fx, o=opt, v=value: TRAIN + ["--out", str(d / "out"), o, v], says=(opt,),
                      check=lambda d, p: not (d / "out").exists() or pytest.fail("work started")))
CASES.append(Case("option out of range (train)", "--max-train 5",
                  lambda d, fx: ["train", "--dataset", "mnist", "--optimizer", "ste", "--max-train", "5",
                                 "--out", str(d / "out"), "--data-root", str(d / "none")], says=("--max-train",)))
for argv, opt in [(["continual", "--tasks", "0"], "--tasks"), (["evaluate", "X", "--samples", "-1"], "--samples"),
                  (["predict", "X", "--batch-size", "0"], "--batch-size"), (["trace", "--steps", "0"], "--steps"),
                  (["check-trace", "X", "X", "--atol", "inf"], "--atol")]:
    CASES.append(Case("option out of range (other commands)", " ".join(argv),
                      lambda d, fx, a=argv: [str(fx["ck"]) if x == "X" else x for x in a] + (
                          ["--out", str(d / "out")] if a[0] != "check-trace" else []), says=(opt,)))
for argv, opt in [(["--epochs", "abc"], "--epochs"), (["--bogus", "1"], "--bogus")]:
    CASES.append(Case("option not understood", " ".join(argv),
                      lambda d, fx, a=argv: ["train", "--optimizer", "ste", "--dataset", "two-moons", *a], says=(opt,)))
for argv, opt in [(["--optimizer", "ste", "--tau", "0.1"], "--tau"), (["--optimizer", "ste", "--max-train", "100"], "--max-train")]:
    CASES.append(Case("option the run would not use", " ".join(argv),
                      lambda d, fx, a=argv: ["train", "--dataset", "two-moons", "--out", str(d / "out"), *a],
                      says=(opt, "does not apply")))


def _file(d, name="afile"):
    (d / name).write_text("x")
    return str(d / name)


CASES += [
    Case("path of the wrong kind", "train --out FILE", lambda d, fx: TRAIN + ["--out", _file(d)], says=("--out", "{d}")),
    Case("path of the wrong kind", "--data-root FILE",
         lambda d, fx: ["train", "--dataset", "mnist", "--optimizer", "ste", "--data-root", _file(d),
                        "--out", str(d / "o")], says=("--data-root",)),
    Case("path of the wrong kind", "trace --out FOLDER",
         lambda d, fx: ["trace", "--steps", "1", "--out", str(d)], says=("--out", "folder")),
    Case("path of the wrong kind", "export OUT FOLDER",
         lambda d, fx: ["export", str(fx["ck"]), str(d)], says=("folder",)),
]

# 2. damaged files, at every entry point that reads them (the message names the file)
for dmg in ("truncated", "empty", "random bytes", "a folder", "no epoch", "state of another shape",
            "NaN in the state", "model arguments", "optimizer os:system"):
    CASES.append(Case("damaged checkpoint -> evaluate", dmg,
                      lambda d, fx, g=dmg: ["evaluate", _bad_checkpoint(g, "ck.npz")(d, fx), "--out", str(d / "o")],
                      says=("{d}/ck.npz",)))
for dmg in ("truncated", "state of another shape", "optimizer os:system"):
    CASES.append(Case("damaged checkpoint -> export", dmg,
                      lambda d, fx, g=dmg: ["export", _bad_checkpoint(g, "ck.npz")(d, fx), str(d / "p.npz")],
                      says=("{d}/ck.npz",), check=lambda d, p: not (d / "p.npz").exists() or pytest.fail("wrote")))
for dmg in ("truncated", "no epoch", "state of another shape", "state subprocess:run"):
    CASES.append(Case("damaged checkpoint -> train --resume", dmg, _resume_with(dmg),
                      says=(f"{{d}}/out/runs/{RUN}/checkpoint.npz",)))


def _trace_damage(kind, **edit):
    return lambda d, fx: ["check-trace", str(fx["t3"]), damaged(kind, fx["t3"], d / "t.npz", **edit)]


CASES += [Case("damaged trace -> check-trace", k, _trace_damage(k), says=("{d}/t.npz",))
          for k in ("truncated", "empty", "random")]
CASES += [
    Case("damaged trace -> check-trace", "no meta", _trace_damage("edit", drop=["meta"]), says=("{d}/t.npz", "meta")),
    Case("damaged trace -> check-trace", "a checkpoint", lambda d, fx: ["check-trace", str(fx["t3"]), str(fx["ck"])],
         says=("checkpoint.npz", "not a refbinn trace")),
]


def _packed_damage(kind, **edit):
    return lambda d, fx: ["predict", damaged(kind, fx["packed"], d / "p.npz", **edit), "--out", str(d / "o")]


def _packed_meta(fn):
    return lambda m: (fn(m), m)[1]


CASES += [Case("damaged packed model -> predict", k, _packed_damage(k), says=("{d}/p.npz",))
          for k in ("truncated", "random")]
CASES += [
    Case("damaged packed model -> predict", "op os:system",
         _packed_damage("edit", json={"meta": _packed_meta(lambda m: m["ops"][0].update(op="os:system"))}),
         says=("{d}/p.npz", "os:system")),
    Case("damaged packed model -> predict", "weights of another shape",
         _packed_damage("edit", set={"0/words": np.zeros((3, 1), np.uint64)}), says=("{d}/p.npz", "words")),
    Case("damaged packed model -> predict", "an array missing", _packed_damage("edit", drop=["0/words"]),
         says=("{d}/p.npz", "words")),
]


def _mnist_with(name, kind):
    def argv(d, fx):
        shutil.copytree(fx["data"], d / "data")
        f = d / "data" / "mnist" / name
        src = d / "src"
        shutil.move(f, src)
        damaged(kind, src, f)
        src.unlink()
        return ["train", "--dataset", "mnist", "--optimizer", "ste", "--epochs", "1", "--max-train", "20",
                "--data-root", str(d / "data"), "--out", str(d / "o"), "--quiet"]
    return argv


def _snelson(kind):
    def argv(d, fx):
        (d / "data" / "snelson").mkdir(parents=True)
        src = d / "src.npz"
        np.savez(src, X=np.zeros((5, 1)), Y=np.zeros((5, 1)))
        damaged(kind, src, d / "data" / "snelson" / "snelson1d.npz")
        src.unlink()
        return ["train", "--dataset", "snelson", "--optimizer", "ste", "--epochs", "1",
                "--data-root", str(d / "data"), "--out", str(d / "o"), "--quiet"]
    return argv


CASES += [
    Case("damaged data set", "MNIST images truncated", _mnist_with("train-images-idx3-ubyte.gz", "truncated"),
         says=("train-images-idx3-ubyte.gz",)),
    Case("damaged data set", "MNIST labels empty", _mnist_with("t10k-labels-idx1-ubyte.gz", "empty"),
         says=("t10k-labels-idx1-ubyte.gz",)),
    Case("damaged data set", "Snelson empty", _snelson("empty"), says=("snelson1d.npz",)),
    Case("damaged data set", "Snelson random", _snelson("random"), says=("snelson1d.npz",)),
]

# 3. check-trace: equal traces only (exit 1 and a message for every difference)
CASES += [
    Case("trace comparison", "identical", lambda d, fx: ["check-trace", str(fx["t3"]), str(fx["t3"])], code=0,
         says=("match",)),
    Case("trace comparison", "3 steps against 5", lambda d, fx: ["check-trace", str(fx["t3"]), str(fx["t5"])],
         code=1, says=("steps 0..3", "steps 0..5")),
    Case("trace comparison", "a tensor missing",
         lambda d, fx: ["check-trace", str(fx["t3"]), damaged("edit", fx["t3"], d / "t.npz", drop=["step0002/x"])],
         code=1, says=("only in mine", "step0002/x")),
    Case("trace comparison", "an extra entry",
         lambda d, fx: ["check-trace", damaged("edit", fx["t3"], d / "t.npz", set={"junk": np.zeros(2)}), str(fx["t3"])],
         code=1, says=("outside any step", "junk")),
    Case("trace comparison", "one value off",
         lambda d, fx: ["check-trace", str(fx["t3"]),
                        damaged("edit", fx["t3"], d / "t.npz", set={"step0003/sample0/loss": np.float64(7.0)})],
         code=1, says=("first divergence", "step 3")),
]

# 4. nothing overwritten by accident
RESUME = ["train", "--name", RUN, "--resume", "--quiet"]
CASES += [
    Case("overwrite or resume", "same name without --resume",
         lambda d, fx: (shutil.copytree(fx["out"], d / "out"), TRAIN + ["--epochs", "2", "--out", str(d / "out")])[1],
         says=("--resume", "--overwrite", "checkpoint.npz")),
    Case("overwrite or resume", "--resume with no checkpoint", lambda d, fx: RESUME + ["--out", str(d / "out")],
         says=("--resume", RUN)),
    Case("overwrite or resume", "--resume with other settings",
         lambda d, fx: (shutil.copytree(fx["out"], d / "out"),
                        RESUME + ["--out", str(d / "out"), "--lr", "0.5", "--seed", "3", "--epochs", "2"])[1],
         says=("--lr 0.5 (checkpoint: 0.001)", "--seed 3 (checkpoint: 0)")),
    Case("overwrite or resume", "--resume and --overwrite",
         lambda d, fx: (shutil.copytree(fx["out"], d / "out"), RESUME + ["--out", str(d / "out"), "--overwrite"])[1],
         says=("--overwrite",)),
    Case("overwrite or resume", "export onto its input",
         lambda d, fx: (shutil.copy(fx["ck"], d / "ck.npz"), ["export", str(d / "ck.npz"), f"{d}/./ck.npz"])[1],
         says=("{d}/ck.npz", "input")),
    Case("overwrite or resume", "export onto another checkpoint",
         lambda d, fx: (shutil.copy(fx["ck"], d / "ck.npz"), ["export", str(fx["ck"]), str(d / "ck.npz")])[1],
         says=("{d}/ck.npz", "training checkpoint")),
    Case("overwrite or resume", "trace --out onto a checkpoint",
         lambda d, fx: (shutil.copy(fx["ck"], d / "ck.npz"), ["trace", "--steps", "1", "--out", str(d / "ck.npz")])[1],
         says=("{d}/ck.npz", "training checkpoint")),
]

# 5. an update that would make the state non-finite
CASES += [Case("non-finite update", f"{o} --lr 1e300",
               lambda d, fx, o=o: ["train", "--dataset", "two-moons", "--optimizer", o, "--lr", "1e300", "--epochs", "1",
                                   "--out", str(d / "out"), "--quiet"], says=("non-finite", "fc1.weight"))
          for o in ("adam", "pmf")]


# 6. what should work: resume takes the checkpoint's settings, removes stale temporary files,
#    and writes files with the user's umask; --overwrite starts again; a failed download leaves nothing
def _resume_ok(d, fx):
    shutil.copytree(fx["out"], d / "out")
    (d / "out" / "runs" / RUN / ".checkpoint.npz.abc123.partial").write_bytes(b"half a write")
    return RESUME + ["--out", str(d / "out")]


def _resume_ok_check(d, proc):
    run = d / "out" / "runs" / RUN
    assert not list(run.glob("*.partial")), "a stale temporary file was left"
    res = json.loads((d / "out" / f"{RUN}.json").read_text())
    assert res["summary"]["epochs_run"] == 2 and res["settings"]["epochs"] == 2
    assert res["settings"]["optimizer_settings"]["samples"] == 5          # the preset's, as in the checkpoint
    for f in (run / "checkpoint.npz", run / "history.json", d / "out" / f"{RUN}.json"):
        assert f.stat().st_mode & 0o777 == 0o640, f"{f}: mode {oct(f.stat().st_mode)} ignores umask 027"


def _overwrite_check(d, proc):
    res = json.loads((d / "out" / f"{RUN}.json").read_text())
    assert res["summary"]["epochs_run"] == 1 and res["settings"]["seed"] == 7


def _download_check(d, proc):
    assert not (d / "new").exists(), "a failed download left a folder behind"


CASES += [
    Case("runs that should work", "--resume (stale .partial, umask 027)", _resume_ok, code=0, check=_resume_ok_check,
         changes=(f"out/runs/{RUN}/checkpoint.npz", f"out/runs/{RUN}/history.json", f"out/{RUN}.json",
                  f"out/runs/{RUN}/.checkpoint.npz.abc123.partial"), umask=0o027),
    Case("runs that should work", "--overwrite",
         lambda d, fx: (shutil.copytree(fx["out"], d / "out"),
                        TRAIN + ["--epochs", "1", "--seed", "7", "--out", str(d / "out"), "--overwrite"])[1],
         code=0, check=_overwrite_check,
         changes=(f"out/runs/{RUN}/checkpoint.npz", f"out/runs/{RUN}/history.json", f"out/{RUN}.json")),
    Case("download without a network", "connection refused",
         lambda d, fx: ["download", "mnist", "--data-root", str(d / "new"), "--base-url", "http://127.0.0.1:9/"],
         says=("127.0.0.1:9",), check=_download_check),
]

# 7. --debug and REFBINN_DEBUG=1 show the traceback (and still end with the one line)
CASES += [
    Case("debug switch", "--debug", lambda d, fx: ["--debug"] + TRAIN + ["--epochs", "0"], says=("--epochs",)),
    Case("debug switch", "REFBINN_DEBUG=1", lambda d, fx: TRAIN + ["--epochs", "0"], says=("--epochs",),
         env={"REFBINN_DEBUG": "1"}),
]

GROUPS = collections.Counter(c.group for c in CASES)


# -- running them --------------------------------------------------------------------------------
def _hashes(d):
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def _run(argv, cwd, env_extra, umask):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("REFBINN_DEBUG", None)
    env.update(env_extra or {})
    cmd = PY + list(argv)
    if umask is not None:                  # set in the child by the shell (preexec_fn is not thread-safe)
        cmd = ["sh", "-c", f'umask {umask:03o} && exec "$@"', "sh", *cmd]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def battery(fx, tmp_path_factory):
    """Prepare every case's folder, then run all the commands at once: {case name: (folder, proc, before)}."""
    root = tmp_path_factory.mktemp("hostile")
    jobs = {}
    for i, c in enumerate(CASES):
        d = root / f"case{i:03d}"
        d.mkdir()
        argv = c.argv(d, fx)
        jobs[(c.group, c.name)] = (d, argv, _hashes(d))
    workers = max(2, min(8, 2 * (os.cpu_count() or 1)))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {key: pool.submit(_run, argv, d, c.env, c.umask)
                   for c, (key, (d, argv, _)) in zip(CASES, jobs.items())}
        return {key: (jobs[key][0], f.result(), jobs[key][2]) for key, f in futures.items()}


@pytest.mark.parametrize("case", CASES, ids=[f"{c.group}: {c.name}" for c in CASES])
def test_hostile_input(battery, case):
    d, proc, before = battery[(case.group, case.name)]
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    shown = f"exit {proc.returncode}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-3000:]}"
    assert proc.returncode == case.code, shown
    if case.group == "debug switch":
        assert "Traceback" in proc.stderr and err[-1].startswith("refbinn train: error:"), shown
        text = err[-1]
    else:
        assert "Traceback" not in proc.stderr + proc.stdout, shown
        if case.code == 2:
            assert len(err) == 1 and err[0].startswith("refbinn") and ": error: " in err[0], shown
            text = err[0]
        else:
            assert err == [], shown
            text = proc.stdout
    for s in case.says:
        assert s.replace("{d}", str(d)) in text, f"{s!r} not in {text!r}"
    after = _hashes(d)
    for f, h in before.items():
        if f not in case.changes:
            assert after.get(f) == h, f"{f} was {'changed' if f in after else 'removed'}"
    if case.check:
        case.check(d, proc)


def test_unexpected_error_asks_for_a_bug_report(capsys):
    """A bug (not bad input) exits 1 with one line; --debug adds the traceback."""
    from refbinn.errors import run_command

    def bug(args):
        raise TypeError("unsupported operand")
    assert run_command("train", bug, None) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error" in err[0] and "bug" in err[0] and "TypeError" in err[0]
    assert run_command("train", bug, None, debug=True) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("refbinn train: internal error")


# -- every option of every subcommand, in-process (the subprocess cases above sample them) --------
def _options():
    from refbinn.options import RANGES
    out = []
    for command, table in RANGES.items():
        for dest in table:
            for bad in (-(2 ** 64), -1, 0.5, float("inf"), float("nan")):
                out.append((command, dest, bad))
    return out


@pytest.mark.parametrize("command,dest,bad", _options())
def test_every_option_is_range_checked(command, dest, bad, tmp_path):
    """A value outside the option's range (or not finite, or not an integer for a count) is a
    ValueError naming the option and the range, unless that value is in range for it."""
    import argparse

    from refbinn.cli import build_parser
    from refbinn.options import check_options
    p = build_parser()
    given = {"train": ["--dataset", "two-moons", "--optimizer", "bayesbinn"], "evaluate": ["c"], "predict": ["p"],
             "check-trace": ["a", "b"], "sweep": ["s.toml"]}.get(command, [])
    a = p.parse_args([command, *given])
    a.out = str(tmp_path / "out") if command != "trace" else str(tmp_path / "t.npz")
    default = getattr(a, dest)
    setattr(a, dest, bad)
    try:
        check_options(a)
    except ValueError as e:
        assert str(e).startswith("--" + dest.replace("_", "-") + " must be ") and " in " in str(e), e
    else:                                  # accepted: then it must really be in range
        real = dest in ("lr", "tau", "rtol", "atol", "lam_init", "beta", "tau_end", "reweight")
        assert math.isfinite(bad) and (bad >= 0 or dest == "lam_init") and (real or bad == int(bad)), (dest, bad)
    setattr(a, dest, default)
    check_options(a)                       # the defaults pass
    assert isinstance(a, argparse.Namespace)


# -- every kind of damage at every loader, in-process (the subprocess cases above sample them) ---
@pytest.mark.parametrize("dmg", list(CHECKPOINT_DAMAGE))
def test_every_checkpoint_damage_is_one_error_naming_the_file(fx, tmp_path, dmg):
    from refbinn.errors import FileFormatError
    from refbinn.experiments import DATASETS
    from refbinn.train import load_checkpoint
    from refbinn.train.checkpoint_check import check_meta, check_state, model_of
    path = _bad_checkpoint(dmg, "ck.npz")(tmp_path, fx)
    with pytest.raises(FileFormatError) as e:
        ck = load_checkpoint(path)
        check_meta(path, ck["config"], tuple(DATASETS), seed=True)
        check_state(path, ck, model_of(path, ck["config"]))
    assert str(e.value).startswith(path) and "\n" not in str(e.value)


@pytest.mark.parametrize("kind", ["truncated", "empty", "random", "folder", "npy"])
@pytest.mark.parametrize("what", ["trace", "packed", "state"])
def test_every_loader_names_the_damaged_file(fx, tmp_path, kind, what):
    from refbinn.errors import FileFormatError
    from refbinn.optim import load_state
    from refbinn.packed.model import load_packed
    from refbinn.train.trace import load_trace
    load, src = {"trace": (load_trace, fx["t3"]), "packed": (load_packed, fx["packed"]),
                 "state": (load_state, fx["t3"])}[what]
    path = damaged(kind, src, tmp_path / "f.npz")
    with pytest.raises(FileFormatError, match="^" + re.escape(path)):
        load(path)


# -- the Python API, in-process: the wrong kind of argument is a ValueError naming it --------------
def _optimizers():
    from refbinn.optim import PMF, VISPA, Adam, BayesBiNN, Bop, STEAdam
    return {"bayesbinn": lambda: BayesBiNN(N=10, tau=1.0), "ste": STEAdam, "bop": Bop, "pmf": PMF,
            "adam": Adam, "vispa": VISPA}


def _started(name):
    opt = _optimizers()[name]()
    params = {"w": np.full((3, 4), 0.3, np.float32), "b": np.full(4, 0.1, np.float32)}
    state = opt.init(params, np.random.default_rng(0))
    noise = opt.sample(state, np.random.default_rng(1))
    return opt, params, state, noise


@pytest.mark.parametrize("name", ["bayesbinn", "ste", "bop", "pmf", "adam", "vispa"])
def test_optimizer_refuses_a_state_of_another_optimizer(name):
    """A Bop state (or None) handed to another optimizer was read field by field: AttributeError."""
    from refbinn.optim import Bop, STEAdam
    opt, params, state, noise = _started(name)
    other = (STEAdam() if name == "bop" else Bop()).init(params)
    grads = [{k: np.ones_like(v) for k, v in params.items()}] * len(noise)
    for bad in (other, None):
        calls = [lambda: opt.update(grads, bad, noise), lambda: opt.params(bad),
                 lambda: opt.forward_params(bad, noise[0])]
        if name in ("bayesbinn", "vispa"):                       # the others' sample does not read the state
            calls.append(lambda: opt.sample(bad, np.random.default_rng(0)))
        for call in calls:
            with pytest.raises(ValueError, match=rf"state must be of type \w+State .*got {type(bad).__name__}"):
                call()


@pytest.mark.parametrize("name", ["bayesbinn", "ste", "bop", "pmf", "adam", "vispa"])
def test_optimizer_refuses_gradients_that_are_not_dicts_of_real_arrays(name):
    """None or a list of lists was a TypeError/AttributeError; an object, str or None entry a
    TypeError from isfinite; a complex gradient silently lost its imaginary part."""
    opt, params, state, noise = _started(name)
    S = len(noise)
    for grads, says in ((None, "gradient must be a dict"), ([[1.0, 2.0]] * S, "list of list"),
                        ([{k: v.astype(complex) for k, v in params.items()}] * S, "complex128"),
                        ([{k: v.astype(object) for k, v in params.items()}] * S, "dtype object")):
        with pytest.raises(ValueError, match=says):
            opt.update(grads, state, noise)


@pytest.mark.parametrize("name", ["bayesbinn", "ste", "bop", "pmf", "adam", "vispa"])
def test_optimizer_init_refuses_params_that_are_not_a_dict(name):
    opt = _optimizers()[name]()
    for bad in (None, [np.ones(3, np.float32)]):
        with pytest.raises(ValueError, match=rf"params must be a dict .*got {type(bad).__name__}"):
            opt.init(bad, np.random.default_rng(0))


@pytest.mark.parametrize("name", ["bayesbinn", "ste", "bop", "pmf", "adam", "vispa"])
def test_optimizer_init_and_model_take_a_read_only_mapping_as_before(name):
    """A MappingProxyType of the parameters (any Mapping) worked before the dict checks, which
    refused it; the result must be that of the dict."""
    import types
    from refbinn.nn import BatchNorm, Dense, Sequential, flatten_params, softmax_cross_entropy
    from refbinn.train.step import train_step
    opt, params, state, _ = _started(name)
    again = opt.init(types.MappingProxyType(params), np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(opt.params(again).values(), opt.params(state).values()))
    model = Sequential(Dense(2, 4, name="fc1"), BatchNorm(4, name="bn1"), Dense(4, 2, name="fc2"))
    p, bn = model.init(np.random.default_rng(0), np.float32)
    x = np.random.default_rng(1).normal(size=(6, 2)).astype(np.float32)
    view, bn_view = types.MappingProxyType(p), types.MappingProxyType(bn)
    assert np.array_equal(model.forward(view, x, bn_view)[0], model.forward(p, x, bn)[0])
    assert np.array_equal(flatten_params(view), flatten_params(p))
    st = opt.init(p, np.random.default_rng(0))
    step = dict(rng_noise=np.random.default_rng(1), rng_drop=np.random.default_rng(2))
    y = np.array([0, 1, 1, 0, 1, 0])
    assert train_step(model, opt, st, bn_view, x, y, softmax_cross_entropy, **step)[1].keys() == bn.keys()


@pytest.mark.parametrize("name", ["ste", "pmf", "adam"])
def test_optimizer_init_refuses_non_finite_params(name):
    """Their state copies the parameters: it started NaN, silently."""
    with pytest.raises(ValueError, match=r"parameter 'w' has 1 NaN/inf value\(s\)"):
        _optimizers()[name]().init({"w": np.array([np.nan, 0.5], np.float32)})


def test_pmf_and_vispa_refuse_weights_and_noise_of_the_wrong_kind():
    """PMF weights='junk' was counted as 4 gradient dicts, [1] a TypeError; VISPA noise [1] a TypeError."""
    opt, params, state, noise = _started("pmf")
    g = {k: np.ones_like(v) for k, v in params.items()}
    with pytest.raises(ValueError, match="weights must be a dict .*got str"):
        opt.update(g, state, noise, weights="junk")
    with pytest.raises(ValueError, match="weights must be a dict .*got list of int"):
        opt.update(g, state, noise, weights=[1])
    opt, params, state, noise = _started("vispa")
    with pytest.raises(ValueError, match="VISPA: noise must be a dict .*got int"):
        opt.update(g, state, [1])


def test_partition_refuses_kinds_params_and_state_of_the_wrong_kind():
    from refbinn.optim import Adam, Partition, STEAdam
    with pytest.raises(ValueError, match="kinds must be a dict .*got NoneType"):
        Partition(STEAdam(), Adam(), None)
    p = Partition(STEAdam(), Adam(), {"w": "binary", "b": "real"})
    with pytest.raises(ValueError, match="Partition: params must be a dict .*got NoneType"):
        p.init(None)
    with pytest.raises(ValueError, match="Partition: state must be of type PartitionState .*got NoneType"):
        p.update({"w": np.ones(2, np.float32), "b": np.ones(2, np.float32)}, None)


def test_save_state_refuses_a_state_of_another_optimizer_and_writes_nothing(tmp_path):
    """It wrote an Adam with a BayesBiNN state (or None), which load_state then returned as a pair."""
    from refbinn.optim import Adam, BayesBiNN, load_state, save_state
    params = {"w": np.ones(3, np.float32)}
    other = BayesBiNN(N=1, tau=1.0).init(params, np.random.default_rng(0))
    for opt, state, says in ((Adam(), other, "Adam: state must be of type AdamState"),
                             (Adam(), None, "got NoneType"), (None, Adam().init(params), "opt must be")):
        with pytest.raises(ValueError, match=says):
            save_state(tmp_path / "s.npz", opt, state)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="refbinn optimizer state to read must be a path .*got NoneType"):
        load_state(None)
    (tmp_path / "d").mkdir()
    with pytest.raises(ValueError, match=r"is a folder, not a refbinn optimizer state file$"):
        load_state(tmp_path / "d")


@pytest.mark.parametrize("field,value,says", [
    ("epochs", 0, r"epochs must be an integer in \[1, inf\), got 0"),
    ("epochs", 1.5, "epochs must be an integer"), ("batch_size", 0, "batch_size must be an integer"),
    ("seed", None, "seed must be an integer"), ("seed", -1, "seed must be an integer"),
    ("eval_samples", -1, "eval_samples"), ("eval_mean_every", -1, "eval_mean_every"),
    ("average", "mean", "average must be one of 'prob', 'logits'"), ("eval_batch", 0, "eval_batch"),
    ("recalibrate_bn", -1, "recalibrate_bn"), ("diagnostics_every", -1, "diagnostics_every"),
    ("checkpoint_every", 0, "checkpoint_every"), ("quiet", "no", "quiet must be True or False"),
    ("meta", None, "meta must be a dict")])
def test_train_config_refuses_settings_out_of_range(field, value, says):
    """Most were accepted: epochs=0 trained nothing, batch_size=0 a ZeroDivisionError in fit,
    seed=None a TypeError, eval_samples=-1 evaluated the mode only."""
    from refbinn.train import TrainConfig
    with pytest.raises(ValueError, match=says):
        TrainConfig(**{"epochs": 1, "batch_size": 5, field: value})
    assert TrainConfig(epochs=2.0, batch_size=np.int64(5)).epochs == 2      # integral values become ints


def test_train_config_takes_flags_as_1_and_0_and_stores_bools():
    """quiet=1, diagnostics=0 (an int from a config file) worked before the flag checks, which
    refused them; np.bool_ is stored as bool, so the config stays JSON-able for the checkpoint."""
    from refbinn.train import TrainConfig
    cfg = TrainConfig(epochs=1, batch_size=5, quiet=1, diagnostics=np.int64(0))
    assert (cfg.quiet, cfg.diagnostics) == (True, False) and type(cfg.quiet) is bool
    assert type(TrainConfig(epochs=1, batch_size=5, quiet=np.bool_(True)).quiet) is bool
    with pytest.raises(ValueError, match="quiet must be True or False, got 2"):
        TrainConfig(epochs=1, batch_size=5, quiet=2)


def test_fit_refuses_arguments_of_the_wrong_kind_before_any_work(tmp_path):
    from refbinn import models
    from refbinn.nn import softmax_cross_entropy
    from refbinn.optim import Adam
    from refbinn.train import TrainConfig, fit
    from refbinn.train.loop import Data
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 2)).astype(np.float32), rng.integers(0, 2, 20)
    model, cfg = models.mlp_toy(2, 2, hidden=4), TrainConfig(epochs=1, batch_size=5, quiet=True)
    cases = [(dict(data=Data(x[:0], y[:0])), r"data.x_train and data.y_train must have the same number "
                                             r"of rows, at least 1, got shapes \(0, 2\) and \(0,\)"),
             (dict(data=Data(x, y, x[:5], None)), "data.x_val and data.y_val must both be given"),
             (dict(data=Data(x, y, x[:5], y[:3])), "data.x_val and data.y_val must have the same number"),
             (dict(data=Data(x.tolist(), y.tolist())), "must be NumPy arrays, got list and list"),
             (dict(data=Data(x, y, augment=5)), "data.augment must be a callable or None"),
             (dict(data=(x, y)), "data must be of type Data, got tuple"),
             (dict(opt=None), "opt must be of type Optimizer, got NoneType"),
             (dict(cfg={"epochs": 1}), "cfg must be of type TrainConfig, got dict"),
             (dict(loss_fn=None), "loss_fn must be a callable, got NoneType"),
             (dict(schedule=0.1), "schedule must be a callable or None, got float"),
             (dict(stop_after=-1), r"stop_after must be an integer in \[0, inf\), got -1"),
             (dict(cfg=TrainConfig(epochs=1, batch_size=5, meta={"a": np.float32(1)})),   # a TypeError after an epoch
              "cfg.meta must be JSON-able .*float32")]
    for change, says in cases:
        args = {"opt": Adam(), "data": Data(x, y), "loss_fn": softmax_cross_entropy, "cfg": cfg, **change}
        with pytest.raises(ValueError, match=says):
            fit(model, args["opt"], args["data"], args["loss_fn"], args["cfg"], out_dir=str(tmp_path / "o"),
                log=lambda s: None, **{k: v for k, v in change.items() if k in ("schedule", "stop_after")})
        assert not (tmp_path / "o").exists()


def test_train_step_and_evaluate_refuse_arguments_of_the_wrong_kind():
    from refbinn.nn import BatchNorm, Dense, Sequential, softmax_cross_entropy
    from refbinn.optim import Adam
    from refbinn.train.evaluate import evaluate
    from refbinn.train.step import train_step
    rng = np.random.default_rng(0)
    model = Sequential(Dense(2, 4, name="fc1"), BatchNorm(4, name="bn1"), Dense(4, 2, name="fc2"))
    params, bn = model.init(rng, np.float32)
    opt = Adam()
    st = opt.init(params)
    x, y = rng.normal(size=(6, 2)).astype(np.float32), np.array([0, 1, 1, 0, 1, 0])
    step = dict(rng_noise=np.random.default_rng(1), rng_drop=np.random.default_rng(2))
    with pytest.raises(ValueError, match="train_step: bn_state must be a dict .*got NoneType"):
        train_step(model, opt, st, None, x, y, softmax_cross_entropy, **step)
    with pytest.raises(ValueError, match="train_step: on_pass must be None or a callable, got int"):
        train_step(model, opt, st, bn, x, y, softmax_cross_entropy, on_pass=5, **step)
    for kw, says in ((dict(samples=-1), r"samples must be an integer in \[0, inf\), got -1"),
                     (dict(y=y + 5), r"evaluate: label 6 is outside \[0, 2\)"),          # was an IndexError
                     (dict(y=y.astype(float)), r"y must be integer class labels of shape \(6,\).*float64"),
                     (dict(y=y[:3]), r"y must be integer class labels of shape \(6,\).*shape \(3,\)"),
                     (dict(calibration=5), "calibration must be None or a list")):
        args = {"y": y, **kw}
        with pytest.raises(ValueError, match=says):
            evaluate(model, opt, st, bn, x, args.pop("y"), **args)


def test_bn_recalibration_refuses_batches_it_cannot_use():
    """NaN rows gave NaN running statistics silently; complex lost its imaginary part; C = 0 was a
    ZeroDivisionError; an array for the batch list 'truth value ... ambiguous'; a list x a TypeError."""
    from refbinn.bn_recalibration import batch_moments, calibration_batches, recalibrate_bn
    from refbinn.nn import BatchNorm, Dense, Sequential
    for x, says in ((np.full((3, 2), np.nan), "NaN/inf"), (np.ones((3, 2)) * 1j, "dtype complex128"),
                    (np.ones((3, 0)), r"with C >= 1, got \(3, 0\)")):
        with pytest.raises(ValueError, match="batch_moments: .*" + says):
            batch_moments(x)
    model = Sequential(Dense(2, 4, name="fc1"), BatchNorm(4, name="bn1"))
    params, bn = model.init(np.random.default_rng(0), np.float32)
    x = np.random.default_rng(1).normal(size=(6, 2)).astype(np.float32)
    with pytest.raises(ValueError, match="batches must be a list of input arrays, got ndarray"):
        recalibrate_bn(model, params, x, bn)
    with pytest.raises(ValueError, match="NaN/inf"):
        recalibrate_bn(model, params, [x * np.nan], bn)
    assert [b.shape for b in calibration_batches(x.tolist(), 2, 3, np.random.default_rng(0))] == [(3, 2)] * 2
    with pytest.raises(ValueError, match=r"x must have at least 2 rows, got shape \(\)"):
        calibration_batches(None, 2, 3, np.random.default_rng(0))


def test_interop_refuses_arguments_of_the_wrong_kind():
    from refbinn import interop
    like = {"a": np.ones((2, 2), np.float32)}
    for call, says in ((lambda: interop.params_to_vector(None), "params_to_vector: params must be a dict"),
                       (lambda: interop.params_to_vector({"a": None}), r"params\['a'\] must hold real numbers"),
                       (lambda: interop.vector_to_params(np.ones(4) * 1j, like),
                        "must hold real numbers, got dtype complex128"),
                       (lambda: interop.vector_to_params(np.ones(4), None), "vector_to_params: like must be a dict"),
                       (lambda: interop.from_state_dict([1, 2]), "from_state_dict: state_dict must be a dict"),
                       (lambda: interop.from_state_dict({1: np.ones(2)}), "state_dict key 1 has no module prefix"),
                       (lambda: interop.to_state_dict(like, None), "to_state_dict: bn_state must be a dict"),
                       (lambda: interop.bayesbinn_from_torch(None, like), "opt_state must be a dict"),
                       (lambda: interop.bayesbinn_from_torch({"lamda": np.ones(4)}, None), "like must be a dict")):
        with pytest.raises(ValueError, match=says):
            call()


def test_builders_refuse_arguments_of_the_wrong_kind():
    """A missing or unknown builder argument, or kwargs not a dict, was a TypeError."""
    from refbinn.models import build_model
    from refbinn.train.diagnostics import Diagnostics
    from refbinn.train.schedules import milestones
    for name, kw, says in (("mlp_toy", None, "model 'mlp_toy': missing a required argument: 'in_features'"),
                           ("mlp_toy", {"in_features": 2, "out_features": 1, "evil": 1},
                            "unexpected keyword argument 'evil'"),
                           ("mlp_toy", [1, 2], "the arguments of model 'mlp_toy' must be a dict, got list"),
                           (["mlp_toy"], {}, "model must be one of"),
                           ("mlp_mnist", {"hidden": 5}, "mlp_mnist: hidden must be a sequence of layer widths")):
        with pytest.raises(ValueError, match=says):
            build_model(name, kw, where="here")
    with pytest.raises(ValueError, match="at must be a sequence of epochs"):
        milestones(0.1, at=5)
    with pytest.raises(ValueError, match=r"every must be an integer in \[0, inf\), got 1.5"):  # was int(1.5) = 1
        Diagnostics(None, None, None, every=1.5)


def test_bayesbinn_and_vispa_refuse_noise_and_rng_of_the_wrong_kind():
    """BayesBiNN.sample_params(state, None) was an AttributeError; complex u or r silently lost
    its imaginary part; a state whose lam is a list an AttributeError."""
    opt, params, state, noise = _started("bayesbinn")
    for rng in (None, 3):
        with pytest.raises(ValueError, match="BayesBiNN.sample_params: rng must be a numpy.random.Generator"):
            opt.sample_params(state, rng)
    u = {k: np.full(v.shape, 0.5 + 0.1j) for k, v in params.items()}
    with pytest.raises(ValueError, match=r"BayesBiNN: noise\['w'\] must hold real numbers, "
                                         r"got dtype complex128"):
        opt.forward_params(state, u)
    with pytest.raises(ValueError, match="BayesBiNN: state.lam must be a dict name -> array, got list"):
        opt.update({k: np.ones_like(v) for k, v in params.items()}, state._replace(lam=[1]), noise)
    opt, params, state, noise = _started("vispa")
    r = {k: v.astype(np.complex64) for k, v in noise[0].items()}
    with pytest.raises(ValueError, match="VISPA: noise of parameter 'w' must hold real numbers, got dtype complex64"):
        opt.update({k: np.ones_like(v) for k, v in params.items()}, state, [r])


# -- an empty path (an unset shell variable) and a count too large to hold in memory -------------
@pytest.mark.parametrize("argv,says", [
    (["train", "--dataset", "two-moons", "--optimizer", "ste", "--out", ""], "--out is empty"),
    (["train", "--dataset", "two-moons", "--optimizer", "ste", "--data-root", ""], "--data-root is empty"),
    (["demo", "--out", ""], "--out is empty"),
    (["trace", "--out", ""], "--out is empty"),
    (["export", "ck.npz", ""], "OUT is empty"),
    (["report", "sweep", "--out", ""], "--out is empty"),
    (["train", "--dataset", "two-moons", "--optimizer", "ste", "--epochs", "1", "--name", "a\x1b[31m"],   # recolours
     "--name must not hold control characters"),
    (["evaluate", "ck.npz", "--bins", "10001"], "--bins must be an integer in [1, 10000], got 10001"),
])
def test_empty_paths_and_huge_bin_counts_are_refused_before_any_work(argv, says, tmp_path, capsys, monkeypatch):
    from refbinn.cli import main
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("value, message", [
    (bytearray(b"1"), "lr must be a real number, got bytearray(b'1')"),     # float() would take it, as '1'
    (memoryview(b"1"), "lr must be a real number, got <memory"),
    (10 ** 400, "lr must be in [0, 1], got 1000"),                          # real, out of range: not 'a real number'
    (-10 ** 400, "lr must be in [0, 1], got -1000"),
], ids=["bytearray", "memoryview", "10**400", "-10**400"])
def test_check_range_refuses_bytes_like_text_and_names_huge_ints_out_of_range(value, message):
    from refbinn.checks import check_range
    with pytest.raises(ValueError) as e:
        check_range("lr", value, 0, 1)
    assert str(e.value).startswith(message)


@pytest.mark.parametrize("text, says", [
    (None, "ck.npz: not a JSON generator state"),
    ("{not json", "ck.npz: not a JSON generator state"),
    ("[1]", "ck.npz: bit generator must be one of"),
    ('{"bit_generator": "PCG64"}', "ck.npz: not a valid PCG64 state"),
    ('{"bit_generator": "PCG64", "state": {"state": -1, "inc": 3}, "has_uint32": 0, "uinteger": 0}',
     "ck.npz: not a valid PCG64 state"),
], ids=["None", "not JSON", "a list", "no state", "a negative state"])
def test_generator_from_json_names_the_file_for_every_damaged_state(text, says):
    """These raised TypeError, JSONDecodeError, AttributeError, KeyError and OverflowError."""
    from refbinn.io.rng import generator_from_json
    with pytest.raises(ValueError, match=re.escape(says)):
        generator_from_json(text, where="ck.npz")


def test_io_helpers_refuse_arguments_of_the_wrong_kind(tmp_path):
    from refbinn.io.atomic import json_dumps, write_json
    from refbinn.io.rng import generator_state_json
    with pytest.raises(ValueError, match="generator_state_json: gen must be a numpy.random.Generator, got RandomState"):
        generator_state_json(np.random.RandomState(0))                  # was AttributeError
    with pytest.raises(ValueError, match="cannot write to an empty path"):
        write_json("", {})
    assert json_dumps({np.int64(3): 1, np.str_("a"): 2}) == '{"3": 1, "a": 2}'   # was TypeError on the key


def test_check_choice_names_the_argument_for_an_array():
    from refbinn.checks import check_choice
    with pytest.raises(ValueError, match=re.escape("link must be one of 'softmax', 'sigmoid', got array(['softmax', 'x']")):
        check_choice("link", np.array(["softmax", "x"]), ("softmax", "sigmoid"))   # was NumPy's 'truth value ... ambiguous'


# -- the Python API called directly with hostile arguments ---------------------------------------
def _toy_checkpoint_parts():
    from refbinn.models import build_model
    from refbinn.optim.registry import make
    model = build_model("mlp_toy", {"in_features": 2, "out_features": 1})
    params, bn = model.init(np.random.default_rng(0))
    opt = make("adam")
    rngs = {k: np.random.default_rng(i) for i, k in enumerate(("data", "noise", "drop"))}
    return model, dict(opt=opt, opt_state=opt.init(params), bn_state=bn, rngs=rngs, epoch=1,
                       history={"epochs": [{}]}, config={"epochs": 2})


@pytest.mark.parametrize("part,value,says", [
    ("opt", None, "opt must be an Optimizer, got NoneType"),                # was written; loading failed
    ("opt", "adam", "opt must be an Optimizer, got str"),
    ("epoch", 1.5, r"epoch must be an integer in \[0, inf\), got 1.5"),      # was read back as epoch 1
    ("epoch", None, "epoch must be an integer"),
    ("bn_state", None, "bn_state must be a dict, got NoneType"),            # was TypeError
    ("rngs", ["data"], "rngs must be a dict, got list"),                    # was AttributeError
    ("rngs", {3: np.random.default_rng()}, "rngs must have str keys"),
    ("history", {"a": {1}}, "history must be JSON-able"),                    # was TypeError
])
def test_save_checkpoint_refuses_what_load_checkpoint_could_not_use_and_writes_nothing(tmp_path, part, value, says):
    from refbinn.train.checkpoint import save_checkpoint
    _, parts = _toy_checkpoint_parts()
    with pytest.raises(ValueError, match=says):
        save_checkpoint(tmp_path / "ck.npz", **{**parts, part: value})
    assert list(tmp_path.iterdir()) == []


def test_builders_take_their_arguments_as_a_read_only_mapping_as_before():
    """``**kwargs`` took any Mapping before the dict checks, which refused a MappingProxyType."""
    import types
    from refbinn.models import build_model
    from refbinn.train.trace import make_optimizer
    model = build_model("mlp_mnist", types.MappingProxyType(dict(in_features=6, hidden=(5,), classes=3)))
    assert model.layers[1].in_features == 6
    assert make_optimizer("adam", 10, "float32", types.MappingProxyType({"lr": 0.5})).lr == 0.5


def test_save_checkpoint_takes_a_read_only_mapping_as_before(tmp_path):
    """dict(bn_state) took any Mapping before the dict check, which refused a MappingProxyType."""
    import types
    from refbinn.train.checkpoint import load_checkpoint, save_checkpoint
    _, parts = _toy_checkpoint_parts()
    save_checkpoint(tmp_path / "ck.npz", **{**parts, "bn_state": types.MappingProxyType(parts["bn_state"])})
    assert load_checkpoint(tmp_path / "ck.npz")["bn_state"].keys() == parts["bn_state"].keys()


def test_checkpoint_checks_name_the_file_for_entries_of_the_wrong_kind(tmp_path):
    """A model name that is a list (unhashable) and an optimizer entry that is not an optimizer
    were a TypeError and an AttributeError: 'internal error' from evaluate, export and --resume."""
    from refbinn.errors import FileFormatError
    from refbinn.train.checkpoint import load_checkpoint, save_checkpoint
    from refbinn.train.checkpoint_check import check_meta, check_state
    model, parts = _toy_checkpoint_parts()
    with pytest.raises(FileFormatError, match=r"ck.npz: config names model \[\['mlp_toy'\], \{\}\]"):
        check_meta("ck.npz", {"meta": {"dataset": "two-moons", "model": [["mlp_toy"], {}]}}, ("two-moons",))
    save_checkpoint(tmp_path / "ck.npz", **parts)
    ck = load_checkpoint(tmp_path / "ck.npz")
    for bad in (None, "adam"):
        with pytest.raises(FileFormatError, match=f"ck.npz: 'optimizer' is a {type(bad).__name__}, expected an optimizer"):
            check_state("ck.npz", {**ck, "opt": bad}, model)
    with np.load(tmp_path / "ck.npz") as z:
        d = {k: z[k] for k in z.files}
    np.savez(tmp_path / "half.npz", **{**d, "epoch": np.array(1.5)})
    with pytest.raises(FileFormatError, match=r"half.npz: .*epoch must be an integer"):   # was epoch 1
        load_checkpoint(tmp_path / "half.npz")


def test_trace_comparison_refuses_pairs_it_would_compare_wrongly():
    """A complex entry was compared by its real part only (with a ComplexWarning), an object or
    list entry and a meta of the wrong kind raised AttributeError; a meta whose name lists are
    null (as a port may write them) was a TypeError from check-trace."""
    from refbinn.train.trace import compare_traces, key_differences
    from refbinn.train.trace_check import match_traces
    meta = {"steps": 0, "param_names": ["w"], "state_fields": ["m"]}
    a = (meta, {"step0000/m/w": np.array([1.0, 2.0])})
    for entry, says in [(np.array([1.0, 2.0 + 5j]), "complex128"), (np.array([1.0, 2.0], dtype=object), "object"),
                        ([1.0, 2.0], "list")]:
        with pytest.raises(ValueError, match=f"trace entry 'step0000/m/w' is {says}, not an array of numbers"):
            compare_traces(a, (meta, {"step0000/m/w": entry}))
    for bad in [(None, a[1]), (meta, [1]), (meta, a[1], 3)]:
        with pytest.raises(ValueError, match=r"a trace must be a path or a \(meta dict, arrays dict\) pair"):
            match_traces(a, bad)
    with pytest.raises(ValueError, match="a trace must be a path or a"):
        key_differences(a, (meta,))
    nulls = ({**meta, "param_names": None, "state_fields": 3, "bn_names": "x"}, a[1])
    assert compare_traces(nulls, a) is None and match_traces(a, nulls) == []
    assert compare_traces(a, (meta, {"step0000/m/w": np.float64(1.0)})).reason == "shape"   # a scalar is fine


def test_trace_writers_name_bad_dtypes_sizes_and_optimizer_arguments(tmp_path):
    from refbinn.train.trace import make_optimizer, write_trace
    for dtype in ("bogus", [1]):                                   # was TypeError from np.dtype
        with pytest.raises(ValueError, match="dtype must be one of 'float32', 'float64'"):
            write_trace(tmp_path / "t.npz", model_name="tiny", optimizer_name="adam", steps=1, dtype=dtype)
    with pytest.raises(ValueError, match="dtype must be one of"):
        make_optimizer("bayesbinn-exact", 10, "bogus")
    for n in (None, "x", 0):                                       # None was TypeError from float()
        with pytest.raises(ValueError, match=r"n_data must be an integer in \[1, inf\)"):
            make_optimizer("bayesbinn-exact", n, "float64")
    with pytest.raises(ValueError, match="hparams must be a dict of optimizer arguments, got list"):
        make_optimizer("adam", 10, "float64", [("lr", 1.0)])      # was taken as dict(pairs)
    with pytest.raises(ValueError, match="optimizer 'adam': got an unexpected keyword argument 'bogus'; it takes lr"):
        make_optimizer("adam", 10, "float64", {"bogus": 1})       # was TypeError
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_params_of_another_shape_and_arguments_of_the_wrong_kind():
    """A Dense weight of shape (3, 5) for Dense(4, 3) was packed without a word (its fifth column
    read by no one: wrong logits, no error); a missing BatchNorm gamma was a KeyError; None for
    the model, params or state an AttributeError."""
    from refbinn.nn import BatchNorm, Dense, Sequential, SignActivation
    from refbinn.packed import export
    model = Sequential(Dense(4, 3, name="fc1"), BatchNorm(3, name="bn1"), SignActivation(name="s1"),
                       Dense(3, 2, name="fc2"))
    params, state = model.init(np.random.default_rng(0))
    params = {k: (np.where(v >= 0, 1, -1).astype(np.float32) if k.startswith("fc") else v) for k, v in params.items()}
    for edit, says in [({"fc1.weight": np.ones((3, 5), np.float32)}, r"layer 'fc1': params\['weight'\] has shape \(3, 5\), expected \(3, 4\)"),
                       ({"fc1.weight": params["fc1.weight"].astype(complex)}, "layer 'fc1'.*must hold real numbers, got dtype complex128"),
                       ({"bn1.bias": np.ones(7, np.float32)}, r"layer 'bn1': params\['bias'\] has shape \(7,\)")]:
        with pytest.raises(ValueError, match=says):
            export(model, {**params, **edit}, state)
    with pytest.raises(ValueError, match="export: params lack 'bn1.weight'"):
        export(model, {k: v for k, v in params.items() if k != "bn1.weight"}, state)
    for args, says in [((None, params, state), "model must be a Sequential, got NoneType"),
                       ((model, None, state), "params must be a dict name -> array, got NoneType"),
                       ((model, params, [1]), "bn_state must be a dict name -> array, got list")]:
        with pytest.raises(ValueError, match=says):
            export(*args)


def test_export_refuses_batchnorm_statistics_that_are_not_finite():
    """A NaN running statistic (a diverged run) was folded into thresholds that decide alike for
    every input: the packed model predicted class 0 for every image, with no error. A missing
    one was a KeyError."""
    from refbinn.nn import BatchNorm, Dense, Sequential, SignActivation
    from refbinn.packed import export
    model = Sequential(Dense(4, 3, name="fc1"), BatchNorm(3, name="bn1"), SignActivation(name="s1"),
                       Dense(3, 2, name="fc2"), BatchNorm(2, name="bn2"))
    params, state = model.init(np.random.default_rng(0))
    params = {k: (np.where(v >= 0, 1, -1).astype(np.float32) if k.startswith("fc") else v) for k, v in params.items()}
    export(model, params, state)
    for key, value, says in [("bn1.running_var", np.nan, "layer 'bn1': running_var is nan at channel 1"),
                             ("bn1.running_mean", np.inf, "layer 'bn1': running_mean is inf at channel 1"),
                             ("bn2.running_var", -1.0, "layer 'bn2': running_var is -1.0 at channel 1, expected "
                                                       "a finite value >= 0")]:
        bad = {**state, key: state[key].copy()}
        bad[key][1] = value
        with pytest.raises(ValueError, match=re.escape(says)):
            export(model, params, bad)
    with pytest.raises(ValueError, match="export: bn_state lacks 'bn2.running_mean'"):
        export(model, params, {k: v for k, v in state.items() if k != "bn2.running_mean"})
    for key, value, says in [("bn1.running_var", state["bn1.running_var"] + 0j,
                              "export: layer 'bn1': running_var must hold real numbers, got dtype complex"),
                             ("bn2.running_mean", np.zeros(2, bool),
                              "export: layer 'bn2': running_mean must hold real numbers, got dtype bool"),
                             ("bn2.running_mean", np.zeros(3, np.float32),
                              "export: layer 'bn2': running_mean has shape (3,), expected (2,)")]:
        with pytest.raises(ValueError, match=re.escape(says)):
            export(model, params, {**state, key: value})


def test_packed_model_built_by_hand_refuses_ops_it_cannot_run():
    from refbinn.packed import PackedModel
    for ops, arrays, says in [(None, [], "ops and arrays must be lists and meta a dict, got NoneType"),
                              (["relu"], [{}], "op 0 must be a dict with a str 'name' and an 'op' one of"),
                              ([{"op": "os.system", "name": "x"}], [{}], "op 0 must be a dict"),   # was accepted
                              ([{"op": "relu"}], [{}], "op 0 must be a dict with a str 'name'"),
                              ([{"op": "bias", "name": "b"}], [{"bias": [1.0]}],                   # was AttributeError
                               r"the arrays of op 0 \(bias 'b'\) must be a dict name -> ndarray")]:
        with pytest.raises(ValueError, match=says):
            PackedModel(ops, arrays)
    pool = PackedModel([{"op": "maxpool", "name": "p", "kernel": [5, 5], "stride": [1, 1]}], [{}])
    with pytest.raises(ValueError, match=r"packed layer 'p': input has shape \(3, 1, 2, 2\), expected \(N, C, H >= 5, W >= 5\)"):
        pool.predict_logits(np.ones((3, 1, 2, 2), np.float32))     # was an empty (3, 1, 0, 0) output
    with pytest.raises(ValueError, match=r"predict: the logits have shape \(3,\), expected \(N, outputs\)"):
        PackedModel([{"op": "relu", "name": "r"}], [{}]).predict(np.ones(3, np.float32))   # was AxisError


@pytest.mark.parametrize("overrides,says", [
    ([("lr", 0.1)], "overrides must be a dict setting -> value, got list"),          # was AttributeError
    ({"lrr": 0.1}, "overrides: unknown setting"),                                   # was ignored
    ({"rho": 1.0}, "overrides: 'rho' does not apply to optimizer 'bayesbinn'"),     # was recorded, unused
    ({"schedule": "bogus"}, "schedule must be one of 'cosine', 'milestones', 'geometric', 'constant'"),  # was constant lr
    ({"schedule": "cosine", "off_by_one": "no"}, "off_by_one must be True or False, got 'no'"),       # was True
    ({"schedule": "geometric"}, "optimizer 'bayesbinn': its settings lack 'lr_end'"),                # was KeyError
    ({"model_kwargs": [1]}, "overrides: model_kwargs must be a dict, got list"),    # was TypeError
])
def test_build_refuses_overrides_it_would_ignore_or_misread(overrides, says):
    from refbinn.experiments.setup import build
    with pytest.raises(ValueError, match=says):
        build("two-moons", "bayesbinn", overrides=overrides, quiet=True)


def test_run_takes_numpy_numbers_as_settings(tmp_path):
    """An np.float32 lr (a value read from an array) ended `run` in a TypeError from json.dumps
    (the log line), and past it in fit's check of the checkpoint's JSON meta."""
    from refbinn.experiments import run
    res = run("two-moons", "ste", "np", {"epochs": np.int64(1), "lr": np.float32(0.01), "seed": np.int64(1)},
              out=tmp_path, quiet=True, log=lambda m: None)
    assert res["summary"]["epochs_run"] == 1 and res["settings"]["optimizer_settings"]["lr"] == float(np.float32(0.01))
    assert json.loads((tmp_path / "np.json").read_text())["settings"]["seed"] == 1


def test_build_applies_an_optimizer_setting_the_dataset_preset_lacks():
    """'milestones' for MNIST's BayesBiNN (cosine in the preset) was dropped: with schedule =
    'milestones' the run used (1500, 2500) instead of the milestones given."""
    from refbinn.experiments.setup import make_optimizer
    from refbinn.experiments.setup import build
    s = build("two-moons", "bayesbinn", overrides={"milestones": [1]}, quiet=True)
    assert s.schedule(0) > s.schedule(1)
    for s, kw, says in [({"lr": 0.1}, dict(steps_per_epoch=0), r"steps_per_epoch must be an integer in \[1, inf\)"),
                        ({}, {}, "optimizer 'ste': its settings lack 'lr'"),
                        (None, {}, "make_optimizer: s and kinds must be dicts, got NoneType")]:
        with pytest.raises(ValueError, match=says):
            make_optimizer("ste", s, n_train=10, kinds={}, **{"epochs": 1, "steps_per_epoch": 1, **kw})
    with pytest.raises(ValueError, match="gamma_decay_per_epoch must be a real number"):   # was TypeError at epoch 1
        build("two-moons", "bop", overrides={"gamma_decay_per_epoch": "x"}, quiet=True)


def test_experiment_functions_refuse_arguments_of_the_wrong_kind(tmp_path):
    from refbinn.experiments.continual import run_continual
    from refbinn.experiments.demo import run_demo
    from refbinn.experiments.uncertainty import evaluate_checkpoints, evaluation_sets, prediction_rows
    x, y = np.zeros((16, 784), np.float32), np.zeros(16, np.int64)
    for xt, says in [(x[:, 0], r"x_train must be \(N, D\) with N >= 1, got shape \(16,\)"),   # was IndexError
                     (x[:0], r"x_train must be \(N, D\) with N >= 1, got shape \(0, 784\)")]:
        with pytest.raises(ValueError, match=says):
            run_continual(xt, y, x, y, tasks=1, epochs=1, quiet=True)
    with pytest.raises(ValueError, match="x_test must have x_train's columns"):             # was AttributeError
        run_continual(x, y, None, y, tasks=1, epochs=1, quiet=True)
    for call, says in [(lambda: evaluate_checkpoints(str(tmp_path / "ck.npz")), "paths must be a list, got str"),
                       (lambda: evaluate_checkpoints([str(tmp_path)], ood="mnist"), "ood must be a list, got str"),
                       (lambda: evaluate_checkpoints([str(tmp_path)], samples=5), "samples must be a list, got int"),
                       (lambda: evaluation_sets("mnist", None), "names must be a list, got NoneType"),
                       (lambda: prediction_rows({}, x, y, None), "sets must be a dict name -> inputs, got NoneType"),
                       (lambda: prediction_rows({}, x, y, {}, samples=None), "samples must be a list")]:
        with pytest.raises(ValueError, match=says):
            call()
    for kw, says in [({"quick": "no"}, "quick must be True or False, got 'no'"), ({"seed": -1}, "seed must be")]:
        with pytest.raises(ValueError, match=says):
            run_demo(out=str(tmp_path / "demo"), **kw)
    assert not (tmp_path / "demo").exists()


def test_data_and_cluster_helpers_refuse_arguments_of_the_wrong_kind(tmp_path):
    from refbinn.data.cifar import load_cifar
    from refbinn.data.download import download, verify
    from refbinn.data.root import default_root, find_dataset
    from refbinn.sweep.cluster import thread_env
    for call, says in [(lambda: load_cifar(tmp_path, kind=["cifar10"]), "kind must be one of"),    # was TypeError
                       (lambda: find_dataset("mnist", 3), "root must be a folder path"),           # was TypeError
                       (lambda: default_root(""), "root must be a folder path"),                  # was the cwd
                       (lambda: download(["mnist"], root=tmp_path), "download: name must be one of"),
                       (lambda: download("mnist", root=tmp_path, base_url=3), "base_url must be a URL"),   # AttributeError
                       (lambda: download("mnist", root=tmp_path, timeout="x"), "timeout must be a real number"),
                       (lambda: download("mnist", root=tmp_path, timeout=0), r"timeout must be in \(0, inf\)"),
                       (lambda: thread_env(0), r"threads must be an integer in \[1, inf\)")]:   # was NUMBA_NUM_THREADS=0
        with pytest.raises(ValueError, match=says):
            call()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_bytes(b"abc")
    verify(tmp_path / "f", "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")   # was AttributeError


def _generator_entry_points():
    """(name, call rng -> anything, the argument's name) for every entry point that takes a Generator."""
    from refbinn.bn_recalibration import calibration_batches
    from refbinn.data.ood import gaussian_noise, permuted_images, uniform_noise
    from refbinn.data.toy import two_moons
    from refbinn.data.transforms import augment_cifar, batches
    from refbinn.io.rng import generator_state_json
    from refbinn.nn import Dense, Sequential
    from refbinn.optim import VISPA, BayesBiNN
    from refbinn.predict import predict_mean
    model = Sequential(Dense(3, 2, name="fc"))
    params, bn = model.init(np.random.default_rng(0))
    bayes, vispa = BayesBiNN(N=10, tau=1.0), VISPA()
    b_state, v_state = bayes.init(params, np.random.default_rng(0)), vispa.init(params, np.random.default_rng(0))
    x = np.zeros((4, 3), np.float32)
    return [("BayesBiNN.init", lambda r: bayes.init(params, r), "rng"),
            ("BayesBiNN.sample_params", lambda r: bayes.sample_params(b_state, r), "rng"),
            ("VISPA.init", lambda r: vispa.init(params, r), "rng"),
            ("VISPA.sample_params", lambda r: vispa.sample_params(v_state, r), "rng"),
            ("Sequential.init", lambda r: model.init(r), "rng"),
            ("uniform_noise", lambda r: uniform_noise(2, (4,), "mnist", r), "rng"),
            ("gaussian_noise", lambda r: gaussian_noise(2, (4,), "mnist", r), "rng"),
            ("permuted_images", lambda r: permuted_images(x, r), "rng"),
            ("augment_cifar", lambda r: augment_cifar(np.zeros((1, 1, 2, 2)), r), "rng"),
            ("batches", lambda r: batches(x, None, 2, rng=r), "rng"),
            ("two_moons", lambda r: two_moons(4, rng=r), "rng"),
            ("calibration_batches", lambda r: calibration_batches(x, 1, 2, r), "rng"),
            ("predict_mean", lambda r: predict_mean(model, bayes, b_state, bn, x, samples=1, rng=r), "rng"),
            ("generator_state_json", generator_state_json, "gen")]


def test_every_entry_point_taking_a_generator_refuses_a_seed_and_a_random_state():
    """An int seed (a common slip) or a legacy RandomState: one ValueError naming the argument,
    Generator and what was given, from one check (refbinn.checks.check_generator)."""
    for name, call, arg in _generator_entry_points():
        for rng, got in ((42, "int"), (np.random.RandomState(0), "RandomState")):
            with pytest.raises(ValueError) as e:
                call(rng)
            says = str(e.value)
            assert f"{arg} " in says and f"must be a numpy.random.Generator, got {got}" in says, (name, says)
            assert says.startswith(name) or name in ("uniform_noise", "gaussian_noise", "permuted_images"), says


def test_dicts_of_arrays_are_checked_alike_and_a_read_only_mapping_passes_everywhere():
    """One check (refbinn.checks.check_array_dict) for params given to an optimizer, a Sequential,
    flatten_params and export: the same message, and a MappingProxyType taken by all (export
    took only a dict)."""
    import types
    from refbinn.nn import Dense, Sequential, SignActivation, flatten_params
    from refbinn.optim import Adam
    from refbinn.packed import export
    model = Sequential(Dense(4, 3, name="fc1"), SignActivation(name="s1"), Dense(3, 2, name="fc2"))
    params, state = model.init(np.random.default_rng(0))
    params = {k: np.where(v >= 0, 1, -1).astype(np.float32) for k, v in params.items()}
    for call, says in [(lambda: Adam().init(None),
                        r"Adam: params must be a dict name -> array \(Sequential.init.s\), got NoneType"),
                       (lambda: model.forward(None, np.zeros((1, 4), np.float32), state),
                        r"Sequential: params must be a dict name -> array \(from init\(\)\), got NoneType"),
                       (lambda: flatten_params([1]), "flatten_params: params must be a dict name -> array, got list"),
                       (lambda: export(model, (1,), state), "export: params must be a dict name -> array, got tuple")]:
        with pytest.raises(ValueError, match=says):
            call()
    ro, ro_state = types.MappingProxyType(params), types.MappingProxyType(state)
    assert list(Adam().init(ro).m) == list(params)
    np.testing.assert_array_equal(flatten_params(ro), flatten_params(params))
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_array_equal(model.forward(ro, x, ro_state)[0], model.forward(params, x, state)[0])
    np.testing.assert_array_equal(export(model, ro, ro_state).predict_logits(x),
                                  export(model, params, state).predict_logits(x))
