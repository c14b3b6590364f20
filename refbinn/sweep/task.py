"""One run of a sweep, as a worker executes it: the same ``refbinn.experiments.run`` that
``refbinn train`` calls, made idempotent and resumable through files in the sweep folder.

Files of run NAME in the sweep folder DIR (shared by every worker)::

    DIR/runs/NAME.json            the result (as `refbinn train` writes it) plus the run's identity;
                                  its presence with the same identity means "done": the run is skipped
    DIR/runs/NAME/run.json        the identity of the run the checkpoint belongs to
    DIR/runs/NAME/checkpoint.npz  written by the training loop; a rerun resumes from it
    DIR/runs/NAME/history.json    the same loop's history
    DIR/runs/NAME/log.txt         the run's log lines (settings, epochs, resumption, errors)

A run started again (a rerun of the sweep, or dask rescheduling it after its worker died)
resumes from the checkpoint if ``run.json`` holds the same identity, bit-identically to
an uninterrupted run (``fit(resume=True)``); a checkpoint of other settings is discarded.
The identity (``refbinn.sweep.spec.run_identity``) leaves out what ``refbinn train --resume``
may change (``checkpoint_every``), so a sweep file that changes only that keeps its results.
"""
from __future__ import annotations

import json
import os
import socket
import time
import traceback

from ..io import write_json
from .spec import run_identity, same_identity


def result_path(sweep_dir, name):
    """``DIR/runs/NAME.json``: the run's result; its presence with the same identity means done.

    Parameters
    ----------
    sweep_dir : str
        The sweep's folder.
    name : str
        The run's name.

    Returns
    -------
    str
    """
    return os.path.join(sweep_dir, "runs", f"{name}.json")


def run_dir(sweep_dir, name):
    """``DIR/runs/NAME``: the run's folder (run.json, checkpoint.npz, history.json, log.txt).

    Parameters
    ----------
    sweep_dir : str
        The sweep's folder.
    name : str
        The run's name.

    Returns
    -------
    str
    """
    return os.path.join(sweep_dir, "runs", name)


def read_json_or_none(path):
    """The JSON in ``path``, or None when it is missing or unreadable (a damaged file is run again).

    Parameters
    ----------
    path : str

    Returns
    -------
    object or None
    """
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _finished_entry(sweep_dir, name):
    """The ``sweep_run`` entry of ``DIR/runs/NAME.json`` (a dict), else None (no file, a damaged one)."""
    res = read_json_or_none(result_path(sweep_dir, name))
    done = res.get("sweep_run") if isinstance(res, dict) else None     # a damaged result: run it again
    return done if isinstance(done, dict) else None


def finished(sweep_dir, run):
    """The ``sweep_run`` entry of ``DIR/runs/NAME.json`` if it holds a result of this run (same
    identity), else None.

    Parameters
    ----------
    sweep_dir : str
        The sweep's folder.
    run : dict
        A run from ``Run.to_dict`` (name, dataset, optimizer, preset, overrides are read).

    Returns
    -------
    dict or None
        name, setting, seed, point, identity, resumed_from_epoch, seconds, host, pid of the
        finished run; None if there is no readable result of the same identity.
    """
    done = _finished_entry(sweep_dir, run["name"])
    return done if done is not None and same_identity(done.get("identity"), run_identity(run)) else None


def replaces_result(sweep_dir, run):
    """True if ``DIR/runs/NAME.json`` holds a finished result of other settings, which running
    ``run`` will replace.

    Parameters
    ----------
    sweep_dir : str
        The sweep's folder.
    run : dict
        A run from ``Run.to_dict``.

    Returns
    -------
    bool
    """
    done = _finished_entry(sweep_dir, run["name"])
    return done is not None and not same_identity(done.get("identity"), run_identity(run))


def pin_threads(threads):
    """Give Numba ``threads`` threads in this process (BLAS reads OMP/OPENBLAS/MKL_NUM_THREADS,
    which the cluster sets before the worker starts: see ``refbinn.sweep.cluster``).

    Numba reads ``NUMBA_NUM_THREADS`` once, when it is imported, and re-reads the environment
    at every compilation, failing if the variable changed after its threads started. A dask
    nanny applies its ``env`` only after the worker process has started, and the worker may
    have imported Numba before that (a spawned worker re-imports the parent's ``__main__``).
    So the variable is first put back to the value Numba started with; the thread count is
    then set with ``numba.set_num_threads``, which is what limits the threads a kernel uses.

    Parameters
    ----------
    threads : int
        The wanted count, clipped to [1, NUMBA_NUM_THREADS].
    """
    import numba
    os.environ["NUMBA_NUM_THREADS"] = str(numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))


