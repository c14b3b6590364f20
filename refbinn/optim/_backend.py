"""Where every optimizer chooses between its NumPy equations and their Numba twins.

    use_kernels(backend, *arrays) = backend == 'numba' and every array qualifies:
        a kernel dtype (float32; Adam/PMF also float64), C-contiguous, and
        at least FUSED_MIN_SIZE elements (below it a parallel region costs more than
        the NumPy passes: a few ms on a busy 2-core machine)

The same switch and threshold for BayesBiNN, VISPA, PMF, Adam and STE (Bop has no
kernels). Also here, written once: the output-array pool that the kernels write into
(left behind by copies and pickles), and the end of a step whose kernel reported
non-finite output.
"""
from __future__ import annotations

import sys

import numpy as np

from ..checks import check_choice
from .base import check_finite

BACKENDS = ("numba", "numpy")
FUSED_MIN_SIZE = 1 << 15      # weights per array below which the NumPy path is faster


def check_backend(backend):
    """``backend`` if it is one of ``BACKENDS``; else ValueError naming ``backend``.

    Parameters
    ----------
    backend : {'numba', 'numpy'}
        An optimizer's ``backend`` argument.

    Returns
    -------
    str
        ``backend`` unchanged.
    """
    return check_choice("backend", backend, BACKENDS)


def use_kernels(backend, *arrays, dtypes=(np.float32,), min_size=None):
    """True if ``backend`` is 'numba' and every array has a kernel dtype, C order and
    at least ``FUSED_MIN_SIZE`` elements (read at call time: tests lower it).

    Parameters
    ----------
    backend : {'numba', 'numpy'}
        The optimizer's backend; 'numpy' always gives False.
    *arrays : ndarray
        The arrays one kernel call would read and write.
    dtypes : tuple of numpy dtypes, optional
        The dtypes the kernel is compiled for (float32; Adam and PMF also float64).
    min_size : int, optional
        The size threshold; None: ``FUSED_MIN_SIZE`` (BayesBiNN passes 0: its kernels
        have serial twins for small arrays).

    Returns
    -------
    bool
        Whether to call the Numba kernel rather than the NumPy equations.
    """
    floor = FUSED_MIN_SIZE if min_size is None else min_size
    return backend == "numba" and all(
        a.dtype in dtypes and a.flags.c_contiguous and a.size >= floor for a in arrays)


def check_grads_before(grads, on_kernels):
    """Scan the gradients of the parameters that take the NumPy path (``on_kernels[k]`` False)
    before anything is computed; the kernels count non-finite output instead (see
    ``raise_nonfinite``), so the float32 step does not pay for a separate pass.

    Parameters
    ----------
    grads : list of dict
        One gradient dict per forward/backward pass.
    on_kernels : dict name -> bool
        For each parameter, whether its update runs in a Numba kernel (those are not scanned).

    Raises FloatingPointError (``check_finite``'s message) when a scanned gradient is not finite.
    """
    if not all(np.all(np.isfinite(g[k])) for g in grads for k, fused in on_kernels.items() if not fused):
        check_finite(grads)


def raise_nonfinite(name, grads, what):
    """End a step whose parameter ``name`` came out non-finite: name the NaN/inf gradient if
    there is one (the usual cause), else say which state (``what``) overflowed.

    Parameters
    ----------
    name : str
        The parameter whose kernel reported non-finite output.
    grads : list of dict
        This step's gradients, scanned first for the NaN/inf to name.
    what : str
        The state that overflowed, for the message (e.g. "lambda").

    Always raises FloatingPointError; the caller's old state is left unchanged.
    """
    check_finite(grads)
    raise FloatingPointError(f"the update of parameter '{name}' made {what} non-finite; "
                             "the step was not taken")


class ArrayPool:
    """Output arrays for the fused kernels, reusing those nobody else references any more.

    Why: a step writes ~120 MB of new float32 state for the 10M-weight MNIST MLP, and
    fresh pages cost a page fault and zeroing each (glibc returns freed blocks of this
    size to the OS): 10-25% of the whole update, measured here. An array is handed
    out again only when the pool holds the sole reference (CPython reference count),
    i.e. the state that used it has been dropped, so live states never share memory.
    (So one optimizer object must not run two updates at once from different threads.)
    """

    def __init__(self, keep=16):
        self.keep = keep                   # per (shape, dtype): two states' outputs and the w_r
        self.arrays = {}
        self.free = self._count_when_free()

    @staticmethod
    def _count_when_free():
        """getrefcount of an array only the pool holds, seen exactly as ``empty_like`` sees
        it (3 on CPython 3.10-3.13: list, loop variable, argument; measured, not assumed,
        since newer interpreters borrow some of these references)."""
        pool = [np.empty(0)]
        for b in pool:
            return sys.getrefcount(b)

    def empty_like(self, a):
        key = (a.shape, a.dtype.str)
        pool = self.arrays.setdefault(key, [])
        for b in pool:
            if sys.getrefcount(b) == self.free:
                return b
        b = np.empty_like(a)
        pool.append(b)
        if len(pool) > self.keep:
            pool.pop(0)                    # still owned by whoever holds it; just not reused
        return b


class PooledKernels:
    """Mixin: ``self.pool``, an ArrayPool of ``POOL_KEEP`` arrays per shape, and ``self.memo``,
    a dict for results a kernel computed ahead (VISPA's next weights); copies and pickles
    leave both behind (a copy gets fresh, empty ones)."""
    POOL_KEEP = 16
    _CACHES = ("_arrays", "_memo")

    @property
    def memo(self):
        """A dict, made on first use, for what a kernel computed ahead of the call that needs it.

        Only a cache: every entry must be checked against its inputs by the reader, so a
        result never depends on what the memo holds."""
        return self.__dict__.setdefault("_memo", {})

    @property
    def pool(self):
        """The ArrayPool (``keep=POOL_KEEP``) this optimizer's kernels write their outputs into,
        made on first use; copies and unpickled objects start with a new one."""
        if "_arrays" not in self.__dict__:
            self.__dict__["_arrays"] = ArrayPool(keep=self.POOL_KEEP)
        return self.__dict__["_arrays"]

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in self._CACHES}

    def __setstate__(self, d):
        self.__dict__.update(d)
