"""Fault injection: the process dies at each point of a checkpoint save; --resume recovers.

A child process trains the sample config and is killed with ``os._exit`` (no handler, no
``finally`` runs: as kill -9 would) at one point of the second save of ``best/`` or
``last/``. Then a plain ``--resume`` must finish with weights and metrics bit-identical to
a run that was never interrupted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli as run

from nerwin.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = str(ROOT / "configs" / "sample.yaml")
ARGS = ["--quiet", "--set", "training.epochs=3", "--set", "model.dropout=0.2",
        "--set", "training.patience=null"]

# The child: wrap the steps of save_checkpoint and die after the chosen one, during the
# second save of the chosen folder (the first has no previous checkpoint to set aside).
CHILD = r"""
import os, sys
from pathlib import Path
import nerwin.checkpoint as ck
import nerwin.train as tr
from nerwin.cli import main

folder, point = sys.argv[1], sys.argv[2]
sys.argv = ["nerwin", *sys.argv[3:]]
saves = {"n": 0}
active = {"on": False}

def die_after(name):
    if active["on"] and name == point:
        os._exit(137)

real_save = ck.save_checkpoint
def save(directory, arrays, meta):
    mine = Path(directory).name == folder
    if mine:
        saves["n"] += 1
        active["on"] = saves["n"] == 2
    try:
        return real_save(directory, arrays, meta)
    finally:
        active["on"] = False

def wrap(module, name, points):
    real = getattr(module, name)
    calls = {"n": 0}
    def wrapped(*a, **kw):
        if not active["on"]:
            return real(*a, **kw)
        calls["n"] += 1
        die_after(points[0] + "-before" if calls["n"] == 1 else "")
        out = real(*a, **kw)
        die_after(points[min(calls["n"], len(points)) - 1])
        return out
    setattr(module, name, wrapped)

tr.save_checkpoint = save
wrap(ck, "_write_npz", ["npz-written"])
wrap(ck, "_write_synced", ["meta-written"])
wrap(os, "replace", ["moved-aside", "moved-in"])
wrap(ck, "_remove", ["old-removed"])
main()
"""

# In the order save_checkpoint reaches them.
POINTS = ["npz-written-before", "npz-written", "meta-written", "moved-aside", "moved-in",
          "old-removed"]



def arrays_of(folder: Path) -> dict[str, np.ndarray]:
    return load_checkpoint(folder)[0]


def metrics(out: Path) -> list[dict]:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "tokens_per_s")} for r in lines]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full") / "run"
    r = run("train", SAMPLE, "--out", out, *ARGS)
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("folder", ["best", "last"])
def test_a_kill_at_each_point_of_the_swap_then_resume(uninterrupted: Path, tmp_path: Path,
                                                      folder: str, point: str) -> None:
    out = tmp_path / "run"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, folder, point, "train", SAMPLE, "--out", str(out),
         *ARGS], capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert child.returncode == 137, child.stdout + child.stderr  # it died where told
    if point == "moved-aside":  # the window: the final name is gone
        assert not (out / folder).exists()

    r = run("train", SAMPLE, "--out", out, "--resume", *ARGS)
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    for name in ("best", "last"):
        want, got = arrays_of(uninterrupted / name), arrays_of(out / name)
        assert want.keys() == got.keys()
        for k in want:
            assert want[k].dtype == got[k].dtype and np.array_equal(want[k], got[k]), (name, k)
    assert metrics(out) == metrics(uninterrupted)
    assert sorted(os.listdir(out)) == sorted(os.listdir(uninterrupted))  # no leftovers


def test_eval_reads_the_complete_copy_a_killed_save_left(uninterrupted: Path, tmp_path: Path
                                                          ) -> None:
    out = tmp_path / "run"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, "best", "moved-aside", "train", SAMPLE, "--out",
         str(out), *ARGS], capture_output=True, text=True, timeout=300)
    assert child.returncode == 137, child.stderr
    assert not (out / "best").exists()
    r = run("eval", out / "best", ROOT / "data" / "sample" / "dev.txt", "--json")
    assert r.exit_code == 0, r.output
    assert not (out / "best").exists()  # eval renames nothing
