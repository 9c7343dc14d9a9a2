"""Speed of the CRF output layer (nerwin/nn/crf.py) alone, on CoNLL-like shapes. Prints JSON.

    python bench/crf_speed.py                      # sentence lengths of CoNLL-2003 train
    python bench/crf_speed.py --synthetic          # lengths drawn with CoNLL's mean (14.5)
    python bench/crf_speed.py --batch-sizes 32 256 --tags 9 --no-constraints

Method: shuffle the sentences (seed 0) and cut them into minibatches of whole sentences of at
most --batch-size tokens (a longer sentence is a batch alone), as the CRF head trains; give
every token random float32 scores (N(0, 3)) and every sentence a random valid IOB2 gold path.
Then time, over the first --tokens tokens of batches, (a) crf_nll_forward + crf_nll_backward,
(b) viterbi, and for reference (c) the softmax head's forward + backward on the same tokens;
report tokens/s (mean and 95 % interval over --repeats, and the best repeat: on a shared
machine the least disturbed one). The CRF's cost is to be compared with
the plain network's training step (bench/speed.py), which it is added to.
"""

from __future__ import annotations

from nerwin.threads import default_to_one_blas_thread

default_to_one_blas_thread()  # as the nerwin command does; before numpy is imported

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from nerwin.nn import crf, heads  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TAGS9 = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]


def conll_lengths(path: Path) -> np.ndarray:
    """Sentence lengths of a CoNLL file (blank line = end of sentence, -DOCSTART- skipped)."""
    lengths, n = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if n:
                lengths.append(n)
            n = 0
        elif not line.startswith("-DOCSTART-"):
            n += 1
    if n:
        lengths.append(n)
    return np.array(lengths)


def sentence_batches(lengths: np.ndarray, batch_size: int, rng) -> list[np.ndarray]:
    """Indices of whole sentences per batch, at most batch_size tokens (>= 1 sentence)."""
    out, cur, tok = [], [], 0
    for s in rng.permutation(len(lengths)):
        if cur and tok + lengths[s] > batch_size:
            out.append(np.array(cur))
            cur, tok = [], 0
        cur.append(s)
        tok += int(lengths[s])
    if cur:
        out.append(np.array(cur))
    return out


def timed(fn, tokens: int, repeats: int) -> list[float]:
    """Tokens/s of fn() over each of ``repeats`` runs, after one warm-up run."""
    fn()
    tps = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        tps.append(tokens / (time.perf_counter() - t0))
    return tps


def ci95(xs: list[float]) -> float:
    return 1.96 * statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED / "conll2003" / "train.txt"))
    ap.add_argument("--synthetic", action="store_true",
                    help="draw 14,000 sentence lengths 1 + Poisson(13.5) instead of --data")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--tags", type=int, choices=[3, 5, 9], default=9)
    ap.add_argument("--no-constraints", action="store_true")
    ap.add_argument("--tokens", type=int, default=40_000, help="tokens timed per repeat")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    if args.synthetic:
        lengths = 1 + rng.poisson(13.5, size=14_000)
        source = "synthetic: 1 + Poisson(13.5)"
    else:
        if not Path(args.data).is_file():
            sys.exit(f"{args.data}: no such file (pass --data FILE or --synthetic)")
        lengths = conll_lengths(Path(args.data))
        source = args.data
    tags = TAGS9[: args.tags]
    C = len(tags)
    con = None if args.no_constraints else crf.allowed_transitions(tags)
    trans = rng.normal(size=(C, C)).astype(np.float32)
    start, end = (rng.normal(size=C).astype(np.float32) for _ in range(2))
    inside = np.array([t.startswith("I-") for t in tags])

    results = []
    for bs in args.batch_sizes:
        batches = []
        done = 0
        for sents in sentence_batches(lengths, bs, rng):
            lens = lengths[sents]
            n = int(lens.sum())
            scores = rng.normal(scale=3.0, size=(n, C)).astype(np.float32)
            y = rng.integers(0, C, size=n)
            # A valid IOB2 gold path: an I- tag that does not continue its entity becomes B-.
            y_prev = np.concatenate([[0], y[:-1]])
            y_prev[np.cumsum(lens) - lens] = 0
            bad = inside[y] & (y_prev != y) & (y_prev != y - 1)
            y[bad] -= 1  # I-X sits right after B-X in TAGS9
            batches.append((scores, lens, y))
            done += n
            if done >= args.tokens:
                break

        def crf_train(batches=batches):
            for s, lens, y in batches:
                _, cache = crf.crf_nll_forward(s, lens, y, trans, start, end, con)
                crf.crf_nll_backward(cache)

        def crf_viterbi(batches=batches):
            for s, lens, _ in batches:
                crf.viterbi(s, lens, trans, start, end, con)

        def softmax_train(batches=batches):
            for s, _, y in batches:
                _, cache = heads.softmax_xent_forward(s, y)
                heads.softmax_xent_backward(cache)

        row = {"batch_size": bs, "batches": len(batches), "tokens": done,
               "mean_sentences_per_batch": round(
                   sum(len(b[1]) for b in batches) / len(batches), 2)}
        for name, fn in (("crf_forward_backward", crf_train), ("crf_viterbi", crf_viterbi),
                         ("softmax_forward_backward", softmax_train)):
            tps = timed(fn, done, args.repeats)
            row[name + "_tokens_per_s"] = round(statistics.mean(tps))
            row[name + "_tokens_per_s_ci95"] = round(ci95(tps))
            row[name + "_tokens_per_s_best"] = round(max(tps))  # least disturbed by load
            row[name + "_us_per_token"] = round(1e6 / statistics.mean(tps), 2)
        results.append(row)

    print(json.dumps({
        "command": "python " + " ".join(sys.argv),
        "lengths": source, "sentences": len(lengths),
        "mean_length": round(float(lengths.mean()), 2), "max_length": int(lengths.max()),
        "tags": C, "constraints": con is not None, "dtype": "float32",
        "results": results,
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "cores": os.cpu_count(), "numpy": np.__version__, "python": platform.python_version(),
    }, indent=2))


if __name__ == "__main__":
    main()
