"""One BLAS thread unless the user says otherwise, for the CLI and for library use alike.

nerwin's matrices are small (a batch of windows times a few hundred units); there a second
BLAS thread costs more than it gives (bench/speed.py: 29.8k vs 23.6k training tokens/s on
2 idle cores, and far worse when the other core is busy; see docs/speed.md). The thread count also
changes results in the last bits (a matrix product sums in another order), so a run and its
resume should use the same count: ``last/meta.json`` records it and ``--resume`` warns when
it differs.

The variables only take effect if set before numpy is loaded, so ``import nerwin`` (the
package's ``__init__``, which every entry point and every library use goes through) calls
:func:`default_to_one_blas_thread` when numpy is not loaded yet. A program that imported
numpy before nerwin keeps whatever BLAS threads numpy started with.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from typing import Any

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Entry points of the OpenBLAS builds numpy wheels bundle (scipy-openblas) or link.
_GET_THREADS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                "openblas_get_num_threads64_", "openblas_get_num_threads")
_SET_THREADS = tuple(s.replace("get_", "set_") for s in _GET_THREADS)


def default_to_one_blas_thread() -> None:
    """Set each BLAS thread-count variable to 1 where the user has not set it."""
    for var in THREAD_VARS:
        os.environ.setdefault(var, "1")


def apply_default_if_numpy_not_loaded() -> bool:
    """The package default: one BLAS thread, if it can still take effect (numpy not loaded).

    Returns whether it could.
    """
    if "numpy" in sys.modules:
        return False
    default_to_one_blas_thread()
    return True


def _openblas_call(symbols: tuple[str, ...]) -> Any:
    """The first of ``symbols`` in the OpenBLAS that numpy's wheels bundle, or None."""
    import numpy as np

    root = os.path.dirname(os.path.dirname(np.__file__))
    for path in sorted(glob.glob(os.path.join(root, "numpy.libs", "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in symbols:
            fn = getattr(lib, symbol, None)
            if fn is not None:
                return fn
    return None


def pin_blas_threads_to_environment() -> int | None:
    """The one thread count for this process and every child it starts: the variables'
    value (1 where unset), applied to OpenBLAS directly if numpy is already loaded.

    For harnesses such as the test suite, which compare arrays computed in-process with
    arrays computed by child processes: both must run the same count. Returns the count
    OpenBLAS reports afterwards (None where it cannot be asked).
    """
    default_to_one_blas_thread()
    if "numpy" in sys.modules:
        want = int(os.environ["OPENBLAS_NUM_THREADS"])
        if blas_threads() not in (None, want):
            set_blas_threads(want)
    return blas_threads() if "numpy" in sys.modules else None


def blas_threads() -> int | None:
    """The number of threads numpy's BLAS uses now, or None if it cannot be asked.

    Asks OpenBLAS itself (the BLAS of numpy's wheels) through ctypes; other BLAS builds
    give None.
    """
    fn = _openblas_call(_GET_THREADS)
    if fn is None:
        return None
    fn.restype = ctypes.c_int
    return int(fn())


def set_blas_threads(n: int) -> bool:
    """Make numpy's OpenBLAS use ``n`` threads from now on (for benchmarks that compare
    counts in one process). Returns False if the BLAS cannot be told."""
    fn = _openblas_call(_SET_THREADS)
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_int]
    fn(int(n))
    return blas_threads() == n
