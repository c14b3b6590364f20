"""Two thread pools share the cores in a refbinn step: OpenBLAS's (numpy's matmuls) and Numba's
(the fused kernels, on the GNU OpenMP runtime here). Each pool's idle workers spin for a while
after their work, and on a small machine a spinning worker holds a core the other pool needs:

- OpenBLAS's spin for 2**28 cycles (about 0.1 s) after each call, so a Numba kernel that
  follows a matmul shares its cores with spinning threads: on 2 cores this made a step of the
  continual-learning MLP 6x slower (10.9 against 1.9 ms) and one of the MNIST MLP 1.6x (90
  against 57 ms). ``OPENBLAS_THREAD_TIMEOUT=4`` (2**4 cycles) lets them sleep at once.
- libgomp's spin for 300 000 rounds after each parallel region, so the matmuls that follow a
  Numba kernel (forward_params, then the forward) wait for them: the MNIST MLP's
  forward+backward took 50.4 ms after forward_params against 44.2 ms without it, and 46.2 ms
  after it with ``GOMP_SPINCOUNT=10000`` (2 cores, one process). In ``scripts/bench_train.py``
  (quick runs, 2 cores) a training step took 56-64 ms with it against 65-69 ms without, and
  the forward+backward after a step 46-54 against 56-59 ms. 10 000 rounds still bridge the
  gaps between the kernels of one optimizer step.

Both are read when the library loads, so they are set here, before refbinn imports numpy
(and before Numba starts its OpenMP pool), unless the user has set them. Standard library only.
"""
from __future__ import annotations

import os
import sys

OPENBLAS_SPIN = "4"
GOMP_SPIN = "10000"


def short_idle_spin():
    """Set OPENBLAS_THREAD_TIMEOUT=4 and GOMP_SPINCOUNT=10000, each unless it is set.

    Returns
    -------
    bool
        False if numpy was already imported (then OpenBLAS has read its setting in this process).
    """
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_SPIN)
    os.environ.setdefault("GOMP_SPINCOUNT", GOMP_SPIN)
    return "numpy" not in sys.modules
