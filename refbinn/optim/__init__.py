"""Optimizers for binary (and real) parameters; see base.py for the protocol."""
from .base import Optimizer, load_state, save_state
