"""bench/speed.py runs and reports the GEMM bound beside its tokens/s (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_speed_bench_reports_fractions_of_the_gemm_bound():
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "speed.py"), "--data",
         str(ROOT / "data" / "sample" / "train.txt"), "--hidden", "16", "--batch-size", "8",
         "--steps", "3", "--repeats", "2", "--decode", "argmax", "--threads", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("train_tokens_per_s", "train_gemm_bound_tokens_per_s",
                "train_fraction_of_gemm_bound", "tag_tokens_per_s",
                "tag_gemm_bound_tokens_per_s", "tag_fraction_of_gemm_bound"):
        assert out[key] > 0, key
    # the fraction is the ratio of the two (both rounded for printing)
    ratio = out["train_tokens_per_s"] / out["train_gemm_bound_tokens_per_s"]
    assert abs(out["train_fraction_of_gemm_bound"] - ratio) <= 0.001 + 1e-3 * ratio
    assert out["decode"] == "argmax" and out["batch_size"] == 8
    assert "--threads 1" in out["command"] and "other_cpu_frac" in out
