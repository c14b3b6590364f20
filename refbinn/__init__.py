"""refbinn: a reference implementation of BayesBiNN and its baselines in NumPy."""
from .nn import sign

__version__ = "0.1.0"
