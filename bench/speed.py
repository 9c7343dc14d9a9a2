"""Training and tagging speed, and peak memory, of the window network, against the GEMM
bound of the same shapes measured in the same run. Prints JSON.

    python bench/speed.py                       # CoNLL-2003 train from ../shared/data
    python bench/speed.py --batch-size 256 --decode argmax
    python bench/speed.py --data data/sample/train.txt --hidden 100
    python bench/speed.py --config configs/conll2003_best.yaml --set training.batch_size=32
    python bench/speed.py --threads 2           # BLAS threads (nerwin's default is 1)

Method: build the lexicon and windows as `nerwin train` does, warm up, then time
`--repeats` runs of `--steps` optimiser steps (forward, backward, Adam) and one tagging pass
over the whole file; report the mean and a 95 % confidence interval over the repeats, and
the best repeat (on a shared machine, the least disturbed one).
With ``--config`` the network, features, head and batch size are the config's (its
``features.vectors`` is ignored: random vectors, as without a config; speed does not depend
on the values), and ``--data`` still names the file that is timed. Tokens per second count
tokens of the batches (windows for per-token heads, tokens of whole sentences for crf).

The GEMM bound: with numpy's own BLAS, the matrix products alone of one training step of
the configured shapes (forward X W_iᵀ and U, backward δᵀX, δW for every layer, the first
layer's δW_1 included as the embeddings need it) at the training batch size, and of a
forward pass at the tagging batch size (nerwin.model.PREDICT_BATCH), each product timed in
loops and the fastest loop kept (as ../shared/peers/gemm_limit.py does): the speed an
implementation that only multiplied matrices would reach.
``train_fraction_of_gemm_bound`` and ``tag_fraction_of_gemm_bound`` are nerwin's tokens/s
over that bound's (tagging can exceed 1: it skips the first layer's product, see
nerwin.nn.project). The character encoder's convolution is not part of the bound.
``other_cpu_frac`` is the CPU time other processes used meanwhile, in cores (near 0 =
a clean measurement).
"""

from __future__ import annotations

import os
import sys


