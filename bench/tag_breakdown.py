"""Where the time of `nerwin tag` goes: reading and tokenising, encoding features, the
network, decoding, probabilities, entities and their scores, writing. Prints JSON.

    python bench/tag_breakdown.py --model /tmp/crf/best                # 1M tokens, jsonl
    python bench/tag_breakdown.py --model runs/sample/best --tokens 200000 --format conll

Method: the input is CoNLL-2003 train's sentences (``--data``), rebuilt as raw text by
nerwin.tokenize.detokenize, one a line, repeated to ``--tokens`` tokens. It is tagged in this
process the way ``nerwin tag`` does it (nerwin.tagging.record_chunks, chunk_records, Tagger,
format_chunk, one BLAS thread), with a clock read between the stages (reading: the chunks
of lines, as a parent process cuts them for its workers; tokenising: their lines into
sentences and tokens, as each worker does): the Tagger adds up its own stages
(``Tagger.timings``; with timings on, a batch's forward pass, decoding and probabilities
are timed apart, the same calls as without). Seconds and shares of the total; tokens/s.
Model loading and imports are not counted (reported apart).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the CLI runs it (before numpy)
os.environ.setdefault("OMP_NUM_THREADS", "1")
from nerwin.allocator import collect_less, keep_freed_memory  # noqa: E402

keep_freed_memory()  # as the CLI does (nerwin/allocator.py)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "conll2003" / "train.txt"


def write_input(path: Path, data: Path, tokens: int) -> int:
    """CoNLL sentences as raw text lines, repeated until ``tokens``; the tokens written."""
    from nerwin.conll import read_tokens
    from nerwin.tokenize import detokenize

    sents = read_tokens(data)
    lines = [detokenize(s.tokens) for s in sents]
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        while n < tokens:
            for s, line in zip(sents, lines):
                f.write(line + "\n")
                n += len(s.tokens)
                if n >= tokens:
                    break
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a run's best/ (e.g. a crf on sample.yaml)")
    ap.add_argument("--data", default=str(SHARED), help="CoNLL file whose sentences are used")
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--format", default="jsonl", choices=["conll", "jsonl", "inline"])
    args = ap.parse_args()

    t0 = time.perf_counter()
    from nerwin.model import load_model
    from nerwin.tagging import (
        Tagger,
        _items_of,
        chunk_records,
        format_chunk,
        record_chunks,
        tag_items,
    )

    model = load_model(args.model)
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.txt"
        write_input(src, Path(args.data), args.tokens)
        tagger = Tagger(model)
        collect_less()  # as nerwin tag does once its model is loaded
        tagger.timings = {}
        times: dict[str, float] = {"read": 0.0, "tokenise": 0.0}
        n_tokens = 0
        start = time.perf_counter()
        with open(src, "rb") as f, open(Path(tmp) / "out", "w", encoding="utf-8") as out:
            parts = record_chunks(f, str(src))
            while True:
                t = time.perf_counter()
                chunk = next(parts, None)
                times["read"] += time.perf_counter() - t
                if chunk is None:
                    break
                t = time.perf_counter()
                records = chunk_records(chunk)
                times["tokenise"] += time.perf_counter() - t
                items = [it for rec in records for it in _items_of(rec)]
                n_tokens += sum(len(it.tokens) for it in items)
                tag_items(tagger, items, scores=args.format == "jsonl",
                          plan_tokens=getattr(chunk, "plan_tokens", 0))  # as tag_chunk
                t = time.perf_counter()
                out.write(format_chunk(records, args.format))
                times["write"] = times.get("write", 0.0) + time.perf_counter() - t
        total = time.perf_counter() - start
    times = {"read": times["read"], "tokenise": times["tokenise"], **tagger.timings,
             "write": times["write"]}
    other = total - sum(times.values())
    times["other"] = other
    print(json.dumps({
        "command": " ".join(["python", *sys.argv]), "model": args.model,
        "output_format": args.format, "tokens": n_tokens, "seconds": round(total, 3),
        "tokens_per_s": round(n_tokens / total), "model_load_s": round(load_s, 3),
        "stages": {k: {"seconds": round(v, 3), "share": round(v / total, 3)}
                   for k, v in times.items()},
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "load_avg": os.getloadavg()[0]},
    }, indent=2))


if __name__ == "__main__":
    main()
