"""Memory a run frees stays in its process, ready for the next array of the same size.

nerwin allocates and frees the same arrays over and over: every training step, every
evaluation batch (a conv block's neighbours are 4,096 × 900 floats, 14 MB), every chunk a
tagger reads. Two defaults of a Linux process give each of them fresh pages from the
kernel, which it must fault in and zero before they are written:

* glibc returns a freed allocation of 128 kB or more (at most 32 MB, adapting as it goes)
  to the kernel (``munmap``), and trims the top of its heap when enough of it is free;
* numpy asks for transparent huge pages for arrays of 4 MB or more, so each of their faults
  zeroes 2 MB at once, used or not.

On the development machine a whole run of ``configs/conll2003_best.yaml`` spent 31.6 s of
its 237 s in the kernel, 1.02 million page faults; the kernel's page zeroing was 11.5 % of
a profile of one epoch (``perf``). :func:`keep_freed_memory` sets both the other way: freed
memory below 32 MB is kept in the heap and the heap is not trimmed (the peak is what it
was: only the give-back-and-fault-again cycle stops), and no huge-page advice for numpy's
arrays. Nothing computed changes (where an array lives is not what it holds: weights and
outputs are the same bit for bit, docs/speed.md).

The command line applies it (``nerwin.cli.main``) before numpy is loaded, through the
environment, so that worker processes (``tag --workers``, ``eval --workers``) inherit it;
a program that uses nerwin as a library may call it too. Variables the user has set are
left as they are. It does nothing where glibc's ``mallopt`` is missing (macOS, musl), but
set the variables.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys

# glibc reads these when a process starts (worker processes); mallopt sets the same in a
# running one. Sizes in bytes.
ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(32 << 20),  # larger allocations still get their own map
    "MALLOC_TRIM_THRESHOLD_": str((1 << 31) - 1),  # never give the heap's top back
    "MALLOC_TOP_PAD_": str(64 << 20),  # grow the heap 64 MB at a time
    "NUMPY_MADVISE_HUGEPAGE": "0",  # numpy: no transparent huge pages for big arrays
}
# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def numpy_multiarray() -> object:
    """numpy's ``multiarray`` module: ``numpy._core`` from numpy 2 on, ``numpy.core``
    before (setup.cfg allows numpy >= 1.22)."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    return multiarray


def keep_freed_memory() -> bool:
    """Apply the settings above to this process and its future children; True if glibc
    took them (False elsewhere: then only the variables are set)."""
    for var, value in ENV.items():
        os.environ.setdefault(var, value)
    if "numpy" in sys.modules:  # too late for the variable: ask numpy directly
        setter = getattr(numpy_multiarray(), "_set_madvise_hugepage", None)
        if setter is not None and os.environ["NUMPY_MADVISE_HUGEPAGE"] == "0":
            setter(False)
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = True
    for param, var in ((_M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_"),
                       (_M_TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_"),
                       (_M_TOP_PAD, "MALLOC_TOP_PAD_")):
        try:
            value = int(os.environ[var])
        except ValueError:  # the user's own setting, not a number: leave glibc's
            continue
        ok = bool(mallopt(param, min(value, (1 << 31) - 1))) and ok
    return ok


#: Allocations between two collections of the youngest generation (Python's default: 700).
GC_YOUNG = 50_000


def collect_less() -> None:
    """Python's cyclic garbage collector, set for a long tagging or evaluation run, once the
    model is loaded: what exists now (modules, the model) is moved out of its scans
    (``gc.freeze``), and the youngest generation is collected every GC_YOUNG allocations
    instead of 700. A tagger makes a few Python objects per token and sentence, nearly
    none of them in reference cycles, so the default's frequent scans found nothing to
    free: with it, collections took about a fifth of tokenising (bench/tag_breakdown.py:
    the tokenise stage 0.66 s → 0.43 s on 1M tokens, the whole 2.89 s → 2.70 s; nothing
    else changes)."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG, 20, 100)
