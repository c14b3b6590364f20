"""Two thread pools share the cores in a refbinn step: OpenBLAS's (numpy's matmuls) and Numba's
(the fused kernels). OpenBLAS's idle workers spin for 2**28 cycles (about 0.1 s) after each
call, so a Numba kernel that follows a matmul shares its cores with spinning threads: on
2 cores this made a step of the continual-learning MLP 6x slower (10.9 against 1.9 ms) and
one of the MNIST MLP 1.6x (90 against 57 ms). ``OPENBLAS_THREAD_TIMEOUT=4`` (2**4 cycles)
lets them sleep at once; it is read when OpenBLAS loads, so it is set here, before refbinn
imports numpy, unless the user has set it. Standard library only.
"""
from __future__ import annotations

import os
import sys

OPENBLAS_SPIN = "4"


def short_blas_spin():
    """Set OPENBLAS_THREAD_TIMEOUT=4 unless it is set.

    Returns
    -------
    bool
        False if numpy was already imported (then it is too late to take effect in this process).
    """
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_SPIN)
    return "numpy" not in sys.modules
