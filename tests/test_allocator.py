"""nerwin.allocator: the command line keeps freed memory in its process (and its workers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, os
from nerwin import allocator
took = allocator.keep_freed_memory()
print(json.dumps({"took": took, "env": {k: os.environ.get(k) for k in allocator.ENV}}))
"""


def _probe(env: dict[str, str]) -> dict:
    full = {k: v for k, v in os.environ.items() if k not in
            ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
             "NUMPY_MADVISE_HUGEPAGE")}
    full.update(env)
    r = subprocess.run([sys.executable, "-c", PROBE], env=full, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_settings_reach_the_environment_and_glibc():
    from nerwin import allocator

    got = _probe({})
    assert got["env"] == allocator.ENV  # what worker processes inherit
    if sys.platform.startswith("linux") and os.path.exists("/lib/x86_64-linux-gnu/libc.so.6"):
        assert got["took"] is True


def test_the_users_own_settings_are_kept():
    got = _probe({"MALLOC_TOP_PAD_": "4096", "NUMPY_MADVISE_HUGEPAGE": "1",
                  "MALLOC_TRIM_THRESHOLD_": "lots"})
    assert got["env"]["MALLOC_TOP_PAD_"] == "4096"
    assert got["env"]["NUMPY_MADVISE_HUGEPAGE"] == "1"
    assert got["env"]["MALLOC_TRIM_THRESHOLD_"] == "lots"  # not a number: left to glibc


def test_numpy_already_loaded_is_told_directly(monkeypatch):
    np = pytest.importorskip("numpy")
    from nerwin import allocator

    multiarray = allocator.numpy_multiarray()

    if not hasattr(multiarray, "_set_madvise_hugepage"):
        pytest.skip("this numpy has no huge-page switch")
    calls = []
    monkeypatch.setattr(multiarray, "_set_madvise_hugepage", lambda on: calls.append(on))
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "0")
    for var in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"):
        monkeypatch.setenv(var, allocator.ENV[var])
    allocator.keep_freed_memory()
    assert calls == [False] and np is not None


def test_the_command_line_applies_it_before_numpy(tmp_path):
    """`nerwin` itself: numpy is not loaded yet when main() applies the settings, and the
    variables are there for worker processes."""
    code = ("import sys, nerwin.cli as c; assert 'numpy' not in sys.modules; "
            "sys.argv = ['nerwin', '--version']; c.main()")
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    r = subprocess.run([sys.executable, "-c", code + "\n"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    probe = ("import os, sys, nerwin.cli as c\n"
             "try:\n    sys.argv = ['nerwin', '--version']; c.main()\n"
             "except SystemExit:\n    pass\n"
             "print(os.environ.get('NUMPY_MADVISE_HUGEPAGE'))\n")
    r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.stdout.strip().splitlines()[-1] == "0", r.stdout + r.stderr


def test_collect_less_freezes_what_is_loaded_and_collects_less_often():
    code = ("import gc, json\nfrom nerwin import allocator\nbefore = gc.get_threshold()\n"
            "allocator.collect_less()\n"
            "print(json.dumps([before[0], gc.get_threshold()[0], gc.get_freeze_count()]))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    default, young, frozen = json.loads(r.stdout)
    from nerwin.allocator import GC_YOUNG

    assert default < GC_YOUNG == young and frozen > 1000
