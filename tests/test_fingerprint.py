"""A fingerprint of configs/sample.yaml's run, recorded from main before the network became a
chain of parts (issue 16): any change to what training computes shows here.

Two checks: (1) every metrics.jsonl value (less timings) to 6 significant digits and the sum
of |entries| of every best/ and last/ array to rtol 1e-4, which a real change fails and
another CPU passes; (2) a sha256 of every array's bytes and the exact metrics, compared only
on the machine that recorded it (same numpy, CPU model and BLAS thread count), because
another BLAS kernel may round a product differently.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_cli

from nerwin.threads import blas_threads

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "configs" / "sample.yaml"
RECORDED = Path(__file__).parent / "data" / "sample_fingerprint.json"
TIMINGS = ("tokens_per_s", "seconds")


def machine_signature() -> str:
    """numpy version, CPU model and BLAS thread count: what the exact check depends on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"numpy {np.__version__}; cpu {model}; blas threads {blas_threads()}"


def _sig6(x: Any) -> Any:
    if isinstance(x, float):
        return float(f"{x:.6g}")
    if isinstance(x, dict):
        return {k: _sig6(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_sig6(v) for v in x]
    return x


def _arrays(run: Path) -> dict[str, np.ndarray]:
    out = {}
    for sub in ("best", "last"):
        with np.load(run / sub / "params.npz", allow_pickle=False) as z:
            out.update({f"{sub}/{k}": z[k] for k in z.files})
    return out


def fingerprint(run: str | Path) -> dict[str, Any]:
    """The portable part (rounded metrics, |array| sums) and the exact digest of a run."""
    run = Path(run)
    metrics = [{k: v for k, v in json.loads(line).items() if k not in TIMINGS}
               for line in (run / "metrics.jsonl").read_text().splitlines()]
    arrays = _arrays(run)
    h = hashlib.sha256(json.dumps(metrics, sort_keys=True).encode())
    for name in sorted(arrays):
        a = arrays[name]
        h.update(f"{name} {a.dtype} {a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return {"metrics": _sig6(metrics),
            "abs_sums": {k: float(np.abs(a.astype(np.float64)).sum())
                         for k, a in sorted(arrays.items())},
            "digest": h.hexdigest()}


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("fingerprint") / "run"
    r = run_cli("train", SAMPLE, "--out", out, "--quiet")
    assert r.exit_code == 0, r.output
    return fingerprint(out)


def test_sample_run_matches_the_recorded_metrics_and_array_sums(sample_run):
    want = json.loads(RECORDED.read_text())
    assert sample_run["metrics"] == want["metrics"]
    assert sorted(sample_run["abs_sums"]) == sorted(want["abs_sums"])
    for name, s in want["abs_sums"].items():
        assert math.isclose(sample_run["abs_sums"][name], s, rel_tol=1e-4), name


def test_sample_run_is_bit_for_bit_the_recorded_one_on_the_recording_machine(sample_run):
    want = json.loads(RECORDED.read_text())
    if machine_signature() != want["signature"]:
        pytest.skip(f"recorded on '{want['signature']}', this is '{machine_signature()}': "
                    f"another numpy, CPU or BLAS thread count may round differently")
    assert sample_run["digest"] == want["digest"]
