"""Every option of every ``refbinn`` subcommand, checked before any work starts::

    Parser              argparse.ArgumentParser whose errors are one line (and exit 2)
    check_options(a)    ValueError naming the first bad option and its allowed range:
                        "--epochs must be an integer in [1, inf), got 0"

Counts and sizes are integers >= 1 (sample counts for evaluation >= 0, except ``continual
--test-samples`` >= 1: its accuracies are the mean prediction's, and ``evaluate --samples``
with --ood, several checkpoints or several counts >= 1: each is a row beside the mode's),
seeds integers in [0, 2**63 - 1], real options finite: learning rates and temperatures in (0, inf), momentum
in [0, 1), tolerances in [0, inf), ECE bins at most ``MAX_BINS``. A path is never empty
(an unset shell variable, not the current folder); a run's ``--name`` is a plain name without
control characters (``check_name_part``). A folder option (``--out`` of most commands,
``--data-root``) must not name a file; a file output must not name a folder, one of the
command's inputs, or a training checkpoint. Which training settings apply to which
optimizer, and what ``--resume`` may change, is ``refbinn.experiments.guard``.
"""
from __future__ import annotations

import argparse
import os
import unicodedata

from .checks import check_int, check_range
from .io.outputs import check_output_file

SEED_MAX = 2 ** 63 - 1
MIN_TRAIN = 10             # --max-train: enough for a non-empty 10% validation split
MAX_BINS = 10_000          # --bins: every bin is a bar and a JSON entry (1e8 of them exhaust memory)


def _int(lo, hi=None):
    return lambda name, v: check_int(name, v, lo, hi)


def _real(lo=None, hi=None, **open_ends):
    return lambda name, v: check_range(name, v, lo, hi, **open_ends)


_POSITIVE, _SEED = _real(0, lo_open=True), _int(0, SEED_MAX)
RANGES = {
    "train": {"epochs": _int(1), "lr": _POSITIVE, "tau": _POSITIVE, "tau_end": _POSITIVE, "samples": _int(1),
              "lam_init": _real(), "beta": _real(0, 1, hi_open=True), "reweight": _real(0), "seed": _SEED,
              "batch_size": _int(1), "eval_samples": _int(0), "max_train": _int(MIN_TRAIN), "hidden": _int(1),
              "eval_mean_every": _int(0), "recalibrate_bn": _int(0), "diagnostics_every": _int(0),
              "stop_after": _int(1), "checkpoint_every": _int(1)},
    "continual": {"tasks": _int(1), "epochs": _int(1), "lr": _POSITIVE, "tau": _POSITIVE, "reweight": _real(0),
                  "lam_init": _real(), "test_samples": _int(1), "seed": _SEED, "max_train": _int(MIN_TRAIN),
                  "stop_after": _int(1)},
    "evaluate": {"samples": _int(0), "seed": _SEED, "bins": _int(1, MAX_BINS), "max_test": _int(1),
                 "recalibrate_bn": _int(0)},
    "sweep": {"workers": _int(1), "threads_per_worker": _int(1)},
    "predict": {"batch_size": _int(1)},
    "trace": {"steps": _int(1), "seed": _SEED},
    "check-trace": {"rtol": _real(0), "atol": _real(0)},
}
FOLDER_OUT = ("demo", "train", "continual", "evaluate", "predict", "sweep", "report")   # --out: a folder


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line: 'refbinn train: error: ... (see --help)'."""

    def error(self, message):
        """Exit 2 with 'PROG: error: MESSAGE (see PROG --help)' on stderr, one line.

        Parameters
        ----------
        message : str
            argparse's description of the mistake.
        """
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _flag(dest):
    return "--" + dest.replace("_", "-")


# the folder options, and what to give in place of a file
FOLDERS = {"out": "a folder for the results", "data_root": "the data folder"}


def check_folder(flag, path, what):
    """ValueError if the folder option ``flag`` names a file, or a path below a file (which
    could never be made); None, or a path that does not exist yet under a folder, passes.

    Parameters
    ----------
    flag : str
        The option as the message names it ("--out").
    path : str or None
    what : str
        What to give instead, for the message ("a folder for the results").
    """
    if path is None:
        return
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{flag} {path} is a file; give {what}")
    up = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(up):                       # the nearest part of the path that exists
        up = os.path.dirname(up)
    if not os.path.isdir(up):
        raise ValueError(f"{flag} {path}: {up} is a file, so the folder cannot be made; give {what}")


def check_options(a):
    """Check every option of subcommand ``a.command`` before any work (ValueError naming it).

    Parameters
    ----------
    a : argparse.Namespace
        The parsed command line of one subcommand.
    """
    for dest, rule in RANGES.get(a.command, {}).items():
        v = getattr(a, dest, None)
        for x in (v if isinstance(v, list) else [] if v is None else [v]):    # nargs='+': each value
            rule(_flag(dest), x)
    for dest in ("out", "data_root"):      # '' (an unset $VAR) would mean the current folder
        if getattr(a, dest, None) == "":
            raise ValueError(f"{'OUT' if a.command == 'export' else _flag(dest)} is empty; give a path")
    for dest, what in FOLDERS.items():
        if dest != "out" or a.command in FOLDER_OUT:
            check_folder(_flag(dest), getattr(a, dest, None), what)
    if a.command == "trace":
        check_output_file(a.out, "--out")
    elif a.command == "export":
        check_output_file(a.out, "OUT", [a.checkpoint])
    name = getattr(a, "name", None)
    if name is not None:
        if not name or name in (".", ".."):
            raise ValueError(f"--name must be a plain name (no folders), got {name!r}")
        check_name_part("--name", name)


def check_name_part(flag, text):
    """``text`` if it can be (part of) a run's file name: no folder separator, no control character
    (a newline split the printed tables and the file names, an escape sequence recoloured the
    terminal); else ValueError naming ``flag``.

    Parameters
    ----------
    flag : str
        The option, quoted in the message (``--name``, a script's ``--tag``).
    text : str

    Returns
    -------
    str
    """
    if os.sep in text or "/" in text:
        raise ValueError(f"{flag} must be a plain name (no folders), got {text!r}")
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise ValueError(f"{flag} must not hold control characters (newline, tab, escape), got {text!r}")
    return text
