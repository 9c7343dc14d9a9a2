"""bench/seeds.py: one training per seed as child processes, per-seed and mean ± std F1."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = str(ROOT / "configs" / "sample.yaml")


def seeds(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "seeds.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds") / "s"
    r = seeds(SAMPLE, "--seeds", "0", "1", "--set", "training.epochs=1", "--workers", "2",
              "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out, json.loads(r.stdout)


def test_each_seed_is_a_kept_run_and_the_summary_is_its_mean_and_std(two_seeds):
    out, res = two_seeds
    assert [s["seed"] for s in res["seeds"]] == [0, 1]
    for s in res["seeds"]:
        run = out / f"seed-{s['seed']}"
        assert (run / "best" / "params.npz").exists() and s["run_dir"] == str(run)
        assert yaml.safe_load((run / "config.yaml").read_text())["training"]["seed"] == s["seed"]
        test = json.loads((run / "test_scores.json").read_text())
        assert s["test_f1"] == test["f1"]
        dev = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert s["dev_f1"] == dev[0]["dev_f1"] and s["best_epoch"] == 1 == s["epochs_run"]
        assert s["seconds"] > 0
    devs = [s["dev_f1"] for s in res["seeds"]]
    assert res["dev_f1"]["mean"] == pytest.approx(statistics.fmean(devs), abs=1e-4)
    assert res["dev_f1"]["std"] == pytest.approx(statistics.stdev(devs), abs=1e-4)
    assert res["test_f1"]["n"] == 2
    # two seeds, two different models
    assert devs[0] != devs[1]
    assert "--seeds 0 1" in res["command"] and "training.epochs=1" in res["command"]
    assert json.loads((out / "seeds.json").read_text()) == res


def test_a_second_run_into_the_same_folder_is_refused_unless_forced(two_seeds):
    out, _ = two_seeds
    r = seeds(SAMPLE, "--seeds", "0", "--set", "training.epochs=1", "--out", str(out))
    assert r.returncode == 2 and "seed 0: nerwin train exited with 2" in r.stderr, r.stderr
    assert "a run is already there" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, expected", [
    (["--workers", "0"], "--workers 0: expected an integer >= 1"),
    (["--seeds", "1", "1"], "each seed once"),
    (["--set", "training.seed=3"], "the script sets them"),
    (["--set", "training.epochs=0"], "training.epochs"),
])
def test_bad_arguments_are_one_line_errors(args, expected, tmp_path):
    r = seeds(SAMPLE, "--out", str(tmp_path / "o"), *args)
    assert r.returncode == 2 and expected in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