def _threads_from_argv(argv: list[str]) -> str | None:
    """--threads N / --threads=N, read before numpy loads (the variables only work then)."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return None


_THREADS = _threads_from_argv(sys.argv[1:])
if _THREADS is not None:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _THREADS

from nerwin.allocator import keep_freed_memory  # noqa: E402
from nerwin.threads import blas_threads, default_to_one_blas_thread  # noqa: E402

default_to_one_blas_thread()  # as the nerwin command does; before numpy is imported
keep_freed_memory()  # so does this (nerwin/allocator.py)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from nerwin.config import from_dict, load_config  # noqa: E402
from nerwin.dataset import build_lexicon, read_split  # noqa: E402
from nerwin.model import PREDICT_BATCH, new_model  # noqa: E402
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


def cpu_snapshot() -> tuple[float, float]:
    """(CPU seconds the whole machine has been busy, this process's CPU seconds)."""
    hz = os.sysconf("SC_CLK_TCK")
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / hz
    except OSError:
        busy = float("nan")
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return busy, ru.ru_utime + ru.ru_stime


def time_op(fn: Any, repeats: int = 5, loop_s: float = 0.03) -> float:
    """Seconds per call of ``fn``: the fastest of ``repeats`` loops of about ``loop_s``."""
    fn()
    fn()
    k = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        if time.perf_counter() - t0 >= loop_s or k >= 1 << 16:
            break
        k *= 2
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        best = min(best, (time.perf_counter() - t0) / k)
    return best


def gemm_sizes(net: Any) -> list[int]:
    """[D, H_1, …, H_k, C]: the widths of the network's chain of products (x, each block,
    the scores)."""
    return [net.spec.input_dim, *(b.n_out for b in net.blocks), net.head.n_scores]


def gemm_madds(B: int, sizes: list[int], train: bool = False) -> int:
    """Multiply-adds of the products :func:`gemm_seconds` times: B·n_in·n_out per layer
    forward, three times that with ``train`` (Z = X Wᵀ, dW = δᵀX, dX = δW)."""
    fwd = sum(B * a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return 3 * fwd if train else fwd


def gemm_seconds(B: int, sizes: list[int], train: bool, dtype: type = np.float32) -> float:
    """Seconds of the matrix products alone of one batch of B windows through layers of
    ``sizes`` = [D, H_1, …, H_k, C] (weights (fan_out, fan_in), as nerwin stores them):
    forward Z = X Wᵀ per layer; with ``train`` also dW = δᵀX and dX = δW per layer."""
    rng = np.random.default_rng(0)
    total = 0.0
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        X = rng.standard_normal((B, n_in)).astype(dtype)
        W = rng.standard_normal((n_out, n_in)).astype(dtype)
        D = rng.standard_normal((B, n_out)).astype(dtype)
        Z = np.empty((B, n_out), dtype)
        total += time_op(lambda X=X, W=W, Z=Z: np.matmul(X, W.T, out=Z))
        if train:
            dW = np.empty((n_out, n_in), dtype)
            dX = np.empty((B, n_in), dtype)
            total += time_op(lambda D=D, X=X, dW=dW: np.matmul(D.T, X, out=dW))
            total += time_op(lambda D=D, W=W, dX=dX: np.matmul(D, W, out=dX))
    return total


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
    ap.add_argument("--decode", choices=["viterbi", "argmax"], default=None,
                    help="the softmax head's decoder (default: the config's, else viterbi)")
    ap.add_argument("--threads", type=int, default=None,
                    help="BLAS threads (sets OPENBLAS_NUM_THREADS etc.; default 1)")
    args = ap.parse_args()
    if not Path(args.data).is_file():
        sys.exit(f"{args.data}: no such file (pass --data FILE)")

    if args.config:
        cfg = load_config(args.config, [*args.overrides, f"data.train={args.data}",
                                        "data.dev=null", "data.test=null",
                                        "features.vectors=null", "features.freeze=false",
                                        *([f"model.decode={args.decode}"] if args.decode
                                          else [])])
        args.window, args.batch_size = cfg.features.window, cfg.training.batch_size
        args.hidden = list(cfg.model.hidden)
    else:
        cfg = from_dict({"data": {"train": args.data},
                         "features": {"window": args.window},
                         "model": {"hidden": [args.hidden],
                                   **({"decode": args.decode} if args.decode else {})},
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

    snap0, wall0 = cpu_snapshot(), time.perf_counter()
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

    # The GEMM bound of the same shapes, in the same process and BLAS set-up.
    sizes = gemm_sizes(net)
    train_bound = args.batch_size / gemm_seconds(args.batch_size, sizes, train=True)
    tag_batch = min(PREDICT_BATCH, len(data))
    tag_bound = tag_batch / gemm_seconds(tag_batch, sizes, train=False)
    snap1, wall = cpu_snapshot(), time.perf_counter() - wall0
    other = ((snap1[0] - snap0[0]) - (snap1[1] - snap0[1])) / wall
    train_mean, tag_mean = statistics.mean(train_tps), statistics.mean(tag_tps)

    print(json.dumps({
        "command": "python " + " ".join(sys.argv), "config": args.config,
        "overrides": args.overrides, "head": cfg.model.head,
        "features": [f.name for f in lex.features],
        "data": args.data, "tokens": len(data), "vocabulary": len(lex.words),
        "window": args.window, "hidden": args.hidden, "batch_size": args.batch_size,
        "decode": net.head.decoder, "tag_batch": tag_batch,
        "train_tokens_per_s": round(train_mean),
        "train_tokens_per_s_ci95": round(ci95(train_tps)),
        "train_tokens_per_s_best": round(max(train_tps)),  # least disturbed repeat
        "train_gemm_bound_tokens_per_s": round(train_bound),
        "train_fraction_of_gemm_bound": round(train_mean / train_bound, 3),
        "tag_tokens_per_s": round(tag_mean),
        "tag_tokens_per_s_ci95": round(ci95(tag_tps)),
        "tag_tokens_per_s_best": round(max(tag_tps)),
        "tag_gemm_bound_tokens_per_s": round(tag_bound),
        "tag_fraction_of_gemm_bound": round(tag_mean / tag_bound, 3),
        "other_cpu_frac": round(other, 3),
        "loadavg_1min": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "blas_threads": blas_threads() or os.environ.get("OPENBLAS_NUM_THREADS"),
        "cpu": cpu_name(), "cores": os.cpu_count(), "numpy": np.__version__,
        "python": platform.python_version(),
    }, indent=2))


if __name__ == "__main__":
    main()
