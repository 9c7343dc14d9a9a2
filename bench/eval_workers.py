"""`nerwin eval --workers N`: where one process's time goes, and wall-clock time of 1 and N
workers side by side, with the outputs compared byte for byte. Prints JSON.

    python bench/eval_workers.py --model runs/sample/best
    python bench/eval_workers.py --model /tmp/best/best --repeat 4 --workers 2 --rounds 3

Method. The data (``--data``, CoNLL-2003 dev by default) is written ``--repeat`` times into
one temporary file. Part one runs the evaluation in this process, step by step, and reads
the CPU seconds (time.process_time, one BLAS thread) of each: reading the file, cutting the
chunks, running them (``ChunkRunner``: encoding and the network, the part the workers do),
scoring (decoding the ids to tags, conlleval's counts), and formatting ``--predictions`` and
``--json``; the share of the chunks bounds what N workers can gain (Amdahl: the rest is the
parent's alone). Part two runs ``python -m nerwin eval MODEL DATA --json --predictions OUT
--workers W`` as a child process for W = 1 and ``--workers``, alternating, ``--rounds``
times; the fastest wall-clock time of each counts (process start and model loading
included), and stdout and the predictions of every run must be the same bytes. The load
average before and after is printed: on a shared machine the ratio says little about idle
cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "conll2003" / "valid.txt"


def breakdown(model_dir: str, data: Path) -> dict[str, float]:
    """CPU seconds of each step of one in-process evaluation."""
    sys.path.insert(0, str(ROOT))
    from nerwin.api import load_model
    from nerwin.conll import format_predictions
    from nerwin.dataset import encode_labels, read_split
    from nerwin.evaluation import ChunkRunner, chunks

    model = load_model(model_dir)
    out: dict[str, float] = {}
    t = time.process_time()

    def step(name: str) -> None:
        nonlocal t
        now = time.process_time()
        out[name] = round(now - t, 3)
        t = now

    corpus = read_split(model.cfg, data)
    encode_labels(corpus, model.lex.tags)
    step("read")
    parts = list(chunks(corpus, model.eval_plan(corpus.lengths)))
    step("cut_chunks")
    runner = ChunkRunner(model)
    results = [runner(c) for c in parts]
    step("run_chunks")
    import numpy as np

    scores, pred = model.eval_finish(corpus, np.concatenate([i for i, _ in results]),
                                     np.concatenate([x for _, x in results]))
    step("score")
    format_predictions(corpus.sentences, pred, model.gold_tags(corpus))
    json.dumps(scores, indent=2)
    step("format")
    total = sum(out.values())
    out["total"] = round(total, 3)
    out["chunks"] = len(parts)
    out["tokens"] = corpus.n_tokens
    out["run_chunks_share"] = round(out["run_chunks"] / total, 3)
    return out


def run_eval(model: str, data: Path, pred: Path, workers: int) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "nerwin", "eval", model, str(data), "--json",
           "--predictions", str(pred), "--workers", str(workers)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {p.stderr}")
    return wall, p.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a checkpoint or ensemble folder")
    ap.add_argument("--data", type=Path, default=SHARED, help="a CoNLL file")
    ap.add_argument("--repeat", type=int, default=1, help="the data this many times")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.txt"
        # a blank line after the last sentence, so that the copies do not run together
        text = args.data.read_text(encoding="utf-8").rstrip("\n") + "\n\n"
        data.write_text(text * args.repeat, encoding="utf-8")
        load_before = os.getloadavg()
        result: dict[str, object] = {"breakdown_cpu_s": breakdown(args.model, data)}
        best: dict[int, float] = {}
        seen: dict[int, tuple[str, bytes]] = {}
        for _ in range(args.rounds):
            for w in (1, args.workers):
                pred = Path(tmp) / f"pred{w}.txt"
                wall, stdout = run_eval(args.model, data, pred, w)
                best[w] = min(best.get(w, wall), wall)
                got = (stdout, pred.read_bytes())
                if seen.setdefault(w, got) != got or seen[1] != got:
                    sys.exit(f"outputs differ with {w} workers")
        share = result["breakdown_cpu_s"]["run_chunks_share"]  # type: ignore[index]
        result.update({
            "model": args.model, "data": str(args.data), "repeat": args.repeat,
            "wall_s": {str(w): round(s, 3) for w, s in best.items()},
            "speedup": round(best[1] / best[args.workers], 3),
            "amdahl_bound": round(1 / ((1 - share) + share / args.workers), 3),
            "identical_outputs": True,
            "loadavg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "cpus": os.cpu_count()})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
