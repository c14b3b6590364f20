"""Run a sweep's runs on a dask cluster: skip the finished ones, submit the rest, show
progress, collect each run's record, and keep ``DIR/sweep.json`` up to date.

Fault tolerance comes from three places. A run's own failure is caught in the worker and
comes back as a record (``refbinn.sweep.task.execute``), so the other runs go on. A worker
that dies mid-run (killed, out of memory) loses its task; the dask scheduler runs it again
on another worker (up to ``distributed.scheduler.allowed-failures`` deaths, 3 by default),
and the run resumes from its last checkpoint. And a rerun of the whole sweep skips the runs
whose results exist with the same settings and resumes the others.

Every path the sweep writes is checked before anything is submitted (``check_outputs``). On
Ctrl-C the runs not yet started are cancelled and ``sweep.json`` marks as done each run whose
result file exists (``record_finished``; ``refbinn sweep`` calls it again once the local
cluster has closed, since a run in progress may finish meanwhile).
"""
from __future__ import annotations

import os
import time
import uuid

from ..io import atomic_write, write_json
from ..io.outputs import check_output_file
from ..options import check_folder
from ..report import table
from .task import execute, finished, read_json_or_none, replaces_result, result_path, run_dir

POLL_SECONDS = 0.5       # how often the progress bar counts running tasks while none finishes
STATUSES = ("done", "skipped", "failed", "pending")


def _counts(rows):
    return {s: sum(r.get("status") == s for r in rows) for s in STATUSES}


def _state(sweep, sweep_dir, rows, started, workers):
    return {"name": sweep.name, "description": sweep.description,
            "spec": sweep.path, "dir": sweep_dir,              # absolute paths, as --out may be relative
            "seeds": list(sweep.seeds), "base": sweep.base, "grid": sweep.grid,
            "workers": workers, "started": started, "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
            "counts": _counts(rows.values()),
            "runs": list(rows.values())}


def _copy_spec(sweep, sweep_dir):
    """Keep the sweep file beside its results (``DIR/sweep.toml``), so the folder says what it holds."""
    if sweep.path and os.path.exists(sweep.path):
        dst = os.path.join(sweep_dir, "sweep.toml")
        if not (os.path.exists(dst) and os.path.samefile(sweep.path, dst)):
            with open(sweep.path, "rb") as fh:
                atomic_write(dst, fh.read())


def record_finished(sweep, out):
    """Mark as done, in ``OUT/NAME/sweep.json``, the pending runs whose result file is there.

    After Ctrl-C (or any stop) the runs on the workers go on until the cluster closes, and
    one may write its ``runs/RUN.json`` after the sweep stopped collecting them; the status
    file is brought in line with the results folder. No ``sweep.json``: nothing to do.

    Parameters
    ----------
    sweep : Sweep
        The sweep that was stopped.
    out : str
        The parent folder of the sweep's folder.
    """
    sweep_dir = os.path.abspath(os.path.join(out, sweep.name))
    path = os.path.join(sweep_dir, "sweep.json")
    state = read_json_or_none(path)
    if not (isinstance(state, dict) and isinstance(state.get("runs"), list)
            and all(isinstance(row, dict) for row in state["runs"])):
        return                                    # none, or damaged: `refbinn report` names it
    runs = {r.name: r.to_dict() for r in sweep.runs}
    for row in state["runs"]:
        run = runs.get(row.get("name")) if row.get("status") == "pending" else None
        done = run and finished(sweep_dir, run)
        if done:
            row.update(status="done", seconds=done.get("seconds"),
                       resumed_from_epoch=done.get("resumed_from_epoch"))
    state.update(counts=_counts(state["runs"]), updated=time.strftime("%Y-%m-%d %H:%M:%S"))
    write_json(path, state)


def check_outputs(sweep, out):
    """ValueError naming the path unless every file the sweep writes into ``OUT/NAME`` may be written.

    Checked before any cluster starts or any run is submitted: the sweep's folder, its
    ``runs/`` and each run's folder must not be files, and ``sweep.json``, ``sweep.toml`` and
    each run's ``runs/RUN.json`` must not be folders (``check_output_file``, as ``refbinn
    train`` checks its results file).

    Parameters
    ----------
    sweep : Sweep
        The checked sweep (``load_spec``).
    out : str
        The parent folder of the sweep's folder.
    """
    sweep_dir = os.path.join(out, sweep.name)
    for path in (sweep_dir, os.path.join(sweep_dir, "runs")):
        check_folder("the sweep's folder", path, "a folder")
    for r in sweep.runs:
        check_folder("the run's folder", run_dir(sweep_dir, r.name), "a folder")
    for f in ("sweep.json", "sweep.toml"):
        check_output_file(os.path.join(sweep_dir, f), "the sweep file")
    for r in sweep.runs:
        check_output_file(result_path(sweep_dir, r.name), "the run's results file")


