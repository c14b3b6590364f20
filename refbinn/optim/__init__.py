"""Optimizers for binary (and real) parameters; see base.py for the protocol."""
from .adam import Adam
from .base import Optimizer, load_state, save_state
from .bayesbinn import BayesBiNN, BayesBiNNState
from .bop import Bop
from .partition import Partition, partition
from .pmf import PMF
from .ste import STEAdam
from .vispa import VISPA
