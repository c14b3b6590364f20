"""The ``refbinn sweep`` and ``refbinn report`` subcommands (registered by ``refbinn.cli``).

dask.distributed is imported only when a sweep runs, so the rest of the command line
works without it.
"""
from __future__ import annotations

import os


def cmd_sweep(a):
    """``refbinn sweep SPEC.toml``: run a grid of training runs on a dask cluster.

    Checks the sweep file (``load_spec``) and the paths it writes (``check_outputs``) first;
    with ``--dry-run`` only lists the runs.
    Otherwise runs them on a local cluster or the one at ``--scheduler`` (``run_sweep``)
    into ``OUT/NAME`` and prints the ``refbinn report`` command to aggregate them.

    Parameters
    ----------
    a : argparse.Namespace
        The parsed arguments: spec, out, data_root, workers, threads_per_worker, scheduler,
        dry_run, quiet.

    Returns
    -------
    int
        The exit code: 0, or 1 if any run failed.
    """
    from .engine import check_outputs, record_finished, run_sweep
    from .spec import load_spec
    sweep = load_spec(a.spec)                       # every check happens here, before any cluster starts
    check_outputs(sweep, a.out)                     # (a file where a folder goes, a folder for a file)
    if a.dry_run:
        for r in sweep.runs:
            print(r.name, r.overrides)
        print(f"{len(sweep.runs)} runs into {os.path.join(a.out, sweep.name)}")
        return 0
    from .cluster import open_client
    try:
        with open_client(a.scheduler, workers=a.workers, threads_per_worker=a.threads_per_worker,
                         quiet=True) as (client, threads):
            res = run_sweep(sweep, a.out, client=client, threads=threads, data_root=a.data_root,
                            progress=not a.quiet)
    except KeyboardInterrupt:
        record_finished(sweep, a.out)     # runs that finished while the local cluster closed
        raise
    print(f"report: refbinn report {res['dir']}")
    return 1 if res["counts"]["failed"] else 0


def cmd_report(a):
    """``refbinn report DIR``: aggregate a sweep over seeds (mean +- std per setting).

    Writes report.md, report.json and curves.png (``write_report``) and prints a table whose
    columns are a subset of report.md's: the setting, the number of seeds (report.md lists
    them, and the epochs), and test @ best val, test last epoch, test NLL, train loss and
    s / epoch where some run has them (report.md adds the mean prediction's accuracy and NLL).
    The console rounds each mean to 4 significant digits and its std to 2 (accuracies in
    percent); report.md rounds accuracies to 2 decimals, the rest to 4 significant digits
    (1 decimal from 100 on).

    Parameters
    ----------
    a : argparse.Namespace
        The parsed arguments: dir (the sweep's folder), out (the report's folder; None: dir).

    Returns
    -------
    int
        The exit code: 0 (a missing ``dir``, or a file, is an OSError naming it: exit 2).
    """
    from ..report import table
    from .report import QUANTITIES, write_report
    rows, paths = write_report(a.dir, a.out)
    shown = [q for q in ("test_acc_at_best_val", "test_acc_last", "test_nll_last", "train_loss_last",
                         "seconds_per_epoch") if any(q in r["quantities"] for r in rows)]

    def cell(r, q):
        v = r["quantities"].get(q)
        if v is None:
            return None
        scale = 100 if QUANTITIES[q][2] else 1
        return f"{scale * v['mean']:.4g}" + ("" if v["std"] is None else f" +- {scale * v['std']:.2g}")
    print(table([(r["setting"], r["n"], *[cell(r, q) for q in shown]) for r in rows],
                ("setting", "seeds", *[QUANTITIES[q][0] for q in shown])))
    print("wrote " + ", ".join(paths.values()))
    return 0


def add_parsers(sub, common):
    """Add ``sweep`` and ``report`` to the ``refbinn`` subparsers; ``common`` adds --out and --data-root.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        What ``add_subparsers`` returned for the ``refbinn`` parser.
    common : callable
        ``common(parser, out=default)`` adds ``--out`` (with that default) and ``--data-root``.
    """
    q = sub.add_parser("sweep", help="run a grid of training runs (a TOML sweep file) on a dask cluster")
    common(q, out=os.path.join("results", "sweeps"))
    q.add_argument("spec", help="the sweep file (TOML: base, grid, seeds); results go to OUT/NAME, "
                   "which every worker must reach under the same path")
    q.add_argument("--workers", type=int, help="local worker processes (default: cores / threads per worker)")
    q.add_argument("--threads-per-worker", type=int, default=1,
                   help="threads of each local worker; BLAS and Numba are pinned to it (default 1)")
    q.add_argument("--scheduler", help="an existing dask cluster instead of a local one: its scheduler's "
                   "address (tcp://HOST:8786) or scheduler file (dask scheduler --scheduler-file FILE)")
    q.add_argument("--dry-run", action="store_true", help="check the file and list its runs; run nothing")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_sweep)

    q = sub.add_parser("report", help="aggregate a sweep over seeds: report.md, report.json, curves.png")
    q.add_argument("dir", help="the sweep's folder (results/sweeps/NAME)")
    q.add_argument("--out", help="folder for the report (default: the sweep's folder)")
    q.set_defaults(func=cmd_report)
