"""One BLAS thread unless the user says otherwise, for the CLI and for library use alike.

nerwin's matrices are small (a batch of windows times a few hundred units); there a second
BLAS thread costs more than it gives (bench/speed.py: 29.8k vs 23.6k training tokens/s on
2 idle cores, and far worse when the other core is busy; see README). The thread count also
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

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Entry points of the OpenBLAS builds numpy wheels bundle (scipy-openblas) or link.
_GET_THREADS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                "openblas_get_num_threads64_", "openblas_get_num_threads")


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


def blas_threads() -> int | None:
    """The number of threads numpy's BLAS uses now, or None if it cannot be asked.

    Asks OpenBLAS itself (the BLAS of numpy's wheels) through ctypes; other BLAS builds
    give None.
    """
    import numpy as np

    root = os.path.dirname(os.path.dirname(np.__file__))
    for path in sorted(glob.glob(os.path.join(root, "numpy.libs", "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in _GET_THREADS:
            fn = getattr(lib, symbol, None)
            if fn is not None:
                fn.restype = ctypes.c_int
                return int(fn())
    return None
