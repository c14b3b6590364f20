"""The plumbing the experiment runners and benchmarks in scripts/ share.

Each script stays one file per experiment with its settings at the top; what lives
here is only what they would otherwise each repeat: the command-line flags every
runner ends with, picking a setting from its flag / ``--quick`` / the default, one
Table 2 run and its table, the learning-rate and temperature sweeps' loop, the toy
figures' build + fit and per-run record, and the benchmarks' timer, flags and
thread setup.

Only the standard library is imported at load time: the benchmarks import this
module before numpy, because BLAS and Numba read their thread counts from the
environment when they load (``set_threads``). refbinn and numpy are imported
inside the functions that need them.

Scripts import it as their siblings do::

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import ...
"""
from __future__ import annotations

import json
import os
import shlex
import sys
import time

DATA_ROOT_HELP = "data folder (default: $REFBINN_DATA, then the user cache)"
# the summary numbers a row of Table 2 (and of the sweeps, less the mean prediction) reports
ACCURACIES = ("test_acc_mode_at_best_val", "test_acc_mode_last", "test_acc_mean_last", "val_acc_mode_best")


# -- command line ---------------------------------------------------------------------------------
def add_run_args(p, out, quick_out, quick_help, *, unit="run", quick_flags="--quick", data_root=True,
                 resume=True, stop_after=True, quiet=True):
    """Add the flags every runner ends with: --out, --data-root, --resume, --stop-after, --quick, --quiet.

    Parameters
    ----------
    p : argparse.ArgumentParser
    out, quick_out : str
        The results folder by default and with ``quick_flags`` (named in --out's help).
    quick_help : str
        What --quick does.
    unit : str
        What --resume continues and --stop-after stops ("run", "row").
    resume : bool or str
        False: no --resume; True: continue each ``unit`` from its checkpoint; a string: its help.
    data_root, stop_after, quiet : bool
        Whether the runner has --data-root, --stop-after, --quiet.
    """
    p.add_argument("--out", help=f"results folder (default {out}; with {quick_flags} {quick_out})")
    if data_root:
        p.add_argument("--data-root", help=DATA_ROOT_HELP)
    if resume:
        p.add_argument("--resume", action="store_true",
                       help=resume if isinstance(resume, str) else f"continue each {unit} from its checkpoint")
    if stop_after:
        p.add_argument("--stop-after", type=int, help=f"stop each {unit} after this many epochs (then --resume)")
    p.add_argument("--quick", action="store_true", help=quick_help)
    if quiet:
        p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")


def flag_ranges():
    """flag (argparse dest) -> its allowed values, the ranges of `refbinn train` / `refbinn continual`
    (refbinn/options.py) for the same settings: ("int", lo, hi) an integer in [lo, hi] (hi None: no
    bound), ("positive",) a finite real > 0, ("real",) a finite real; nargs='+' flags: each value.
    A function, so that importing this module imports no refbinn (see ``set_threads``)."""
    from refbinn.options import MIN_TRAIN, SEED_MAX
    return {
        "epochs": ("int", 1, None), "tasks": ("int", 1, None), "hidden": ("int", 1, None),
        "max_train": ("int", MIN_TRAIN, None), "max_test": ("int", 1, None),
        "test_samples": ("int", 1, None),      # continual: the accuracies are the mean prediction's
        "eval_samples": ("int", 0, None),      # 0: no mean prediction
        "seed": ("int", 0, SEED_MAX), "seeds": ("int", 0, SEED_MAX), "stop_after": ("int", 1, None),
        "width": ("positive",), "lr": ("positive",), "lrs": ("positive",), "tau": ("positive",),
        "taus": ("positive",), "lam_init": ("real",),
    }


