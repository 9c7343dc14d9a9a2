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


def bench(script: str, *args: str) -> dict:
    r = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_cost_ratio_compares_a_config_with_the_plain_one_at_its_batch_size():
    sample = str(ROOT / "data" / "sample" / "train.txt")
    out = bench("cost_ratio.py", str(ROOT / "configs" / "sample.yaml"), "--set",
                "model.head=crf", "--set", "model.decode=null", "--data", sample,
                "--rounds", "3", "--steps", "2")
    assert out["base_batch_size"] == out["config_batch_size"] == 32
    assert len(out["ratio_per_round"]) == 3 and out["ratio"] > 0
    want = out["base_tokens_per_s"] / out["config_tokens_per_s"]
    assert abs(out["ratio"] - want) <= 0.01 * want  # both rounded for printing
    assert "--set model.head=crf" in out["config"]


def test_step_breakdown_names_its_parts_and_the_products():
    out = bench("step_breakdown.py", "--data", str(ROOT / "data" / "sample" / "train.txt"),
                "--batch-size", "16")
    parts = out["parts_us"]
    assert "Adam on W1" in parts and "row-sparse gradient of E_word" in parts
    products = sum(v for k, v in parts.items() if k.startswith("product"))
    assert abs(out["products_us"] - products) < 1
    assert out["whole_step_us"] > 0 and out["gemm_bound_us"] > 0


def test_threads_bench_compares_products_bit_for_bit():
    out = bench("threads.py", "--shape", "8", "16", "4", "--threads", "2")
    (row,) = out["products"]
    assert row["shape"] == [8, 16, 4]
    # The verdict is the comparison it reports: identical exactly when no entry differs, and
    # any difference is the last bits of one product (sums of 16 terms of order 1), not two
    # different products compared.
    assert row["identical"] is (row["max_abs_diff"] == 0.0)
    assert 0.0 <= row["max_abs_diff"] < 1e-4
    assert row["us_1_thread"] > 0 and row["us_2_threads"] > 0


def test_optim_ab_against_itself_keeps_the_weights_identical():
    # Against its own optimiser the two copies run the same arithmetic on the same batches.
    out = bench("optim_ab.py", str(ROOT / "configs" / "sample.yaml"), "--before",
                str(ROOT / "nerwin" / "optim.py"), "--data",
                str(ROOT / "data" / "sample" / "train.txt"), "--rounds", "2", "--steps", "3")
    assert out["weights_identical"] is True
    assert len(out["speedup_per_round"]) == 2 and out["batch_size"] == 32
    assert out["optimiser_step_us"]["before"] > 0 and out["optimiser_step_us"]["after"] > 0
