"""Where a sweep runs: a ``distributed.LocalCluster`` on this machine, or an existing dask
cluster reached by its scheduler's address.

The local cluster has ``workers`` processes of ``threads_per_worker`` threads each (by
default one single-threaded worker per core), and every BLAS (OpenMP, OpenBLAS, MKL) and
Numba in a worker is limited to the worker's thread count before the worker starts, so
that ``workers x threads`` threads share the cores and nothing oversubscribes. On an
existing cluster the workers are started by ``dask worker`` (whose nanny sets the BLAS
variables to 1 by default) and each run sets Numba to its worker's thread count. The local
workers ignore Ctrl-C (SIGINT), which a terminal sends to every process of the command: the
sweep's own process stops the sweep and closes them, and they print no tracebacks.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import warnings

from ..checks import check_int

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
# dask's background timers, slowed down for runs of seconds to hours: an idle 2-worker cluster
# otherwise takes about 9% of a core (event-loop ticks every 20 ms, system and memory monitors,
# and the statistical profiler sampling the running thread every 10 ms)
QUIET_CONFIG = {"distributed.worker.profile.enabled": False,
                "distributed.admin.tick.interval": "500ms",
                "distributed.admin.system-monitor.interval": "2s",
                "distributed.worker.memory.monitor-interval": "500ms"}


def cores():
    """The cores this process may use (its CPU affinity where the OS has one).

    Returns
    -------
    int
        len(os.sched_getaffinity(0)), else os.cpu_count() (1 if unknown); >= 1.
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def thread_env(threads):
    """Environment variables that give every BLAS and Numba ``threads`` threads.

    Parameters
    ----------
    threads : int
        The thread count, >= 1.

    Returns
    -------
    dict str -> str
        OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS, NUMBA_NUM_THREADS, each
        ``str(threads)``.
    """
    threads = check_int("threads", threads, 1)             # NUMBA_NUM_THREADS=0 fails at import
    return {v: str(threads) for v in THREAD_VARS}


@contextlib.contextmanager
def open_client(scheduler=None, *, workers=None, threads_per_worker=1, quiet=True):
    """Yield ``(client, threads)``: a dask Client and the thread count each run gets (None: the worker's).

    Parameters
    ----------
    scheduler : str, optional
        The address of an existing scheduler (``tcp://host:8786``) or the scheduler file that
        ``dask scheduler --scheduler-file FILE`` writes; None starts a LocalCluster.
    workers : int, optional
        Local worker processes (default: cores // threads_per_worker, at least 1).
    threads_per_worker : int
        Threads of each local worker (BLAS and Numba pinned to it), >= 1; default 1.
    quiet : bool
        Show only the local cluster's errors (else warnings too); default True.

    Yields
    ------
    client : distributed.Client
        Connected to the cluster; closed (with the local cluster) on leaving the block.
    threads : int or None
        ``threads_per_worker`` on a local cluster; None on an existing one (each run
        takes its worker's thread count).
    """
    from distributed import Client, LocalCluster
    threads = check_int("threads_per_worker", threads_per_worker, 1)
    if scheduler is not None:
        if workers is not None:
            raise ValueError("--workers applies to the local cluster only; the cluster at --scheduler "
                             "has the workers it was started with")
        # an address, or the file `dask scheduler --scheduler-file FILE` writes
        kw = {"scheduler_file": scheduler} if os.path.isfile(scheduler) else {"address": scheduler}
        try:
            client = Client(timeout="15s", **kw)
        except (OSError, TimeoutError) as e:
            raise ValueError(f"--scheduler {scheduler}: cannot connect ({e})") from None
        with client:
            yield client, None
        return
    n = check_int("workers", workers, 1) if workers is not None else max(1, cores() // threads)
    import dask
    # The variables are in this process's environment while the workers are spawned, so that
    # they inherit them: the nanny's own `env` reaches a worker only after it has started, too
    # late for a BLAS or a Numba it has already imported (a spawned worker re-imports the
    # parent's __main__). They are restored at once, because this process's Numba re-reads
    # the environment when it compiles. A worker the nanny restarts later gets dask's
    # pre-spawn BLAS settings (1 thread) and `pin_threads` sets its Numba threads.
    # SIGINT is ignored while they spawn, so that they inherit that: Ctrl-C reaches the whole
    # process group, and workers that took it each printed their tracebacks; this process
    # alone stops the sweep and closes the cluster.
    with _environment(thread_env(threads)), _sigint_ignored(), dask.config.set(QUIET_CONFIG), \
            warnings.catch_warnings():
        # the scheduler's HTTP routes move to another port when 8787 is taken: nothing to report
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        cluster = LocalCluster(n_workers=n, threads_per_worker=threads, processes=True, host="127.0.0.1",
                               dashboard_address=None, env=thread_env(threads),
                               silence_logs=logging.ERROR if quiet else logging.WARNING)
    with cluster, Client(cluster) as client:
        yield client, threads


@contextlib.contextmanager
def _sigint_ignored():
    """Ignore SIGINT (Ctrl-C) for the block; processes started in it keep ignoring it, since an
    ignored signal stays ignored across exec and Python then installs no KeyboardInterrupt
    handler. Only the main thread may set a handler: elsewhere the block changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:                        # (None: a handler not set from Python; the default then)
        signal.signal(signal.SIGINT, signal.SIG_DFL if saved is None else saved)


@contextlib.contextmanager
def _environment(values):
    """Set the environment variables ``values`` for the block, then restore what was there."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
