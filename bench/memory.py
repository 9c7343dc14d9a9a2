"""Peak memory of `nerwin data` and `nerwin train` on a large generated CoNLL file. Prints JSON.

    python bench/memory.py                       # 5,000,000 tokens (the figure in docs/speed.md)
    python bench/memory.py --tokens 500000       # a quicker look

Method: write a deterministic CoNLL file of N tokens (seeded numpy draws) in a temporary
folder: a Zipf-distributed vocabulary of made-up words (lower case, capitalised, upper case
and numbers), sentences of 1 + Poisson(13) tokens, a -DOCSTART- line every 200 sentences,
and entities (PER, LOC, ORG, MISC) of 1-3 tokens from a Zipf-distributed vocabulary of
capitalised names, in IOB2, never crossing a sentence. A dev file of N/50 tokens is drawn
the same way. Then run, each as a child process (`python -m nerwin ...` in this checkout),
`nerwin data` on the training file and `nerwin train` for 1 epoch with a small model (window
2, 50-d words, 5-d casing, 50 tanh units, batch 256, Adam; dev scored once), and read each
child's peak resident memory from os.wait4. Bytes per token is that peak divided by the
training tokens.

The files are written by another child process (``--generate``), and this process imports
nothing big: a child's peak RSS counts the memory of its parent at the fork (until the exec),
so a parent holding the generated corpus would be measured instead of nerwin.
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TYPES = ("PER", "LOC", "ORG", "MISC")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def make_words(rng: Any, n: int, capital: float) -> list[str]:
    """n distinct made-up words; a share ``capital`` starts with a capital letter, a few are
    all caps or numbers."""
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < n:
        length = int(rng.integers(2, 11))
        w = "".join(LETTERS[i] for i in rng.integers(0, 26, size=length).tolist())
        r = rng.random()
        if r < 0.02:
            w = str(int(rng.integers(0, 10**6)))
        elif r < 0.04:
            w = w.upper()
        elif r < 0.04 + capital:
            w = w.capitalize()
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def zipf_draw(rng: Any, n_types: int, size: int, s: float = 1.05) -> Any:
    """``size`` ranks in [0, n_types) with P(k) ∝ 1 / (k + 2.7)^s (Zipf-Mandelbrot)."""
    import numpy as np

    p = 1.0 / (np.arange(n_types) + 2.7) ** s
    cdf = np.cumsum(p)
    return np.searchsorted(cdf, rng.random(size) * cdf[-1]).astype(np.int64)


def write_corpus(path: Path, n_tokens: int, seed: int) -> int:
    """Write a CoNLL file of ``n_tokens`` tokens; return the number of sentences."""
    import numpy as np

    rng = np.random.default_rng(seed)
    words = make_words(rng, 200_000, capital=0.1)
    names = make_words(rng, 50_000, capital=1.0)
    names = [w.capitalize() if w.islower() else w for w in names]
    lengths = []
    total = 0
    while total < n_tokens:
        n = min(1 + int(rng.poisson(13)), n_tokens - total)
        lengths.append(n)
        total += n
    word_ids = zipf_draw(rng, len(words), n_tokens)
    name_ids = zipf_draw(rng, len(names), n_tokens)
    starts = rng.random(n_tokens) < 0.06
    types = rng.integers(0, len(TYPES), size=n_tokens)
    spans = rng.integers(1, 4, size=n_tokens)
    tags: list[str] = ["O"] * n_tokens
    tokens: list[str] = [words[i] for i in word_ids]
    sent_end = np.repeat(np.cumsum(lengths), lengths)  # per token: end of its sentence
    for t in np.flatnonzero(starts).tolist():
        if tags[t] != "O":
            continue
        typ = TYPES[types[t]]
        end = min(t + int(spans[t]), int(sent_end[t]))
        for j in range(t, end):
            if j > t and tags[j] != "O":
                break
            tags[j] = ("B-" if j == t else "I-") + typ
            tokens[j] = names[name_ids[j]]
    with open(path, "w", encoding="utf-8") as f:
        pos = 0
        for s, n in enumerate(lengths):
            if s % 200 == 0:
                f.write("-DOCSTART- O\n\n")
            f.write("".join(f"{tokens[j]} {tags[j]}\n" for j in range(pos, pos + n)) + "\n")
            pos += n
    return len(lengths)


def run(cmd: list[str], cwd: Path) -> dict[str, float]:
    """Run ``cmd`` as a child; its wall time and peak RSS (from os.wait4)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"{' '.join(cmd)} failed (status {status})")
    return {"seconds": round(seconds, 1), "peak_rss_bytes": usage.ru_maxrss * 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=5_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", nargs="*", default=[], choices=["data", "train"],
                    help="commands not to run")
    ap.add_argument("--generate", metavar="DIR", help=argparse.SUPPRESS)  # the child's job
    args = ap.parse_args()
    if args.generate:
        n = write_corpus(Path(args.generate) / "train.txt", args.tokens, args.seed)
        write_corpus(Path(args.generate) / "dev.txt", max(1000, args.tokens // 50),
                     args.seed + 1)
        print(n)
        return
    out: dict = {"command": " ".join(["python", *sys.argv]), "tokens": args.tokens,
                 "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        train, dev = d / "train.txt", d / "dev.txt"
        out["sentences"] = int(subprocess.run(
            [sys.executable, __file__, "--generate", tmp, "--tokens", str(args.tokens),
             "--seed", str(args.seed)], check=True, capture_output=True, text=True).stdout)
        out["file_mb"] = round(train.stat().st_size / 1e6, 1)
        out["generate_seconds"] = round(time.perf_counter() - t0, 1)
        cfg = d / "bench.yaml"
        cfg.write_text(f"data: {{train: {train}, dev: {dev}}}\n"
                       "features: {window: 2, dim: 50, casing_dim: 5}\n"
                       "model: {hidden: [50], nonlinearity: tanh}\n"
                       "training: {epochs: 1, batch_size: 256, patience: null,"
                       " optimizer: {name: adam, lr: 0.001}}\n"
                       f"output: {{dir: {d / 'run'}}}\n", encoding="utf-8")
        nerwin = [sys.executable, "-m", "nerwin"]
        commands = {"data": [*nerwin, "data", str(train)],
                    "train": [*nerwin, "train", str(cfg), "--quiet"]}
        for name, cmd in commands.items():
            if name in args.skip:
                continue
            r = run(cmd, ROOT)
            r["peak_rss_mb"] = round(r["peak_rss_bytes"] / 1e6, 1)
            r["bytes_per_token"] = round(r["peak_rss_bytes"] / args.tokens, 1)
            r["argv"] = " ".join(["nerwin", *cmd[3:]])
            out[name] = r
        out["bench_process_peak_rss_mb"] = round(
            __import__("resource").getrusage(__import__("resource").RUSAGE_SELF).ru_maxrss
            / 1e3, 1)
        out["config"] = cfg.read_text(encoding="utf-8")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
