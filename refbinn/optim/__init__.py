"""Optimizers for binary (and real) parameters; see base.py for the protocol."""
from .adam import Adam
from .base import Optimizer
from .files import load_state, save_state
from .bayesbinn import BayesBiNN, BayesBiNNState
from .bop import Bop
from .partition import Partition
from .pmf import PMF
from .ste import STEAdam
from .registry import OPTIMIZERS
from .vispa import VISPA
