"""The suite's BLAS thread count: the same in the pytest process and in every child it starts,
whatever the user set (issue: a fresh clone failed where the two counts round differently).

tests/conftest.py pins the count before numpy loads; these tests check that it took, and run
the tests that compare in-process arrays with a child's under each setting of the variables.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nerwin.threads import THREAD_VARS, blas_threads

ROOT = Path(__file__).resolve().parents[1]


def child_count(env: dict[str, str]) -> str:
    code = "import nerwin, numpy; from nerwin.threads import blas_threads; print(blas_threads())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True).stdout.strip()


def test_this_process_runs_the_count_its_children_run():
    if blas_threads() is None:
        pytest.skip("numpy's BLAS does not report its thread count (not OpenBLAS)")
    assert os.environ["OPENBLAS_NUM_THREADS"] == str(blas_threads())
    assert child_count(dict(os.environ)) == str(blas_threads())


# The in-process vs child comparisons: a killed child's checkpoint resumed in-process, and an
# in-process run compared with it bit for bit; run here under each setting of the variables.
SUBSET = ["tests/test_blas_threads.py::test_this_process_runs_the_count_its_children_run",
          "tests/test_resume_faults.py::test_a_kill_at_each_point_of_the_swap_then_resume"
          "[last-moved-in]",
          "tests/test_resume_faults.py::test_a_kill_at_each_point_of_the_swap_then_resume"
          "[best-npz-written]"]


@pytest.mark.parametrize("setting", [None, "1", "2"])
def test_the_comparisons_pass_with_the_variables_unset_one_and_two(setting):
    if setting == "2" and (os.cpu_count() or 1) < 2:
        pytest.skip("one core: a second BLAS thread cannot run beside the first")
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    if setting is not None:
        env["OPENBLAS_NUM_THREADS"] = setting
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUBSET],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "3 passed" in r.stdout, r.stdout[-1000:]
