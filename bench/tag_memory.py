"""Peak memory and speed of `nerwin tag` on raw-text files of growing size. Prints JSON.

    python bench/tag_memory.py                          # model runs/sample/best (make demo)
    python bench/tag_memory.py --lines 10000 100000 1000000 --format jsonl
    python bench/tag_memory.py --lines 100000 1000000 --workers 2

Method: write a UTF-8 text file of N lines (the sentences of data/sample/test.txt, rebuilt as
raw text by nerwin.tokenize.detokenize, repeated), run `python -m nerwin tag MODEL FILE
--output OUT --quiet` as a child process for each N, and read the child's peak resident
memory from os.wait4. Flat memory means the peak does not grow with N. With ``--workers``
the workers are children of multiprocessing's fork server, which os.wait4 does not see: the
peak of every process below the child is read from /proc/PID/status (VmHWM, each process's
own high-water mark) every 0.2 s while it runs, and the largest process is reported
(``peak_rss_mb``; ``processes`` counts those seen).
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

from nerwin.conll import read_tokens
from nerwin.tokenize import detokenize

ROOT = Path(__file__).resolve().parents[1]


def _descendant_peaks(root: int) -> dict[int, float]:
    """VmHWM (kB) of every process below ``root`` (Linux /proc)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    below, todo = set(), [root]
    while todo:
        p = todo.pop()
        for c, pp in parent.items():
            if pp == p and c not in below:
                below.add(c)
                todo.append(c)
    out = {}
    for c in below:
        try:
            for line in Path(f"/proc/{c}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    out[c] = float(line.split()[1])
        except OSError:
            continue
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "runs" / "sample" / "best"))
    ap.add_argument("--lines", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--format", default="jsonl", choices=["conll", "jsonl", "inline"])
    ap.add_argument("--workers", type=int, default=1, help="nerwin tag --workers")
    args = ap.parse_args()
    sents = [detokenize(s.tokens) for s in read_tokens(ROOT / "data" / "sample" / "test.txt")]
    out = {"command": " ".join(["python", *sys.argv]), "model": args.model,
           "output_format": args.format, "workers": args.workers, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.lines:
            src = Path(tmp) / f"in-{n}.txt"
            with open(src, "w", encoding="utf-8") as f:
                for i in range(n):
                    f.write(sents[i % len(sents)] + "\n")
            dst = Path(tmp) / "out"
            t0 = time.perf_counter()
            p = subprocess.Popen([sys.executable, "-m", "nerwin", "tag", args.model, str(src),
                                  "--output", str(dst), "--output-format", args.format,
                                  "--quiet", "--workers", str(args.workers)], cwd=ROOT)
            peaks: dict[int, float] = {}
            while True:
                pid, status, usage = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    break
                for d, kb in _descendant_peaks(p.pid).items():
                    peaks[d] = max(peaks.get(d, 0.0), kb)
                time.sleep(0.2)
            seconds = time.perf_counter() - t0
            if status != 0:
                sys.exit(f"nerwin tag failed on {n} lines (status {status})")
            tokens = sum(len(json.loads(line)["tokens"]) for line in open(dst)) \
                if args.format == "jsonl" else None
            out["runs"].append({"lines": n, "input_mb": round(src.stat().st_size / 1e6, 1),
                                "tokens": tokens, "seconds": round(seconds, 1),
                                "tokens_per_s": round(tokens / seconds) if tokens else None,
                                "peak_rss_mb": round(max([usage.ru_maxrss, *peaks.values()])
                                                     / 1024, 1),
                                "processes": 1 + len(peaks)})
            dst.unlink()
            src.unlink()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
