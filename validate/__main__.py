"""``python -m validate``: every cross-check against PyTorch, one table.

Options: ``--only GROUP[,GROUP]`` (layers, trajectories, interop, paper),
``--steps K`` (trajectory length, default 50), ``--results DIR`` (where the paper
comparison reads refbinn's JSON results; default results/). Exit status 0 when
every row passes ("not run" and "info" paper rows are not failures).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

from .common import format_table

GROUPS = ("layers", "trajectories", "interop", "paper")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m validate", description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(GROUPS), help="comma-separated groups to run")
    ap.add_argument("--results", default="results", help="folder of refbinn train JSON files")
    ap.add_argument("--steps", type=int, default=None, help="trajectory length (default 50)")
    args = ap.parse_args(argv)
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        ap.error(f"--only: unknown group(s) {bad}; choose from {GROUPS}")
    if not groups:                      # '--only ,' ran nothing and passed
        ap.error(f"--only: no group given; choose from {GROUPS}")
    if args.steps is not None and args.steps < 1:       # 0 steps compared nothing and passed
        ap.error(f"--steps must be an integer in [1, inf), got {args.steps}")
    if not args.results:
        ap.error("--results is empty; give the folder of results")
    if os.path.isfile(args.results):
        ap.error(f"--results {args.results} is a file; give the folder of results")
    warnings.filterwarnings("ignore", message="Using padding='same'")

    import torch
    torch.set_num_threads(1)          # deterministic, and the machines here are shared
    from . import interop, layers, paper, trajectories

    t0 = time.perf_counter()
    rows = []
    for g in groups:
        if g == "layers":
            rows += layers.run()
        elif g == "trajectories":
            rows += trajectories.run(steps=args.steps)
        elif g == "interop":
            rows += interop.run()
        elif g == "paper":
            rows += paper.run(args.results)
    print(format_table(rows))
    n_fail = sum(not r.passed for r in rows)
    print(f"\n{len(rows)} rows, {n_fail} failed, torch {torch.__version__}, "
          f"{time.perf_counter() - t0:.0f} s")
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
