"""What a configuration costs per training token against another one, measured in one
process with the two interleaved, so that a busy machine slows both alike. Prints JSON.

    python bench/cost_ratio.py configs/conll2003_best.yaml              # against the plain
    python bench/cost_ratio.py configs/conll2003_best.yaml --set features.char_filters=30
    python bench/cost_ratio.py configs/conll2003_best.yaml --base configs/conll2003.yaml \
        --base-set training.batch_size=64 --set training.batch_size=64

Method: both configs are built as `nerwin train` builds them from the CoNLL-2003 train file
(``--data``; random word vectors: speed does not depend on their values), each with its own
network, Adam and shuffled batches. After a warm-up, ``--rounds`` rounds each run
``--steps`` training steps (forward, backward, Adam) of the base, then of the config, timing
each; the result is tokens per second of each over all rounds and ``ratio``, the config's
time per token over the base's ("× plain" in docs/speed.md). The base is by default
``configs/conll2003.yaml`` at the config's own batch size (the comparison is at the same
batch size). ``ratio_per_round`` shows how much the rounds agree; ``other_cpu_frac`` is the
CPU time other processes used meanwhile, in cores.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# isort: off
import speed  # noqa: E402  (first: sets the BLAS threads before numpy loads, as nerwin does)
# isort: on

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from nerwin.config import load_config  # noqa: E402
from nerwin.dataset import build_lexicon, read_split  # noqa: E402
from nerwin.model import new_model  # noqa: E402
from nerwin.optim import make_optimizer  # noqa: E402
from nerwin.windows import batches, sentence_batches  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class Trainer:
    """One config's network, optimiser and endless shuffled batches."""

    def __init__(self, config: str, overrides: list[str], data: str) -> None:
        cfg = load_config(config, [*overrides, f"data.train={data}", "data.dev=null",
                                   "data.test=null", "features.vectors=null",
                                   "features.freeze=false"])
        corpus = read_split(cfg, data)
        self.rng = np.random.default_rng(0)
        model = new_model(cfg, build_lexicon(cfg, corpus), self.rng)
        self.data = model.encode(corpus)
        self.y = model.targets(self.data.labels)
        self.net = model.net
        self.opt = make_optimizer("adam", self.net.params)
        self.batch_size = cfg.training.batch_size
        self.name = " ".join([config, *(f"--set {o}" for o in overrides)])
        self.seconds, self.tokens = 0.0, 0  # totals of the timed rounds
        self._batches: Any = iter(())

    def _next(self) -> tuple[np.ndarray, np.ndarray | None]:
        for _ in range(2):
            for b in self._batches:
                return b
            if self.net.head.sentence_loss:
                self._batches = sentence_batches(self.data.lengths, self.batch_size, self.rng)
            else:
                self._batches = ((i, None) for i in
                                 batches(len(self.data), self.batch_size, self.rng))
        raise RuntimeError("no batches")

    def run(self, steps: int) -> tuple[float, int]:
        """(seconds, tokens) of ``steps`` training steps."""
        tokens = 0
        t0 = time.perf_counter()
        for _ in range(steps):
            idx, lens = self._next()
            _, grads = self.net.loss_and_grads(self.data.rows(idx), self.y[idx], lens,
                                               train=True, rng=self.rng)
            self.opt.step(self.net.params, grads, 1e-3)
            tokens += len(idx)
        return time.perf_counter() - t0, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--base", default=str(ROOT / "configs" / "conll2003.yaml"))
    ap.add_argument("--base-set", dest="base_overrides", action="append", default=None,
                    help="overrides of --base (default: training.batch_size = the config's)")
    ap.add_argument("--data", default=str(speed.SHARED / "conll2003" / "train.txt"))
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=None,
                    help="BLAS threads (read before numpy loads; default 1)")
    args = ap.parse_args()
    if not Path(args.data).is_file():
        sys.exit(f"{args.data}: no such file (pass --data FILE)")

    config = Trainer(args.config, args.overrides, args.data)
    base_over = (args.base_overrides if args.base_overrides is not None
                 else [f"training.batch_size={config.batch_size}"])
    base = Trainer(args.base, base_over, args.data)
    snap0, wall0 = speed.cpu_snapshot(), time.perf_counter()
    for t in (base, config):
        t.run(20)  # warm-up
    per_round: list[float] = []
    for _ in range(args.rounds):
        per_token = []
        for t in (base, config):
            seconds, tokens = t.run(args.steps)
            t.seconds += seconds
            t.tokens += tokens
            per_token.append(seconds / tokens)
        per_round.append(per_token[1] / per_token[0])
    snap1, wall = speed.cpu_snapshot(), time.perf_counter() - wall0
    other = ((snap1[0] - snap0[0]) - (snap1[1] - snap0[1])) / wall
    bs, bt, cs, ct = base.seconds, base.tokens, config.seconds, config.tokens
    print(json.dumps({
        "command": "python " + " ".join(sys.argv),
        "base": base.name, "config": config.name,
        "base_batch_size": base.batch_size, "config_batch_size": config.batch_size,
        "base_tokens_per_s": round(bt / bs), "config_tokens_per_s": round(ct / cs),
        "ratio": round((cs / ct) / (bs / bt), 3),
        "ratio_per_round": [round(r, 3) for r in per_round],
        "ratio_median": round(statistics.median(per_round), 3),
        "other_cpu_frac": round(other, 3),
        "loadavg_1min": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "blas_threads": speed.blas_threads(),
        "cpu": speed.cpu_name(), "cores": os.cpu_count(), "numpy": np.__version__,
    }, indent=2))


if __name__ == "__main__":
    main()
