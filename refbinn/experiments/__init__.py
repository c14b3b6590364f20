"""Experiments: the paper's presets, data sets by name, building and running one training run,
continual learning, and the demo."""
from .datasets import DATASETS, load_data
from .setup import LOSSES, Setup, build, make_optimizer, run