def _worker_threads():
    """This dask worker's thread count (1 outside a worker)."""
    try:
        from distributed import get_worker
        return get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        return 1


def _checkpoint_epoch(path):
    import numpy as np
    try:
        with np.load(path, allow_pickle=False) as z:       # reads only the 'epoch' entry
            return int(z["epoch"])
    except (OSError, KeyError, ValueError):
        return None


def execute(run, sweep_dir, data_root=None, threads=None, command=None):
    """Train one run of a sweep (a dict from ``Run.to_dict``) -> a small record for the client.

    A failure of the run itself (bad data, a non-finite state) is returned, not raised, so
    that one bad run does not stop the sweep; a worker that dies mid-run never returns, and
    dask runs the task again on another worker, which resumes.

    Parameters
    ----------
    run : dict
        A run from ``Run.to_dict``.
    sweep_dir : str
        The sweep's folder, the same path on every worker.
    data_root : str, optional
        Where this worker finds the data sets (None: ``$REFBINN_DATA``, then the cache).
    threads : int, optional
        Numba threads for the run (None: this dask worker's thread count, 1 outside one).
    command : str, optional
        The sweep's command line, recorded in the run's result.

    Returns
    -------
    dict
        ``name``, ``status`` ('done', 'skipped' or 'failed'), ``seconds``,
        ``resumed_from_epoch``, ``summary`` (the training summary, when done), ``error``
        and ``traceback`` (when failed).
    """
    from ..experiments import run as train_run
    name = run["name"]
    rdir = run_dir(sweep_dir, name)
    os.makedirs(rdir, exist_ok=True)
    log_path = os.path.join(rdir, "log.txt")

    def log(msg):
        with open(log_path, "a") as fh:
            fh.write(msg.rstrip("\n") + "\n")

    record = {"name": name, "status": "done", "seconds": 0.0, "resumed_from_epoch": 0,
              "summary": None, "error": None, "traceback": None}
    if finished(sweep_dir, run):          # finished meanwhile (another client, or a lost reply)
        return {**record, "status": "skipped"}
    t0 = time.perf_counter()
    try:
        pin_threads(threads or _worker_threads())
        identity = run_identity(run)
        ck = os.path.join(rdir, "checkpoint.npz")
        owner = read_json_or_none(os.path.join(rdir, "run.json"))
        if os.path.exists(ck) and not same_identity(owner, identity):
            # a checkpoint of other settings (the sweep file changed): start this run afresh
            log(f"{time.ctime()}: discarding a checkpoint of other settings: {json.dumps(owner)}")
            for f in ("checkpoint.npz", "history.json"):
                if os.path.exists(os.path.join(rdir, f)):
                    os.remove(os.path.join(rdir, f))
        write_json(os.path.join(rdir, "run.json"), identity)
        start = _checkpoint_epoch(ck) if os.path.exists(ck) else None
        record["resumed_from_epoch"] = start or 0
        log(f"{time.ctime()}: start on {socket.gethostname()} pid {os.getpid()}"
            + (f", resuming at epoch {start}" if start else ""))
        res = train_run(run["dataset"], run["optimizer"], name, run["overrides"], out=sweep_dir,
                        root=data_root, resume=True, quiet=True, command=command, run_dir=rdir,
                        write=False, log=log, preset=run["preset"])
        record["seconds"] = time.perf_counter() - t0
        res["sweep_run"] = {**{k: run[k] for k in ("name", "setting", "seed", "point")},
                            "identity": identity, "resumed_from_epoch": record["resumed_from_epoch"],
                            "seconds": record["seconds"], "host": socket.gethostname(), "pid": os.getpid()}
        write_json(result_path(sweep_dir, name), res)
        record["summary"] = res["summary"]
        log(f"{time.ctime()}: done in {record['seconds']:.1f} s")
    except Exception as e:        # the run's own failure: reported, the sweep goes on
        record.update(status="failed", seconds=time.perf_counter() - t0,
                      error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        log(f"{time.ctime()}: failed: {record['traceback']}")
    return record
