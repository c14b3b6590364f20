"""Sweep files: a base setting, a grid of values and seeds, read from TOML and checked
before anything runs.

A sweep file (read with the standard library's ``tomllib``)::

    name = "mnist512"                 # optional: the results folder's name (default: the file's stem)
    description = "..."               # optional: copied into the report
    seeds = [0, 1, 2, 3, 4]

    [base]                            # one value per setting, as `refbinn train` takes them
    dataset = "mnist"
    optimizer = "bayesbinn"
    epochs = 5
    [base.model]                      # keyword arguments of the data set's model builder
    hidden = [512, 512, 512]

    [grid]                            # a list of values per setting; runs = product x seeds
    optimizer = ["bayesbinn", "ste", "bop", "pmf", "adam", "vispa"]

The runs are the Cartesian product of the grid's lists (in the file's order, the last
key varying fastest) times the seeds (fastest of all). Each run's name is built from the
settings that vary, so it is stable and readable: data set, optimizer, then each other grid
setting with the grid's keys in the file's order (a string as itself, a number or list after
its key), then ``s`` and the seed. A grid ``tau = [1e-6, 1e-8]`` followed by ``numerics =
["official", "exact"]`` gives ``mnist_bayesbinn_tau1e-06_official_s0``; listed the other way
round, ``mnist_bayesbinn_official_tau1e-06_s0``. Every key and value is checked here: an unknown
key, a bad value or a grid that makes no runs is a ValueError naming the key, the value
and what is allowed. Which settings apply to which optimizer is `refbinn train`'s rule
(``refbinn.experiments.guard.USED_BY``), and every run is checked as `refbinn train` checks
its command line, so each run is one that `refbinn train` accepts.
"""
from __future__ import annotations

import inspect
import itertools
import json
import math
import os
import re
from dataclasses import asdict, dataclass
from types import SimpleNamespace

from ..checks import check_choice, check_int, check_range
from ..experiments import DATASETS
from ..experiments.datasets import IMAGE_DATASETS
from ..experiments.guard import FREE_ON_RESUME, HIDDEN_MODELS, USED_BY, check_applicable
from ..experiments.presets import PAPER, PRESETS
from ..models import MODELS
from ..optim.bayesbinn import NUMERICS
from ..optim.registry import OPTIMIZERS
from ..options import MIN_TRAIN, check_options

TOP_KEYS = ("name", "description", "seeds", "base", "grid")
ALL_OPTIMIZERS = tuple(OPTIMIZERS)
# model keyword arguments the data set decides (its input shape and class count): not settings
DATA_FIXED = ("in_features", "out_features", "classes", "num_classes", "in_channels", "image_size")


def _positive_float(key, v):
    return float(check_range(key, _number(key, v), 0, lo_open=True, hi=math.inf, hi_open=True))


def _bool(key, v):
    if not isinstance(v, bool):
        raise ValueError(f"{key} must be true or false, got {v!r}")
    return v