def run_sweep(sweep, out, *, client, threads=None, data_root=None, progress=True, log=print):
    """Run every run of ``sweep`` (a ``Sweep``) not yet done into ``OUT/NAME`` on ``client``.

    Runs whose result exists with the same identity are skipped; the others are submitted
    as ``refbinn.sweep.task.execute`` tasks (which resume from a checkpoint), and
    ``OUT/NAME/sweep.json`` is rewritten as each one finishes.

    Parameters
    ----------
    sweep : Sweep
        The checked sweep (``load_spec``).
    out : str
        The parent folder; the sweep's folder ``OUT/NAME`` must be reachable under the same
        path from every worker (a local path on one machine, a shared filesystem on a cluster).
    client : distributed.Client
    threads : int, optional
        Numba threads per run (None: the worker's thread count).
    data_root : str, optional
        Where the workers find the data sets (None: their ``$REFBINN_DATA``, then their cache).
    progress : bool
        Show a progress bar (tqdm) of the runs; default True.
    log : callable
        ``log(str)`` for the summary lines and the failed runs' table; default print.

    Returns
    -------
    dict
        ``dir`` (the sweep's folder, absolute), ``counts`` (done, skipped, failed, pending)
        and ``runs`` (one record per run: name, setting, seed, status, error, seconds,
        resumed_from_epoch).
    """
    from distributed import wait
    check_outputs(sweep, out)
    sweep_dir = os.path.abspath(os.path.join(out, sweep.name))
    os.makedirs(os.path.join(sweep_dir, "runs"), exist_ok=True)
    _copy_spec(sweep, sweep_dir)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    workers = len(client.scheduler_info().get("workers", {}))
    rows, todo, replaced = {}, [], 0
    for run in sweep.runs:
        r = run.to_dict()
        done = finished(sweep_dir, r)                  # (what the run's result file says of it)
        rows[run.name] = {"name": run.name, "setting": run.setting, "seed": run.seed,
                          "status": "skipped" if done else "pending", "error": None,
                          "seconds": done and done.get("seconds"),
                          "resumed_from_epoch": done and done.get("resumed_from_epoch")}
        if not done:
            todo.append(r)
            replaced += replaces_result(sweep_dir, r)      # a result of other settings, run again
    state_path = os.path.join(sweep_dir, "sweep.json")
    write_json(state_path, _state(sweep, sweep_dir, rows, started, workers))
    log(f"sweep {sweep.name}: {len(sweep.runs)} runs, {len(sweep.runs) - len(todo)} already done, "
        f"{len(todo)} to run on {workers} workers"
        + (f" ({replaced} of them replace finished results of other settings)" if replaced else "")
        + f"; results in {sweep_dir}")

    command = f"refbinn sweep {sweep.path or sweep.name}"
    tag = uuid.uuid4().hex[:8]
    futures = {}
    for r in todo:
        key = f"refbinn-{sweep.name}-{r['name']}-{tag}"
        futures[key] = (client.submit(execute, r, sweep_dir, data_root, threads, command, key=key,
                                      pure=False), r["name"])
    from tqdm.auto import tqdm
    bar = tqdm(total=len(todo), desc=f"sweep {sweep.name}", unit="run", disable=not progress or not todo)
    pending = set(futures)
    try:
        while pending:
            try:
                wait([futures[k][0] for k in pending], timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
            except TimeoutError:
                pass
            for k in [k for k in pending if futures[k][0].done()]:
                pending.discard(k)
                fut, name = futures[k]
                try:
                    rec = fut.result()
                except Exception as e:       # e.g. KilledWorker: the run's workers died too often
                    rec = {"status": "failed", "error": f"{type(e).__name__}: {e}", "seconds": None,
                           "resumed_from_epoch": None}
                rows[name].update({k2: rec.get(k2) for k2 in ("status", "error", "seconds", "resumed_from_epoch")})
                if rec["status"] == "failed":
                    bar.write(f"run {name} failed: {rec['error']}")
                bar.update(1)
                write_json(state_path, _state(sweep, sweep_dir, rows, started, workers))
            # a worker may hold a few more tasks than it has threads (dask's queueing): cap the count
            running = min(sum(k in pending for keys in client.processing().values() for k in keys),
                          sum(client.nthreads().values()))
            bar.set_postfix(running=running, failed=sum(r["status"] == "failed" for r in rows.values()))
    except BaseException:              # Ctrl-C: record the runs that finished meanwhile, then stop
        client.cancel([futures[k][0] for k in pending])
        write_json(state_path, _state(sweep, sweep_dir, rows, started, workers))
        record_finished(sweep, out)
        raise
    finally:
        bar.close()
    state = _state(sweep, sweep_dir, rows, started, workers)
    write_json(state_path, state)
    c = state["counts"]
    log(f"sweep {sweep.name}: {c['done']} done, {c['skipped']} skipped (already done), {c['failed']} failed")
    failed = [r for r in rows.values() if r["status"] == "failed"]
    if failed:
        log(table([(r["name"], r["error"]) for r in failed], ("failed run", "error")))
        log(f"logs: {os.path.join(sweep_dir, 'runs', 'NAME', 'log.txt')}")
    return {"dir": sweep_dir, "counts": c, "runs": state["runs"]}
