"""Parallel efficiency and per-run overhead of `refbinn sweep` on a local dask cluster.

The same grid of short, equal runs (two moons, BayesBiNN, one run per seed) is timed twice:
one after another in this process (single-threaded: ``sequential_seconds``), and as a sweep
on a LocalCluster of WORKERS single-threaded workers (``sweep_seconds``: from starting the
cluster to the last result collected, so the cluster's start-up and the workers' imports
count against the sweep). Then

    parallel_efficiency = sequential_seconds / (workers * sweep_seconds)          target >= 0.85
    overhead_per_run_s  = (workers * sweep_seconds - sum of the runs' own times) / runs   target <= 1 s

where a run's own time is measured inside the worker around ``refbinn.experiments.run``, so
the overhead is everything else a worker spends per run: scheduling, start-up, idling at
the end, collecting results. Both are ratios of times measured in the same process; the
machine's load is printed next to them (a shared machine lowers the efficiency). The same
ratios in CPU time (``cpu_efficiency`` = sequential CPU / the workers' and the client's CPU
during the sweep, ``cpu_overhead_per_run_s``) do not depend on other jobs' load.

On a virtual machine the speed of a core drifts by 20-30% over minutes (the same run took 6.0
s and 8.0 s within five minutes on an idle 2-core VM), which makes one sequential-then-sweep
pair as likely to measure the drift as the sweep. So the pair is repeated ``--repeats`` times,
alternating, and every reported figure is the median over the pairs of that pair's figure
(each pair's two halves run within a minute of each other); the per-pair values are in
``repeats``.

Usage::

    python scripts/bench_sweep.py --quick --json      # 8 runs of ~6 s, ~90 s in all
    python scripts/bench_sweep.py                     # 16 runs of ~4 s
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cpu_model, run_main, set_threads   # noqa: E402  (standard library only: before numpy is imported)

set_threads(1)                   # the sequential baseline gets what one worker gets: one thread
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# -- settings -------------------------------------------------------------------------------------
WORKERS = 2
DATASET, OPTIMIZER = "two-moons", "bayesbinn"      # the paper preset; only epochs and seeds change
RUNS, EPOCHS = 16, 400
QUICK = dict(runs=8, epochs=300)     # ~3 s per run: the ~1 s cluster start stays a small part
REPEATS = 3
CHECKPOINT_EVERY = 50


def make_sweep(runs, epochs, name):
    from refbinn.sweep import parse_spec
    return parse_spec({"name": name, "seeds": list(range(runs)),
                       "base": {"dataset": DATASET, "optimizer": OPTIMIZER, "epochs": epochs,
                                "checkpoint_every": CHECKPOINT_EVERY}})


def sequential(sweep, out):
    """Each run through the sweep's own task function, one after another
    -> (seconds, CPU seconds, [run seconds])."""
    from refbinn.sweep.task import execute
    d = os.path.join(out, sweep.name)
    execute(make_sweep(1, 5, "warmup").runs[0].to_dict(), os.path.join(out, "warmup"), threads=1)  # Numba caches
    t0, c0 = time.perf_counter(), time.process_time()
    recs = [execute(r.to_dict(), d, threads=1) for r in sweep.runs]
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert all(r["status"] == "done" for r in recs), recs
    return total, cpu, [r["seconds"] for r in recs]


def on_cluster(sweep, out, workers):
    """The sweep on a fresh LocalCluster -> (seconds, cluster start seconds, {CPU seconds}, [run seconds]).

    The CPU seconds are those of the workers (from after their start) and of this process
    (client and scheduler) during the sweep: unlike wall time, they do not grow when other
    jobs share the cores.
    """
    from refbinn.sweep.cluster import open_client
    from refbinn.sweep.engine import run_sweep
    t0 = time.perf_counter()
    with open_client(workers=workers, threads_per_worker=1) as (client, threads):
        client.wait_for_workers(workers)
        t_start = time.perf_counter() - t0
        w0, c0 = client.run(time.process_time), time.process_time()
        res = run_sweep(sweep, out, client=client, threads=threads, progress=False, log=lambda *m: None)
        total = time.perf_counter() - t0
        w1, c1 = client.run(time.process_time), time.process_time()
    assert res["counts"]["done"] == len(sweep.runs), res["counts"]
    assert w0.keys() == w1.keys(), "a worker restarted during the benchmark"
    cpu = {"workers": sum(w1[k] - w0[k] for k in w0), "client_and_scheduler": c1 - c0}
    return total, t_start, cpu, [r["seconds"] for r in res["runs"]]


def measure(sweep, out, workers):
    """One sequential-then-sweep pair -> dict of its figures."""
    runs = len(sweep.runs)
    seq, seq_cpu, seq_runs = sequential(sweep, os.path.join(out, "seq"))
    swp, start, swp_cpu, swp_runs = on_cluster(sweep, os.path.join(out, "sweep"), workers)
    return {
        "sweep_seconds": swp, "sequential_seconds": seq, "cluster_start_seconds": start,
        "parallel_efficiency": seq / (workers * swp),
        "parallel_efficiency_without_cluster_start": seq / (workers * (swp - start)),
        "overhead_per_run_s": (workers * swp - sum(swp_runs)) / runs,
        "run_seconds_sequential_mean": sum(seq_runs) / runs, "run_seconds_in_sweep_mean": sum(swp_runs) / runs,
        # CPU-time view, insensitive to other jobs on the machine: the sweep's extra CPU per run
        "cpu_seconds_sequential": seq_cpu, "cpu_seconds_sweep_workers": swp_cpu["workers"],
        "cpu_seconds_sweep_client_and_scheduler": swp_cpu["client_and_scheduler"],
        "cpu_efficiency": seq_cpu / sum(swp_cpu.values()),
        "cpu_overhead_per_run_s": (sum(swp_cpu.values()) - seq_cpu) / runs,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"{QUICK['runs']} runs of {QUICK['epochs']} epochs")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--workers", type=int, default=WORKERS)
    ap.add_argument("--repeats", type=int, default=REPEATS,
                    help=f"sequential-then-sweep pairs; figures are medians over them (default {REPEATS})")
    ap.add_argument("--out", help="also write the JSON object to this file")
    a = ap.parse_args(argv)
    if a.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {a.repeats}")
    if a.workers < 1:
        ap.error(f"--workers must be >= 1, got {a.workers}")
    if a.out == "":                                          # write_json('') failed after the benchmark
        ap.error("--out is empty; give the file to write")
    if a.out is not None and os.path.isdir(a.out):
        ap.error(f"--out {a.out} is a folder; give the file to write")
    log = (lambda *m: print(*m, file=sys.stderr)) if a.json else print
    runs, epochs = (QUICK["runs"], QUICK["epochs"]) if a.quick else (RUNS, EPOCHS)
    sweep = make_sweep(runs, epochs, "bench")
    load0 = os.getloadavg()
    log(f"bench_sweep: {runs} runs ({DATASET}, {OPTIMIZER}, {epochs} epochs, one per seed), "
        f"{a.workers} workers x 1 thread, {a.repeats} pairs; CPU {cpu_model()}, {os.cpu_count()} cores, "
        f"load {load0[0]:.2f}")
    pairs = []
    for i in range(a.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            p = measure(sweep, tmp, a.workers)
        pairs.append(p)
        log(f"pair {i + 1}: sequential {p['sequential_seconds']:.1f} s ({p['run_seconds_sequential_mean']:.2f} s "
            f"per run), sweep {p['sweep_seconds']:.1f} s (cluster start {p['cluster_start_seconds']:.1f} s): "
            f"efficiency {p['parallel_efficiency']:.3f}, CPU efficiency {p['cpu_efficiency']:.3f}")
    load1 = os.getloadavg()
    result = {"runs": runs, "workers": a.workers, "epochs": epochs, "repeats_count": a.repeats,
              **{k: statistics.median(p[k] for p in pairs) for k in pairs[0]},
              "cpu": cpu_model(), "cores": os.cpu_count(), "loadavg_1min_before": load0[0],
              "loadavg_1min_after": load1[0], "repeats": pairs}
    log(f"median over {a.repeats} pairs: parallel efficiency {result['parallel_efficiency']:.3f} (target >= 0.85), "
        f"overhead per run {result['overhead_per_run_s']:.2f} s (target <= 1 s); a run takes "
        f"{result['run_seconds_in_sweep_mean']:.2f} s in the sweep, {result['run_seconds_sequential_mean']:.2f} s "
        f"alone; load {load0[0]:.2f} -> {load1[0]:.2f}; CPU time: efficiency {result['cpu_efficiency']:.3f}, "
        f"{result['cpu_overhead_per_run_s']:.2f} s extra per run")
    from refbinn.io import json_dumps, write_json
    if a.json:
        print(json_dumps(result))
    if a.out:
        write_json(a.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(run_main("bench_sweep.py", main))
