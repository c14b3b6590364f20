"""The optimizers by name: the one table the CLI, the experiments, traces and files use.

What it holds::

    OPTIMIZERS   name -> optimizer class (what ``--optimizer`` and presets name)
    FILE_NAMES   name -> class for every class a checkpoint may hold (optimizers and
                 their state NamedTuples); a file names classes only by these keys, and
                 loading looks them up here (nothing named in a file is imported)
    make(name, **hyper) -> the optimizer
"""
from __future__ import annotations

import inspect

from ..checks import check_choice
from .adam import Adam, AdamState
from .bayesbinn import BayesBiNN, BayesBiNNState
from .bop import Bop, BopState
from .partition import Partition, PartitionState
from .pmf import PMF, PMFState
from .ste import STEAdam, STEState
from .vispa import VISPA, VISPAState

OPTIMIZERS = {"bayesbinn": BayesBiNN, "ste": STEAdam, "bop": Bop, "pmf": PMF, "adam": Adam,
              "vispa": VISPA}

FILE_NAMES = {
    **OPTIMIZERS, "partition": Partition,
    "bayesbinn_state": BayesBiNNState, "ste_state": STEState, "bop_state": BopState,
    "pmf_state": PMFState, "adam_state": AdamState, "vispa_state": VISPAState,
    "partition_state": PartitionState,
}
# How files written before issue 11 spelled these classes ('module:QualName'): a fixed
# table, so that old checkpoints load without importing anything they name.
FILE_NAMES.update({f"refbinn.optim.{mod}:{cls.__name__}": cls for mod, cls in (
    ("bayesbinn", BayesBiNN), ("bayesbinn", BayesBiNNState), ("ste", STEAdam), ("ste", STEState),
    ("bop", Bop), ("bop", BopState), ("pmf", PMF), ("pmf", PMFState), ("adam", Adam),
    ("adam", AdamState), ("vispa", VISPA), ("vispa", VISPAState), ("partition", Partition),
    ("partition", PartitionState))})


def make(name, **hyper):
    """``OPTIMIZERS[name](**hyper)``; ValueError naming the allowed names.

    Parameters
    ----------
    name : str
        A key of ``OPTIMIZERS``: 'bayesbinn', 'ste', 'bop', 'pmf', 'adam', 'vispa'.
    **hyper
        That optimizer's constructor arguments (each checked there: a bad value is a
        ValueError naming the argument and its range).

    Returns
    -------
    Optimizer
        A new optimizer of that class.

    Raises
    ------
    ValueError
        For another name, an argument the constructor does not take, or a value it refuses.
    """
    cls = OPTIMIZERS[check_choice("optimizer", name, tuple(OPTIMIZERS))]
    try:                                     # an unknown argument: ValueError, not TypeError
        inspect.signature(cls).bind(**hyper)
    except TypeError as e:
        raise ValueError(f"optimizer {name!r}: {e}; it takes "
                         f"{', '.join(inspect.signature(cls).parameters)}") from None
    return cls(**hyper)
