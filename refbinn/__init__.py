"""refbinn: a reference implementation of BayesBiNN and its baselines in NumPy."""
from ._threads import short_idle_spin

short_idle_spin()                       # before OpenBLAS and OpenMP load (refbinn/_threads.py says why)

from .nn import sign  # noqa: E402

__version__ = "0.1.0"
