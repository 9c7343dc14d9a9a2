"""Do one and two (or N) BLAS threads give the same products, and which is faster, for the
matrix shapes a window network multiplies? Prints JSON.

    python bench/threads.py
    python bench/threads.py --threads 4 --shape 256 600 300

Method: for each (M, K, N) -- by default the products of a training step of the plain
network (window 5 × 55 inputs, 300 units, 9 tags), of the best config (375 inputs) and of
the previous release's best config (600 inputs) at batches of 32, 64, 256 and 1,024, the
forward product at the tagging batch of 4,096, and the first-layer projections of a
17,495-word table -- float32 A (M, K) @ B (K, N) is computed
with 1 thread and with ``--threads`` threads (set in one process through OpenBLAS's own
call, nerwin.threads.set_blas_threads) and compared bit for bit; each is timed as
bench/speed.py times the GEMM bound (fastest of 5 loops). ``identical`` false means a run
with another thread count can give other weights in the last bits.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# isort: off
import speed  # noqa: E402  (first: sets the BLAS threads before numpy loads, as nerwin does)
# isort: on

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from nerwin.threads import set_blas_threads  # noqa: E402

SHAPES = [(B, K, 300) for B in (32, 64, 256, 1024) for K in (275, 375, 600)] + [
    (300, 256, 275), (256, 300, 275), (256, 300, 9), (4096, 300, 9), (17495, 50, 1500)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shape", type=int, nargs=3, action="append", metavar=("M", "K", "N"))
    args = ap.parse_args()
    if not set_blas_threads(1):
        sys.exit("cannot set the BLAS thread count (numpy without its bundled OpenBLAS)")
    rng = np.random.default_rng(0)
    rows = []
    for M, K, N in args.shape or SHAPES:
        a = rng.standard_normal((M, K)).astype(np.float32)
        b = rng.standard_normal((K, N)).astype(np.float32)
        out: dict[int, tuple[np.ndarray, float]] = {}
        for n in (1, args.threads):
            set_blas_threads(n)
            out[n] = (a @ b, speed.time_op(lambda a=a, b=b: a @ b))
        set_blas_threads(1)
        (p1, t1), (pn, tn) = out[1], out[args.threads]
        rows.append({"shape": [M, K, N], "identical": bool(np.array_equal(p1, pn)),
                     "max_abs_diff": float(np.abs(p1 - pn).max()),
                     "us_1_thread": round(t1 * 1e6, 1),
                     f"us_{args.threads}_threads": round(tn * 1e6, 1),
                     "speedup": round(t1 / tn, 2)})
    print(json.dumps({
        "command": "python " + " ".join(sys.argv), "threads": args.threads, "products": rows,
        "loadavg_1min": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": speed.cpu_name(), "cores": os.cpu_count(), "numpy": np.__version__,
    }, indent=1))


if __name__ == "__main__":
    main()
