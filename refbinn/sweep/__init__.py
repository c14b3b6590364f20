"""Sweeps: grids of training runs from a TOML file, run on dask.distributed, aggregated over seeds."""
from .report import aggregate, write_report
from .spec import Run, Sweep, load_spec, parse_spec
