"""One BLAS thread unless the user says otherwise.

nerwin's matrices are small (a batch of windows times a few hundred units); there a second
BLAS thread costs more than it gives (bench/speed.py: 29.8k vs 23.6k training tokens/s on
2 idle cores, and far worse when the other core is busy; see README). The variables only
take effect if set before numpy is imported, so the entry points call this first.
"""

from __future__ import annotations

import os

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def default_to_one_blas_thread() -> None:
    """Set each BLAS thread-count variable to 1 where the user has not set it."""
    for var in THREAD_VARS:
        os.environ.setdefault(var, "1")
