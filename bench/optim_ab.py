"""A training step with this nerwin's optimiser against another version's, interleaved in one
process, on the same network and batches. Prints JSON.

    python bench/optim_ab.py --before ../old/nerwin/optim.py                 # plain, batch 256
    python bench/optim_ab.py --before ../old/nerwin/optim.py configs/conll2003_best.yaml

Method: two copies of CONFIG's network (as bench/cost_ratio.py builds them: random vectors,
the config's batch size; default configs/conll2003.yaml, the plain network of
bench/speed.py), one updated by Adam from ``--before`` (a file holding an older
``nerwin/optim.py``, loaded as a module of its own) and one by this ``nerwin.optim``, run in
turn, ``--rounds`` rounds of ``--steps`` steps each, so that a busy machine slows both alike.
Reports each one's tokens/s, the ratio of their time per token (before / after, > 1 = after
is faster), each one's fraction of the GEMM bound (bench/speed.py's, measured in the same
run), the optimiser step alone on one batch's gradients (fastest of several loops, µs, the
part that differs), and whether the two copies' weights are bit-identical at the end (they
run the same batches from the same seed, so they must be when the optimisers do the same
arithmetic).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# isort: off
import speed  # noqa: E402  (first: sets the BLAS threads before numpy loads, as nerwin does)
# isort: on

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from cost_ratio import Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load_module(path: str) -> object:
    """The optimiser module in the file ``path``, under a name of its own."""
    spec = importlib.util.spec_from_file_location("optim_before", path)
    if spec is None or spec.loader is None:
        sys.exit(f"{path}: cannot load it as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def optimiser_step_us(before: Trainer, after: Trainer) -> dict[str, float]:
    """The optimiser step alone, on the gradients of one real batch, µs: each optimiser
    timed in loops of about 3 ms, 10 loops, in turn, 10 times; the fastest loop kept. The
    weights it moves are copies: the runs above are not disturbed."""
    idx, lens = after._next()
    _, grads = after.net.loss_and_grads(after.data.rows(idx), after.y[idx], lens, train=True,
                                        rng=np.random.default_rng(1))
    arms = {}
    for name, t in (("before", before), ("after", after)):
        params = {k: v.copy() for k, v in t.net.params.items()}
        opt = type(t.opt)(dict(params))  # same class and defaults as the run's (Adam)
        arms[name] = (opt, params)
    best = {name: float("inf") for name in arms}
    # Short loops, many of them, in turn: on a shared machine some run undisturbed.
    for _ in range(10):
        for name, (opt, params) in arms.items():
            seconds = speed.time_op(lambda opt=opt, params=params: opt.step(params, grads, 1e-3),
                                    repeats=10, loop_s=0.003)
            best[name] = min(best[name], seconds)
    return {name: round(s * 1e6, 1) for name, s in best.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default=str(ROOT / "configs" / "conll2003.yaml"))
    ap.add_argument("--before", required=True, help="an older nerwin/optim.py")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--data", default=str(speed.SHARED / "conll2003" / "train.txt"))
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=None,
                    help="BLAS threads (read before numpy loads; default 1)")
    args = ap.parse_args()
    for path in (args.data, args.before):
        if not Path(path).is_file():
            sys.exit(f"{path}: no such file")
    before_module = load_module(args.before)

    before = Trainer(args.config, args.overrides, args.data)
    before.opt = before_module.make_optimizer("adam", dict(before.net.params))
    after = Trainer(args.config, args.overrides, args.data)
    snap0, wall0 = speed.cpu_snapshot(), time.perf_counter()
    for t in (before, after):
        t.run(20)  # warm-up
    per_round: list[float] = []
    for _ in range(args.rounds):
        per_token = []
        for t in (before, after):
            seconds, tokens = t.run(args.steps)
            t.seconds += seconds
            t.tokens += tokens
            per_token.append(seconds / tokens)
        per_round.append(per_token[0] / per_token[1])
    step_us = optimiser_step_us(before, after)
    spec = after.net.spec
    sizes = [spec.input_dim, *spec.hidden, spec.make_head().n_scores]
    bound = after.batch_size / speed.gemm_seconds(after.batch_size, sizes, train=True)
    snap1, wall = speed.cpu_snapshot(), time.perf_counter() - wall0
    other = ((snap1[0] - snap0[0]) - (snap1[1] - snap0[1])) / wall
    identical = all(np.array_equal(before.net.params[k], after.net.params[k])
                    for k in after.net.params)
    tps = {name: t.tokens / t.seconds for name, t in (("before", before), ("after", after))}
    print(json.dumps({
        "command": "python " + " ".join(sys.argv),
        "config": after.name, "batch_size": after.batch_size,
        "before_tokens_per_s": round(tps["before"]), "after_tokens_per_s": round(tps["after"]),
        "speedup": round(tps["after"] / tps["before"], 3),
        "speedup_per_round": [round(r, 3) for r in per_round],
        "speedup_median": round(statistics.median(per_round), 3),
        "optimiser_step_us": step_us,
        "gemm_bound_tokens_per_s": round(bound),
        "before_fraction_of_gemm_bound": round(tps["before"] / bound, 3),
        "after_fraction_of_gemm_bound": round(tps["after"] / bound, 3),
        "weights_identical": identical,
        "other_cpu_frac": round(other, 3),
        "loadavg_1min": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "blas_threads": speed.blas_threads(),
        "cpu": speed.cpu_name(), "cores": os.cpu_count(), "numpy": np.__version__,
    }, indent=2))


if __name__ == "__main__":
    main()
