"""Tagging speed of onnxruntime beside nerwin's own network, on the same model. Prints JSON.

    python bench/onnx_speed.py --model runs/sample/best            # after make demo
    python bench/onnx_speed.py --model runs/conll2003_best/best \
        --input ../shared/data/conll2003/test.txt

Method: export MODEL to a temporary .onnx file (nerwin export), load the checkpoint (numpy,
one BLAS thread: nerwin's default) and the .onnx file (onnxruntime, one intra-op thread),
and time, alternating the two within each round so that both see the same machine load:

* ``tag``: ``Model.tag`` / ``OnnxModel.tag`` on INPUT's sentences read once: feature
  encoding (the same nerwin code for both), the network, decoding (the same code);
* ``nerwin_tag``: the whole ``nerwin tag INPUT --input-format conll`` path (reading,
  tagging, writing conll to memory) through nerwin.tagging.tag_stream.

Each figure is tokens per second, the median over ``--rounds`` rounds, with min and max.
The outputs of the two are checked to be identical.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "runs" / "sample" / "best"))
    ap.add_argument("--input", default=str(ROOT / "data" / "sample" / "test.txt"),
                    help="CoNLL file whose tokens are tagged")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    from nerwin.api import load_model
    from nerwin.conll import read_tokens
    from nerwin.onnx_export import export
    from nerwin.tagging import tag_stream
    from nerwin.threads import blas_threads

    sents = read_tokens(args.input)
    n_tokens = sum(len(s.tokens) for s in sents)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export(args.model, onnx_path)
        models = {"nerwin": load_model(args.model), "onnxruntime": load_model(onnx_path)}
        raw = Path(args.input).read_bytes()
        times: dict[str, dict[str, list[float]]] = {k: {"tag": [], "nerwin_tag": []}
                                                    for k in models}
        outputs: dict[str, tuple] = {}
        for name, m in models.items():  # warm-up, and the outputs to compare
            buf = io.StringIO()
            tag_stream(m, io.BytesIO(raw), "input", buf, input_format="conll")
            outputs[name] = (m.tag(sents), buf.getvalue())
        for _ in range(args.rounds):
            for name, m in models.items():
                t0 = time.perf_counter()
                m.tag(sents)
                times[name]["tag"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                tag_stream(m, io.BytesIO(raw), "input", io.StringIO(), input_format="conll")
                times[name]["nerwin_tag"].append(time.perf_counter() - t0)

    def rate(ts: list[float]) -> dict[str, int]:
        return {"median": round(n_tokens / statistics.median(ts)),
                "min": round(n_tokens / max(ts)), "max": round(n_tokens / min(ts))}

    result = {
        "command": " ".join(["python", *sys.argv]),
        "cpu": cpu_name(), "cores": os.cpu_count(), "loadavg": os.getloadavg(),
        "model": args.model, "input": args.input, "tokens": n_tokens,
        "blas_threads": blas_threads(), "onnxruntime_threads": 1,
        "identical_output": outputs["nerwin"] == outputs["onnxruntime"],
        "tokens_per_s": {name: {k: rate(v) for k, v in t.items()}
                         for name, t in times.items()},
    }
    for k in ("tag", "nerwin_tag"):
        result[f"{k}_onnxruntime_over_nerwin"] = round(
            statistics.median(times["nerwin"][k]) / statistics.median(times["onnxruntime"][k]),
            2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