def _number(key, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{key} must be a number, got {v!r}")
    return v


# setting -> check returning the normalised value
CHECKS = {
    "dataset": lambda k, v: check_choice(k, v, tuple(DATASETS)),
    "optimizer": lambda k, v: check_choice(k, v, ALL_OPTIMIZERS),
    "preset": lambda k, v: check_choice(k, v, tuple(PRESETS)),
    "epochs": lambda k, v: check_int(k, v, 1),
    "batch_size": lambda k, v: check_int(k, v, 1),
    "max_train": lambda k, v: check_int(k, v, MIN_TRAIN),      # as `refbinn train --max-train`
    "eval_samples": lambda k, v: check_int(k, v, 0),
    "checkpoint_every": lambda k, v: check_int(k, v, 1),
    "eval_mean_every": lambda k, v: check_int(k, v, 0),
    "recalibrate_bn": lambda k, v: check_int(k, v, 0),
    "diagnostics": _bool,
    "diagnostics_every": lambda k, v: check_int(k, v, 0),
    "lr": _positive_float,
    "tau": _positive_float,
    "samples": lambda k, v: check_int(k, v, 1),
    "numerics": lambda k, v: check_choice(k, v, tuple(NUMERICS)),
    "tau_end": _positive_float,
    "reweight": lambda k, v: float(check_range(k, _number(k, v), 0, hi=math.inf, hi_open=True)),
    "lam_init": _positive_float,
    "beta": lambda k, v: float(check_range(k, _number(k, v), 0, 1, hi_open=True)),
    "model": None,          # a table of model-builder keyword arguments
}
# setting -> (its check, the optimizers it applies to): `refbinn train`'s rule
# (``refbinn.experiments.guard.USED_BY``; a setting not listed there applies to every optimizer)
SETTINGS = {k: (check, USED_BY.get(k, ALL_OPTIMIZERS)) for k, check in CHECKS.items()}
# the `refbinn train` flag of each setting (the sweep's runs are `refbinn train` runs)
TRAIN_FLAGS = {k: "--" + k.replace("_", "-") for k in (*SETTINGS, "seed") if k not in ("model", "diagnostics")}


@dataclass(frozen=True)
class Run:
    """One run of a sweep: its name, the settings that vary (``point``), and what ``build`` gets.

    ``overrides`` is the dict ``refbinn.experiments.run`` passes to ``build`` (epochs, seed,
    lr, model_kwargs, ...); ``setting`` is the name without the seed (the report's row).

    Attributes
    ----------
    name : str
        The run's name, ``SETTING_sSEED`` (its files: ``DIR/runs/NAME.json``, ``DIR/runs/NAME/``).
    setting : str
        The name without the seed: data set, optimizer, then each other grid value.
    dataset, optimizer, preset : str
        What ``build`` gets (``preset`` is 'paper' or 'authors').
    seed : int
        The training seed, >= 0 (also in ``overrides``).
    point : dict
        The grid's values of this run (``model.KEY`` for a model keyword argument).
    overrides : dict
        The checked settings that apply to the run's optimizer, with ``seed`` and
        ``model_kwargs``.
    """
    name: str
    setting: str
    dataset: str
    optimizer: str
    preset: str
    seed: int
    point: dict
    overrides: dict

    def identity(self):
        """What makes two runs the same run: ``run_identity`` of this run.

        Returns
        -------
        dict
            ``dataset``, ``optimizer``, ``preset``, ``overrides`` (less ``FREE_ON_RESUME``);
            compare two with ``same_identity``.
        """
        return run_identity(self.to_dict())

    def to_dict(self):
        """The run as a plain dict of its fields (what a dask task receives).

        Returns
        -------
        dict
            name, setting, dataset, optimizer, preset, seed, point, overrides (copied deeply).
        """
        return asdict(self)

    def train_args(self):
        """The `refbinn train` arguments of this run (None if it sets a model keyword argument
        other than a list ``hidden``, which `refbinn train` has no flag for).

        Returns
        -------
        list of str or None
            ``["train", "--dataset", ..., "--name", NAME]``, one flag per override, ready
            for ``refbinn.cli.main``; None when no command line can express the run.
        """
        args = ["train", "--dataset", self.dataset, "--optimizer", self.optimizer, "--preset", self.preset]
        for k, v in self.overrides.items():
            if k == "model_kwargs":
                if set(v) != {"hidden"} or not isinstance(v["hidden"], list):
                    return None
                args += ["--hidden", *map(str, v["hidden"])]
            elif k == "diagnostics":
                args += [] if v else ["--no-diagnostics"]
            else:
                args += [TRAIN_FLAGS[k], str(v)]
        return args + ["--name", self.name]


@dataclass(frozen=True)
class Sweep:
    """A checked sweep file: its name, description, seeds, base, grid and the expanded runs.

    Attributes
    ----------
    name : str
        The results folder's name (letters, digits, '.', '_', '-').
    description : str
        Free text, copied into the report ('' if none).
    seeds : tuple of int
        The seeds, >= 0, distinct.
    base : dict
        The checked settings shared by every run.
    grid : dict
        Setting -> list of values (``model.KEY`` for a model keyword argument), as given.
    runs : tuple of Run
        The grid's Cartesian product times the seeds, the seeds varying fastest.
    path : str or None
        The sweep file's absolute path (None when not read from a file).
    """
    name: str
    description: str
    seeds: tuple
    base: dict
    grid: dict
    runs: tuple
    path: str | None = None


def run_identity(run):
    """What makes two runs the same run: data set, optimizer, preset and the overrides (seed
    included) that change what the run computes or records.

    The settings ``refbinn train --resume`` may change (``FREE_ON_RESUME``: checkpoint_every,
    how often the files are written) are left out, so that changing one in the sweep file
    keeps the finished runs and resumes the others.

    Parameters
    ----------
    run : dict
        A run from ``Run.to_dict`` (dataset, optimizer, preset, overrides are read).

    Returns
    -------
    dict
        ``dataset``, ``optimizer``, ``preset``, ``overrides``; compare two with ``same_identity``.
    """
    return {"dataset": run["dataset"], "optimizer": run["optimizer"], "preset": run["preset"],
            "overrides": _results_overrides(run["overrides"])}


def _results_overrides(overrides):
    """The overrides less the ``FREE_ON_RESUME`` settings (which change no result)."""
    return {k: v for k, v in overrides.items() if k not in FREE_ON_RESUME}


def same_identity(a, b):
    """True if two run identities (dicts from ``run_identity``, or read back from JSON) are equal.

    Compared as canonical JSON (sorted keys), so a tuple and the list it becomes in a file
    compare equal; ``FREE_ON_RESUME`` settings in the overrides are ignored (an identity
    written before they were left out holds them).

    Parameters
    ----------
    a, b : dict or None
        Two identities.

    Returns
    -------
    bool
    """
    def canonical(i):
        if isinstance(i, dict) and isinstance(i.get("overrides"), dict):
            i = {**i, "overrides": _results_overrides(i["overrides"])}
        return json.dumps(i, sort_keys=True)
    return canonical(a) == canonical(b)


# -- checking -----------------------------------------------------------------------------------
def _check_keys(where, table, allowed):
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table, got {table!r}")
    for k in table:
        if k not in allowed:
            if k == "seed":
                raise ValueError(f"{where}.seed: give the seeds as the top-level list seeds = [...]")
            raise ValueError(f"{where}: unknown key {k!r}; allowed: {', '.join(allowed)}")


def _check_model(where, kwargs, datasets):
    """Model keyword arguments: each a parameter of the builder of every data set in the sweep, not
    one the data set decides (``DATA_FIXED``); ``hidden`` of an MLP with a list of widths
    (``refbinn train --hidden``) a non-empty list of ints."""
    _check_keys(where, kwargs, tuple(kwargs) if isinstance(kwargs, dict) else ())    # only: a table
    for k in kwargs:
        if k in DATA_FIXED:
            raise ValueError(f"{where}: {k} is set by the data set ({', '.join(datasets)}), "
                             f"not a setting; leave it out")
    for ds in datasets:
        builder_name, fixed = PAPER[ds]["model"]
        params = tuple(p for p in inspect.signature(MODELS[builder_name]).parameters
                       if p not in fixed and p not in DATA_FIXED)
        if builder_name in HIDDEN_MODELS and "hidden" in kwargs and (
                not isinstance(kwargs["hidden"], list) or not kwargs["hidden"]
                or not all(type(w) is int for w in kwargs["hidden"])):     # --hidden takes ints, not 8.0
            raise ValueError(f"{where}: hidden of the {ds} model {builder_name} must be a non-empty list "
                             f"of integer widths (as `refbinn train --hidden`), got {kwargs['hidden']!r}")
        for k in kwargs:
            if k not in params:
                raise ValueError(f"{where}: unknown key {k!r} for the {ds} model {builder_name}; "
                                 f"allowed: {', '.join(params)}")
        try:
            MODELS[builder_name](**{**fixed, **kwargs})
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from None
    return dict(kwargs)


def _check_value(where, key, value, datasets):
    if key == "model":
        return _check_model(where, value, datasets)
    return SETTINGS[key][0](where, value)


def _grid_lists(grid):
    """The grid's settings as (key, values) pairs; ``model`` becomes one pair per builder argument."""
    for k, v in grid.items():
        if k == "model":
            _check_keys("grid.model", v, tuple(v) if isinstance(v, dict) else ())
            for mk, mv in v.items():
                yield f"model.{mk}", mv
        else:
            yield k, v


def parse_spec(doc, *, name=None, path=None):
    """Check a sweep file's table ``doc`` (as ``tomllib`` returns it) and expand its runs -> ``Sweep``.

    Parameters
    ----------
    doc : dict
        Top-level keys ``name``, ``description``, ``seeds``, ``base``, ``grid``.
    name : str, optional
        The sweep's name when ``doc`` has none (``load_spec`` passes the file's stem).
    path : str, optional
        The sweep file's path, kept in ``Sweep.path``.

    Returns
    -------
    Sweep
        The checked sweep with its runs expanded.

    Raises
    ------
    ValueError
        For an unknown key, a bad value, a setting in both base and grid, a setting that does
        not apply to one of the sweep's optimizers, or a sweep with no runs.
    """
    _check_keys("sweep file", doc, TOP_KEYS)
    name = doc.get("name", name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ValueError(f"name must be a folder name of letters, digits, '.', '_', '-', got {name!r}")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise ValueError(f"description must be a string, got {description!r}")
    seeds = doc.get("seeds")
    if not isinstance(seeds, list) or not seeds:
        raise ValueError(f"seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    seeds = tuple(check_int(f"seeds[{i}]", s, 0) for i, s in enumerate(seeds))
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must not repeat, got {list(seeds)}")
    base = doc.get("base", {})
    _check_keys("base", base, tuple(SETTINGS))
    grid = doc.get("grid", {})
    _check_keys("grid", grid, tuple(SETTINGS))
    lists = dict(_grid_lists(grid))
    if "grid" in doc and not lists:         # (an empty [grid.model] lists nothing either)
        raise ValueError("grid is empty: give at least one setting with a list of values "
                         "(or leave [grid] out for one setting times the seeds)")
    for k, vs in lists.items():
        if not isinstance(vs, list) or not vs:
            raise ValueError(f"grid.{k} must be a non-empty list of values, got {vs!r}")
    for k in grid:
        if k in base and k != "model":
            raise ValueError(f"{k} is set in both base and grid; set it in one of them")
    for k in lists:
        if k.startswith("model.") and k[6:] in base.get("model", {}):
            raise ValueError(f"{k} is set in both base.model and grid.model; set it in one of them")
    for k in ("dataset", "optimizer"):
        if k not in base and k not in grid:
            raise ValueError(f"{k} must be set, in base or as a grid list")

    # the data sets and optimizers first: the other checks depend on them
    datasets, optimizers = (
        tuple(_check_value(f"grid.{k}[{i}]", k, v, ()) for i, v in enumerate(lists[k])) if k in lists
        else (_check_value(f"base.{k}", k, base[k], ()),) for k in ("dataset", "optimizer"))
    base = {k: _check_value(f"base.{k}", k, v, datasets) for k, v in base.items()}
    checked = {}
    for k, vs in lists.items():
        if k.startswith("model."):
            checked[k] = [_check_model(f"grid.{k}[{i}]", {k[6:]: v}, datasets)[k[6:]] for i, v in enumerate(vs)]
        else:
            checked[k] = [_check_value(f"grid.{k}[{i}]", k, v, datasets) for i, v in enumerate(vs)]
        # compared with ==, so that 64 and 64.0 (or [8] and [8.0]) of a model argument are one value
        if any(v == w for i, v in enumerate(checked[k]) for w in checked[k][:i]):
            raise ValueError(f"grid.{k} lists a value twice: {vs!r}")

    # a setting applies to some optimizers only: in the grid it must apply to all of them (else the
    # product would repeat runs that differ in nothing), in the base to at least one
    for k in checked:
        applies = SETTINGS["model" if k.startswith("model.") else k][1]
        if any(o not in applies for o in optimizers):
            raise ValueError(f"grid.{k} applies only to the optimizers {', '.join(applies)}, but the sweep "
                             f"also runs {', '.join(o for o in optimizers if o not in applies)}; "
                             "make a separate sweep for them")
    for k in base:
        if not any(o in SETTINGS[k][1] for o in optimizers):
            raise ValueError(f"base.{k} applies only to the optimizers {', '.join(SETTINGS[k][1])}, "
                             f"and the sweep runs {', '.join(optimizers)}")
    if ("max_train" in base or "max_train" in checked) and any(d not in IMAGE_DATASETS for d in datasets):
        raise ValueError(f"max_train applies only to the image data sets {', '.join(IMAGE_DATASETS)}, "
                         f"and the sweep uses {', '.join(datasets)}")

    runs = _expand(base, checked, seeds)
    if len({r.name for r in runs}) != len(runs):
        raise ValueError("two runs would get the same name; make the grid's values differ more")
    for r in runs:
        _check_train(r)
    return Sweep(name, description, seeds, base, dict(lists), tuple(runs), path)


def _train_options(run):
    """The parsed ``refbinn train`` command line (a Namespace) that runs ``run``."""
    o = dict(run.overrides)
    model = o.pop("model_kwargs", {})
    diagnostics = o.pop("diagnostics", True)
    hidden = model.get("hidden") if PAPER[run.dataset]["model"][0] in HIDDEN_MODELS else None
    return SimpleNamespace(command="train", dataset=run.dataset, optimizer=run.optimizer, preset=run.preset,
                           name=run.name, hidden=hidden, no_diagnostics=not diagnostics, **o)


def _check_train(run):
    """ValueError unless ``refbinn train`` accepts ``run``'s settings: its option ranges
    (``refbinn.options.check_options``) and which settings apply together
    (``refbinn.experiments.guard.check_applicable``: diagnostics_every with diagnostics = false, ...)."""
    a = _train_options(run)
    try:
        check_options(a)
        check_applicable(a, run.dataset, run.optimizer)
    except ValueError as e:
        raise ValueError(f"run {run.name}: `refbinn train` would refuse its settings: {e}") from None


# -- expanding and naming ----------------------------------------------------------------------
def _token(key, value):
    """One part of a run name: a string as itself, a number or a list after its key."""
    key = key.removeprefix("model.")
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return key + "x".join(str(v) for v in value)
    return f"{key}{value!r}"


def _expand(base, lists, seeds):
    keys = list(lists)
    runs = []
    for values in itertools.product(*(lists[k] for k in keys)):
        point = dict(zip(keys, values))
        s = {**base, **{k: v for k, v in point.items() if not k.startswith("model.")}}
        model = {**base.get("model", {}), **{k[6:]: v for k, v in point.items() if k.startswith("model.")}}
        dataset, optimizer = s.pop("dataset"), s.pop("optimizer")
        preset = s.pop("preset", "paper")
        s.pop("model", None)
        # settings that do not apply to this run's optimizer stay out of its overrides and name
        over = {k: v for k, v in s.items() if optimizer in SETTINGS[k][1]}
        if model:
            over["model_kwargs"] = model
        parts = [dataset, optimizer] + [_token(k, v) for k, v in point.items() if k not in ("dataset", "optimizer")]
        setting = re.sub(r"[^A-Za-z0-9.+_-]", "-", "_".join(parts))
        for seed in seeds:
            runs.append(Run(f"{setting}_s{seed}", setting, dataset, optimizer, preset, seed, point,
                            {**over, "seed": seed}))
    return runs


def load_spec(path):
    """Read and check the sweep file at ``path`` -> ``Sweep`` (its name defaults to the file's stem).

    Parameters
    ----------
    path : str
        A TOML sweep file (see the module docstring).

    Returns
    -------
    Sweep
        What ``parse_spec`` returns, with the file's absolute path.

    Raises
    ------
    ValueError
        Starting with ``path``: invalid TOML, or what ``parse_spec`` found wrong.
    """
    import tomllib              # here, not at the top: Python 3.11+, and only sweeps need it
    with open(path, "rb") as fh:
        try:
            doc = tomllib.load(fh)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:     # bad syntax, or not text
            raise ValueError(f"{path}: not valid TOML: {e}") from None
    try:
        return parse_spec(doc, name=os.path.splitext(os.path.basename(path))[0], path=os.path.abspath(path))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