def parse(parse_args, argv, script, **ranges):
    """(parsed flags, the command line as typed) for argv (None: sys.argv[1:]); script is the file name.

    Every flag named in ``flag_ranges()`` (and ``ranges``, the script's own, e.g. ``samples=("int", 1, None)``)
    that is set is checked before any work: a bad value exits 2 with one line on stderr naming the flag
    and its allowed range ("run_mnist.py: error: --epochs must be an integer in [1, inf), got 0"); so
    are the folders and the run-name suffix (``check_paths``).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    a = parse_args(argv)
    try:
        check_flags(a, {**flag_ranges(), **ranges})
        check_paths(a)
    except ValueError as e:
        print(f"{script}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    return a, f"python scripts/{script} " + shlex.join(argv)


def run_main(script, main):
    """``main()``'s exit code, behind ``refbinn``'s error boundary (``refbinn.errors.run_command``):
    bad input found during the work (a missing data set, a damaged checkpoint, a full disk) is one
    line on stderr and exit 2, anything else one line asking for a bug report and exit 1;
    REFBINN_DEBUG=1 prints the traceback first. A bad option exits 2 from ``parse`` already.

    Parameters
    ----------
    script : str
        The script's file name, first in the messages ("run_mnist.py: error: ...").
    main : callable
        ``main() -> int``, None, or the script's results (a dict, for callers in Python): exit 0.

    Returns
    -------
    int
    """
    from refbinn.errors import debug_requested, run_command

    def code(_):                  # sys.exit(results) printed the whole dict on stderr and exited 1
        r = main()
        return r if isinstance(r, int) else 0
    return run_command(script, code, None, debug_requested(None), program="", debug_hint="REFBINN_DEBUG=1")


def check_flags(a, ranges):
    """ValueError naming the first flag of ``a`` outside its range in ``ranges`` (see ``flag_ranges``); unset flags pass."""
    from refbinn.checks import check_int, check_range
    for dest, (kind, *bounds) in ranges.items():
        v = getattr(a, dest, None)
        flag = "--" + dest.replace("_", "-")
        for x in (v if isinstance(v, (list, tuple)) else [] if v is None else [v]):
            if kind == "int":
                check_int(flag, x, *bounds)
            else:
                check_range(flag, x, 0 if kind == "positive" else None, lo_open=kind == "positive")


def check_paths(a):
    """ValueError for --out or --data-root empty (an unset $VAR: the current folder) or a file, and for a
    --tag that names a folder or holds a control character (it ends the run's file names); unset flags
    pass. Run before training, whose results were otherwise written to the current folder or lost in a
    traceback at the end."""
    from refbinn.options import FOLDERS, check_folder, check_name_part
    for dest, what in FOLDERS.items():
        v, flag = getattr(a, dest, None), "--" + dest.replace("_", "-")
        if v == "":
            raise ValueError(f"{flag} is empty; give a path")
        check_folder(flag, v, what)
    if getattr(a, "tag", None):
        check_name_part("--tag", a.tag)


def resolve(a, q, **defaults):
    """Each named setting, in the order given: its flag if set (not None; 0 is a value), else ``q[name]``, else the default.

    Parameters
    ----------
    a : argparse.Namespace
        The parsed flags; each name in ``defaults`` is an attribute.
    q : dict
        The script's QUICK settings under --quick, else {}.
    """
    return tuple(getattr(a, k) if getattr(a, k) is not None else q.get(k, d) for k, d in defaults.items())


# -- rows and tables ------------------------------------------------------------------------------
def pct(v):
    """Accuracy fraction -> percent with 2 decimals, as a table cell ('' for None)."""
    return "" if v is None else f"{100.0 * v:.2f}"


def paper_str(p):
    """A paper number (mean, std) as a table cell ('-' where the paper has none)."""
    return "-" if p is None else f"{p[0]:.2f} +- {p[1]:.2f}"


def merge_rows(path, rows, key="run"):
    """Rows of an earlier invocation, with this invocation's rows replacing those of the same key."""
    old = []
    if os.path.exists(path):
        with open(path) as fh:
            old = json.load(fh).get("rows", [])
    new = {r[key] for r in rows}
    return [r for r in old if r.get(key) not in new] + rows


def paper_lookup(paper, x):
    """paper[k] for the key k within 1e-6 relative of x (values arrive as parsed floats); None if there is none."""
    for k, v in paper.items():
        if abs(k - x) <= 1e-6 * k:
            return v
    return None


def accuracies(summary, mean=True):
    """The ACCURACIES of a run's summary (``mean=False``: without the mean prediction's), in that order."""
    return {k: summary.get(k) for k in ACCURACIES if mean or k != "test_acc_mean_last"}


def with_overrides(settings, optimizer, lr=None, **bayesbinn):
    """A copy of a run's settings with lr replaced (where the run has one) and, for BayesBiNN, the others given.

    None leaves a setting as it is; e.g. ``with_overrides(s, "bayesbinn", lr=a.lr, tau=a.tau)``.
    """
    settings = dict(settings)
    if lr is not None and "lr" in settings:
        settings["lr"] = lr
    if optimizer == "bayesbinn":
        settings.update({k: v for k, v in bayesbinn.items() if v is not None})
    return settings


def train_table2_run(dataset, run, optimizer, over, a, *, out, root, command):
    """One Table 2 run exactly as ``refbinn train --name DATASET_RUN[_TAG]`` does it -> (name, summary).

    Writes ``OUT/NAME.json`` and the checkpoint in ``OUT/runs/NAME/``; ``a`` supplies --tag, --resume,
    --stop-after and --quiet.
    """
    from refbinn.experiments import run as train_one
    name = f"{dataset}_{run}" + (f"_{a.tag}" if a.tag else "")
    res = train_one(dataset, optimizer, name, over, out=out, root=root, resume=a.resume,
                    stop_after=a.stop_after, quiet=a.quiet, command=command)
    return name, res["summary"]


def print_table2(rows):
    """The Table 2 rows of run_mnist / run_cifar as a text table, next to the paper's numbers."""
    from refbinn.report import table
    print(table([(r["run"], r["epochs"], pct(r["test_acc_mode_at_best_val"]), pct(r["test_acc_mode_last"]),
                  pct(r["test_acc_mean_last"]), paper_str(r["paper_test_acc"]),
                  paper_str(r["paper_test_acc_mean"]), round(r["train_seconds"] or 0.0)) for r in rows],
                ("run", "epochs", "test@best-val", "test last", "test last (mean)", "paper",
                 "paper (mean)", "seconds")))


# -- the MNIST BayesBiNN sweeps (run_lr_sweep, run_tau_sweep) ---------------------------------------
def run_sweep(dataset, experiment, points, fixed, settings, a, *, out, command):
    """Train one BayesBiNN run on ``dataset`` per point; rows to ``OUT/EXPERIMENT.json`` after each -> (rows, path).

    Each run's checkpoint goes to ``OUT/runs/EXPERIMENT/RUN/`` (--resume continues it); the file keeps
    the rows of earlier invocations (``merge_rows``).

    Parameters
    ----------
    points : list of (str, dict, float or None)
        Per run: its name; the row's head, ``lr``, ``tau`` and ``numerics`` in the order the row
        lists them; the paper's test accuracy % (None: not in the paper).
    fixed : dict
        The overrides every run shares (lam_init, samples, beta, epochs, ...), after lr, tau, numerics.
    settings : dict
        The file's ``settings``.
    a : argparse.Namespace
        Supplies --data-root, --resume, --stop-after, --quiet.
    """
    from refbinn.experiments import run as train_one
    from refbinn.io import write_json
    path = os.path.join(out, f"{experiment}.json")
    rows = []
    for run, head, paper in points:
        over = dict(lr=head["lr"], tau=head["tau"], numerics=head["numerics"], **fixed)
        res = train_one(dataset, "bayesbinn", run, over, out=out, root=a.data_root, resume=a.resume,
                        stop_after=a.stop_after, quiet=a.quiet, command=command, write=False,
                        run_dir=os.path.join(out, "runs", experiment, run))
        s = res["summary"]
        rows.append({"run": run, **head, "epochs": s.get("epochs_run"), "epochs_planned": fixed["epochs"],
                     **accuracies(s, mean=False), "seconds": s.get("train_seconds"), "paper_test_acc": paper})
        # written after every row, so an interrupted sweep keeps what it has done
        write_json(path, {"experiment": experiment, "command": command, "settings": settings,
                          "rows": merge_rows(path, rows)})
    return rows, path


def print_sweep_table(rows, key):
    """A sweep's rows as a text table, first column the swept setting ``key`` ('lr' or 'tau')."""
    from refbinn.report import table
    print(table([(f"{r[key]:.0e}", r["numerics"], r["epochs"], pct(r["test_acc_mode_at_best_val"]),
                  pct(r["test_acc_mode_last"]), "-" if r["paper_test_acc"] is None else f"{r['paper_test_acc']:.2f}",
                  round(r["seconds"] or 0.0)) for r in rows],
                (key, "numerics", "epochs", "test@best-val", "test last", "paper", "seconds")))


# -- the synthetic figures (run_two_moons, run_snelson) -----------------------------------------------
# the name each optimizer has in the figures and tables
LABELS = {"bayesbinn": "BayesBiNN", "ste": "STE-Adam", "bop": "Bop", "pmf": "PMF", "adam": "Adam",
          "vispa": "VISPA"}


def add_figure_args(p, runs, preset, epochs_help, seed, hidden):
    """Add the flags a figure script starts with: --optimizers, --epochs, --seed, --hidden.

    Parameters
    ----------
    runs : dict
        The script's RUNS: the default optimizers; any other of LABELS runs with refbinn's ``preset``.
    epochs_help : str
        --epochs' help, naming the default.
    seed, hidden : int
        The defaults of --seed and (named in the help) --hidden.
    """
    p.add_argument("--optimizers", nargs="+", default=list(runs), choices=list(LABELS),
                   help=f"optimizers (default: %(default)s; others use refbinn's {preset} preset)")
    p.add_argument("--epochs", type=int, help=epochs_help)
    p.add_argument("--seed", type=int, default=seed)
    p.add_argument("--hidden", type=int, help=f"hidden width (default {hidden})")


def thin(history, every):
    """Every ``every``-th epoch record and the last."""
    return [h for i, h in enumerate(history) if (i + 1) % every == 0 or i + 1 == len(history)]


def build_and_fit(dataset, optimizer, over, **build_kw):
    """``refbinn.experiments.build`` + ``refbinn.train.fit`` with no per-epoch lines -> (setup, result, seconds).

    Prints the optimizer's settings first; ``seconds`` is the wall time of fit alone.
    """
    from refbinn.experiments import build
    from refbinn.train import fit
    s = build(dataset, optimizer, overrides=over, quiet=True, **build_kw)
    print(f"{optimizer}: {s.settings['optimizer_settings']}", flush=True)
    t0 = time.perf_counter()
    res = fit(s.model, s.opt, s.data, s.loss_fn, s.cfg, schedule=s.schedule, log=lambda m: None)
    return s, res, time.perf_counter() - t0


def run_record(name, command, s, res, secs, every):
    """The record ``refbinn train`` writes for a run, its history thinned to every ``every``-th epoch."""
    return {"name": name, "command": command, "settings": {k: v for k, v in s.settings.items() if k != "extra"},
            "summary": res["summary"], "wall_seconds_this_invocation": secs,
            "history": thin(res["history"]["epochs"], every)}


# -- benchmarks ---------------------------------------------------------------------------------------
THREAD_VARS = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (else platform's processor or machine), for the benchmarks' output."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def set_threads(n):
    """Give Numba, OpenMP and every BLAS ``n`` threads, and OpenBLAS and OpenMP the short idle spins
    that ``import refbinn`` sets (refbinn/_threads.py; here before torch loads too, so that both sides
    of a comparison run with them); only takes effect before numpy / numba / torch are imported."""
    for var in THREAD_VARS:
        os.environ[var] = str(n)
    _refbinn_threads().short_idle_spin()


def _refbinn_threads():
    """refbinn/_threads.py, run from its file: ``import refbinn`` would load numpy and Numba first."""
    import importlib.util
    spec = importlib.util.find_spec("refbinn")          # a top-level name: finds, does not import
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("refbinn is not importable: run `pip install -e .` in the repository root")
    path = os.path.join(list(spec.submodule_search_locations)[0], "_threads.py")
    file_spec = importlib.util.spec_from_file_location("_refbinn_threads", path)
    module = importlib.util.module_from_spec(file_spec)
    file_spec.loader.exec_module(module)
    return module


def parse_bench_args(argv, description, repeats, repeats_quick):
    """The flags of an update benchmark (--quick, --json, --repeats) -> (args, repeats, log).

    ``log`` prints to stderr under --json (stdout then holds only the JSON object), else to stdout.
    """
    import argparse
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help=f"{repeats_quick} repeats, no NumPy reference timing")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:        # 0 ran the default, -1 timed nothing: NaN
        ap.error(f"--repeats must be an integer in [1, inf), got {args.repeats}")
    log = (lambda *m: print(*m, file=sys.stderr)) if args.json else print
    return args, args.repeats or (repeats_quick if args.quick else repeats), log


def median_ms(fn, repeats, warmup=1):
    """Median wall time of fn() in milliseconds over ``repeats`` calls, after ``warmup`` untimed calls.

    The warm-up also compiles the Numba kernels (or loads them from the cache).
    """
    import numpy as np
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def time_mlp_grads(model, params, bn_state, rng, *, batch, seed, repeats, keep, dtype):
    """Time one training forward+backward of an MNIST MLP on random inputs -> (median ms, grads of ``keep``).

    x (batch, 784) standard normal in ``dtype`` and labels are drawn from ``rng``; dropout draws from
    ``default_rng(seed + 1)``; the loss is softmax cross-entropy.
    """
    import numpy as np
    from refbinn.nn import softmax_cross_entropy
    x = rng.standard_normal((batch, 784)).astype(dtype)
    y = rng.integers(0, 10, batch)
    rng_fwd = np.random.default_rng(seed + 1)

    def fwd_bwd():
        out, cache, _ = model.forward(params, x, bn_state, train=True, rng=rng_fwd)
        _, dout = softmax_cross_entropy(out, y)
        return model.backward(params, cache, dout, input_grad=False)[1]

    ms = median_ms(fwd_bwd, repeats)
    return ms, {k: g for k, g in fwd_bwd().items() if k in keep}


def paired_ms(fa, fb, n):
    """fa() and fb() called alternately, a, b, a, b, ..., n times each after a warm-up.

    Returns (median ms of fa, median ms of fb, median over the n pairs of t_a / t_b).
    The last is the figure: each ratio compares two calls made a few ms apart, so a
    neighbour's load or a frequency change that lasts longer than a pair cancels out,
    where the ratio of the two medians can pick its numerator and denominator from
    different phases (measured here: 1.10 and 1.46 in two runs a minute apart with 9 pairs).
    """
    import numpy as np
    fa(), fb()
    ta, tb = [], []
    for _ in range(n):
        for f, t in ((fa, ta), (fb, tb)):
            t0 = time.perf_counter()
            f()
            t.append(time.perf_counter() - t0)
    ta, tb = np.array(ta), np.array(tb)
    return 1e3 * float(np.median(ta)), 1e3 * float(np.median(tb)), float(np.median(ta / tb))
