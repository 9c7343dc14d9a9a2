"""How often `nerwin gradcheck` passes on a correct network, over seeds. Prints JSON.

    python bench/gradcheck_sweep.py                          # configs/sample.yaml, seeds 0-40
    python bench/gradcheck_sweep.py --seeds 15 --set training.l1=0.001
    python bench/gradcheck_sweep.py --config configs/lecture3.yaml

Each run is what `nerwin gradcheck CONFIG --seed S --set model.nonlinearity=X` does (8
windows, eps 1e-4, tol 1e-6). A correct derivation should pass every time; the counts of
entries left out as kinks or noisy show what the check could not judge.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nerwin.threads import default_to_one_blas_thread

default_to_one_blas_thread()

from nerwin.config import NONLINEARITIES, load_config  # noqa: E402
from nerwin.gradcheck import check_gradients, passed  # noqa: E402
from nerwin.model import gradcheck_batch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "sample.yaml"))
    ap.add_argument("--seeds", type=int, default=41, help="seeds 0 .. N-1")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--eps", type=float, default=1e-4)
    ap.add_argument("--tol", type=float, default=1e-6)
    args = ap.parse_args()

    results = {}
    for nl in NONLINEARITIES:
        cfg = load_config(args.config, [*args.overrides, f"model.nonlinearity={nl}"])
        fails, checked, kinks, noisy, worst = [], 0, 0, 0, 0.0
        for seed in range(args.seeds):
            net, inputs, y, lengths, rng = gradcheck_batch(cfg, 8, seed)
            rows = check_gradients(net, inputs, y, lengths=lengths, eps=args.eps, rng=rng,
                                   tol=args.tol)
            if not passed(rows, args.tol):
                fails.append(seed)
            checked += sum(r.checked for r in rows)
            kinks += sum(r.kinks for r in rows)
            noisy += sum(r.noisy for r in rows)
            worst = max(worst, max(r.max_rel_error for r in rows))
        results[nl] = {"runs": args.seeds, "failed_seeds": fails, "entries_checked": checked,
                       "entries_kinks": kinks, "entries_noisy": noisy,
                       "max_rel_error": worst}
    print(json.dumps({"command": "python " + " ".join(sys.argv), "config": args.config,
                      "overrides": args.overrides, "eps": args.eps, "tol": args.tol,
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
