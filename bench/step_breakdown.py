"""Where the time of one training step of the plain window network goes. Prints JSON.

    python bench/step_breakdown.py                    # batch 256, CoNLL-2003 train
    python bench/step_breakdown.py --batch-size 32

Method: the network of ``bench/speed.py`` without a config (window 5, word 50 + casing 5 per
position, 300 tanh units, softmax, Adam, random vectors), one batch of shuffled windows. Each
part of a step is called on its own, with the inputs a real step gives it, and timed as
``speed.time_op`` times the GEMM bound (the fastest of 5 loops); ``whole_step_us`` times the
real step (``loss_and_grads`` and ``Adam.step``) the same way. The parts are the same calls
the step makes, so their sum is close to the whole step; ``products_us`` is the matrix
products among them and ``gemm_bound_us`` the same products on fresh arrays (the bound of
bench/speed.py). What is left is the per-step cost of everything else.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# isort: off
import speed  # noqa: E402  (first: sets the BLAS threads before numpy loads, as nerwin does)
# isort: on

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from nerwin.config import from_dict  # noqa: E402
from nerwin.dataset import build_lexicon, read_split  # noqa: E402
from nerwin.model import new_model  # noqa: E402
from nerwin.nn import layers  # noqa: E402
from nerwin.nn.rowgrad import RowGrad  # noqa: E402
from nerwin.optim import make_optimizer  # noqa: E402
from nerwin.windows import batches  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(speed.SHARED / "conll2003" / "train.txt"))
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args()
    if not Path(args.data).is_file():
        sys.exit(f"{args.data}: no such file (pass --data FILE)")
    cfg = from_dict({"data": {"train": args.data}, "features": {"window": 2},
                     "model": {"hidden": [300], "decode": "argmax"},
                     "training": {"batch_size": args.batch_size}}, source="bench")
    corpus = read_split(cfg, args.data)
    rng = np.random.default_rng(0)
    model = new_model(cfg, build_lexicon(cfg, corpus), rng)
    data = model.encode(corpus)
    y = model.targets(data.labels)
    net, p = model.net, model.net.params
    opt = make_optimizer("adam", p)
    idx = next(batches(len(data), args.batch_size, rng))
    B, K = len(idx), net.spec.n_positions
    tables = [t.param for t in net.spec.tables]
    dims = [t.dim for t in net.spec.tables]
    ids = data.rows(idx)
    yb = y[idx]

    # One real pass, keeping every intermediate the parts below start from.
    x = np.concatenate([np.take(p[t], i, axis=0) for t, i in zip(tables, ids)],
                       axis=2).reshape(B, -1)
    z, _ = layers.affine_forward(x, p["W1"], p["b1"])
    a, _ = layers.tanh_forward(z)
    s, _ = layers.affine_forward(a, p["U"], p["c"])
    _, head_cache = net.head.loss(s, yb, None, p)
    delta, _ = net.head.backward(head_cache)
    dh, _, _ = layers.affine_backward(delta, (a, p["U"]))
    dz = layers.tanh_backward(dh, a)
    dx, _, _ = layers.affine_backward(dz, (x, p["W1"]))
    dx3 = dx.reshape(B, K, -1)
    offs = np.cumsum([0, *dims])
    _, grads = net.loss_and_grads(ids, yb, None, train=True, rng=rng)

    t = speed.time_op
    parts: dict[str, float] = {}
    parts["windows of the batch (data.rows)"] = t(lambda: data.rows(idx))
    parts["lookups and concatenation"] = t(lambda: np.concatenate(
        [np.take(p[tb], i, axis=0) for tb, i in zip(tables, ids)], axis=2))
    parts["product X W1ᵀ + b1"] = t(lambda: layers.affine_forward(x, p["W1"], p["b1"]))
    parts["tanh"] = t(lambda: layers.tanh_forward(z))
    parts["product H Uᵀ + c"] = t(lambda: layers.affine_forward(a, p["U"], p["c"]))
    parts["softmax cross-entropy and δ"] = t(
        lambda: net.head.backward(net.head.loss(s, yb, None, p)[1]))
    parts["products δU, δᵀH, Σδ (head)"] = t(lambda: layers.affine_backward(delta, (a, p["U"])))
    parts["tanh'"] = t(lambda: layers.tanh_backward(dh, a))
    parts["product δᵀX (dW1)"] = t(lambda: dz.T @ x)
    parts["product δW1 (dx)"] = t(lambda: dz @ p["W1"])
    parts["Σδ (db1)"] = t(lambda: dz.sum(axis=0))
    for tb, i, d, lo in zip(tables, ids, dims, offs[:-1]):
        parts[f"row-sparse gradient of {tb}"] = t(
            lambda i=i, d=d, lo=lo:
            RowGrad.from_ids(i.reshape(-1), dx3[:, :, lo: lo + d].reshape(-1, d)))
    # Adam on each parameter alone, on a copy (the state moves on; the time does not care).
    for name, g in grads.items():
        o = copy.deepcopy(opt)
        q = {name: p[name].copy()}  # step() reads only the parameters it has gradients for
        parts[f"Adam on {name}"] = t(lambda o=o, q=q, name=name, g=g: o.step(q, {name: g}, 1e-9))

    def step() -> None:
        _, gr = net.loss_and_grads(data.rows(idx), yb, None, train=True, rng=rng)
        opt.step(p, gr, 1e-9)

    whole = t(step)
    us = {k: round(v * 1e6, 1) for k, v in parts.items()}
    products = sum(v for k, v in us.items() if k.startswith("product"))
    sizes = [net.spec.input_dim, *net.spec.hidden, net.head.n_scores]
    bound = speed.gemm_seconds(B, sizes, train=True) * 1e6
    print(json.dumps({
        "command": "python " + " ".join(sys.argv), "batch_size": B,
        "parts_us": us, "sum_of_parts_us": round(sum(us.values()), 1),
        "whole_step_us": round(whole * 1e6, 1), "products_us": round(products, 1),
        "gemm_bound_us": round(bound, 1),
        "everything_else_us": round(whole * 1e6 - products, 1),
        "loadavg_1min": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "blas_threads": speed.blas_threads(), "cpu": speed.cpu_name(),
        "numpy": np.__version__,
    }, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
