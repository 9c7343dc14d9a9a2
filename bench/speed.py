"""Training and tagging speed, and peak memory, of the window network. Prints JSON.

    python bench/speed.py                       # CoNLL-2003 train from ../shared/data
    python bench/speed.py --data data/sample/train.txt --hidden 100
    python bench/speed.py --config configs/conll2003_best.yaml --set training.batch_size=32
    OPENBLAS_NUM_THREADS=2 python bench/speed.py   # BLAS threads (nerwin's CLI defaults to 1)

Method: build the lexicon and windows as `nerwin train` does, warm up, then time
`--repeats` runs of `--steps` optimiser steps (forward, backward, Adam) and one tagging pass
over the whole file; report the mean and a 95 % confidence interval over the repeats, and
the best repeat (on a shared machine, the least disturbed one).
With ``--config`` the network, features, head and batch size are the config's (its
``features.vectors`` is ignored: random vectors, as without a config; speed does not depend
on the values), and ``--data`` still names the file that is timed. Tokens per second count
tokens of the batches (windows for per-token heads, tokens of whole sentences for crf).
"""

from __future__ import annotations

import os

from nerwin.threads import default_to_one_blas_thread

default_to_one_blas_thread()  # as the nerwin command does; before numpy is imported

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from nerwin.config import from_dict, load_config  # noqa: E402
from nerwin.dataset import build_lexicon, read_split  # noqa: E402
from nerwin.model import new_model  # noqa: E402
from nerwin.optim import make_optimizer  # noqa: E402
from nerwin.windows import batches, sentence_batches  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ci95(xs: list[float]) -> float:
    return 1.96 * statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED / "conll2003" / "train.txt"))
    ap.add_argument("--config", default=None,
                    help="take the network, features, head and batch size from this config")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="override a key of --config, e.g. training.batch_size=32")
    ap.add_argument("--window", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if not Path(args.data).is_file():
        sys.exit(f"{args.data}: no such file (pass --data FILE)")

    if args.config:
        cfg = load_config(args.config, [*args.overrides, f"data.train={args.data}",
                                        "data.dev=null", "data.test=null",
                                        "features.vectors=null", "features.freeze=false"])
        args.window, args.batch_size = cfg.features.window, cfg.training.batch_size
        args.hidden = list(cfg.model.hidden)
    else:
        cfg = from_dict({"data": {"train": args.data},
                         "features": {"window": args.window},
                         "model": {"hidden": [args.hidden]},
                         "training": {"batch_size": args.batch_size}}, source="bench")
    corpus = read_split(cfg, args.data)
    lex = build_lexicon(cfg, corpus)
    rng = np.random.default_rng(0)
    model = new_model(cfg, lex, rng)
    data = model.encode(corpus)
    y = model.targets(data.labels)
    net = model.net
    opt = make_optimizer("adam", net.params)

    def epoch() -> list:
        if net.head.sentence_loss:
            return list(sentence_batches(data.lengths, args.batch_size, rng))
        return [(idx, None) for idx in batches(len(data), args.batch_size, rng)]

    def run_steps(n: int) -> tuple[float, int]:
        t0 = time.perf_counter()
        done = tokens = 0
        while done < n:
            for idx, lens in epoch():
                _, grads = net.loss_and_grads(data.rows(idx), y[idx], lens, train=True,
                                              rng=rng)
                opt.step(net.params, grads, 1e-3)
                done += 1
                tokens += len(idx)
                if done == n:
                    break
        return time.perf_counter() - t0, tokens

    run_steps(50)  # warm-up
    train_tps = []
    for _ in range(args.repeats):
        seconds, tokens = run_steps(args.steps)
        train_tps.append(tokens / seconds)
    tag_tps = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        model.predict_ids(data)
        tag_tps.append(len(data) / (time.perf_counter() - t0))

    print(json.dumps({
        "command": "python " + " ".join(sys.argv), "config": args.config,
        "overrides": args.overrides, "head": cfg.model.head,
        "features": [f.name for f in lex.features],
        "data": args.data, "tokens": len(data), "vocabulary": len(lex.words),
        "window": args.window, "hidden": args.hidden, "batch_size": args.batch_size,
        "train_tokens_per_s": round(statistics.mean(train_tps)),
        "train_tokens_per_s_ci95": round(ci95(train_tps)),
        "train_tokens_per_s_best": round(max(train_tps)),  # least disturbed repeat
        "tag_tokens_per_s": round(statistics.mean(tag_tps)),
        "tag_tokens_per_s_ci95": round(ci95(tag_tps)),
        "tag_tokens_per_s_best": round(max(tag_tps)),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "cpu": cpu_name(), "cores": os.cpu_count(), "numpy": np.__version__,
        "python": platform.python_version(),
    }, indent=2))


if __name__ == "__main__":
    main()
