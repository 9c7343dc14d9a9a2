"""How much memory a configured model needs, checked before anything is allocated.

A window of a million words or a hidden layer of 10⁹ units is a valid integer, and numpy
would fail on it with a MemoryError deep inside initialisation (or the machine would swap
for an hour). :func:`check_memory` adds up what training will hold at once and refuses,
naming the config key most responsible, when it exceeds the memory this machine has free.

The estimate (bytes; s = the parameters' item size, 4 in training, 8 in gradcheck;
B = rows of the largest batch; D = (2m+1)(d + d_case) the input width; P the parameter
count, of which P_dense outside the embedding tables):

  parameters       s·P
  gradients        s·(P_dense + min(V, B(2m+1))·d)     embedding gradients are row-sparse
  optimiser state  s·slots·P                          adam 2, adagrad/rmsprop 1, sgd 0-1
  initialisation   8·max(parameter size)              draws are float64, then cast
  one batch        s·B·(3D + 4ΣH + 3·n_out)           x, its gradient, the gathered rows;
                                                      Z, H, mask, δ per layer; scores, p, δ
  projections      s·H_1·Σ_f rows_f, at most 256 MiB   the first layer precomputed for each
                                                      evaluation (nerwin.nn.project): per
                                                      lookup table n_f·(2m+1) rows, or n_f^(2m+1)
                                                      when combined over positions
  token arrays     (4F + 20)·N + (10 + 4F)·B(2m+1)    per token: an int32 id per feature (F
                                                      tables), token and tag ids of the read
                                                      file, the labels, the shuffled order
                                                      (int64); per batch: the window
                                                      positions (int64), their two pad masks
                                                      and each feature's (B, 2m+1) ids

It is an estimate of the order of magnitude (a few tens of percent), which is all a
refusal needs: a config that is refused is off by far more.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from nerwin.config import Config, ConfigError
from nerwin.nn import project
from nerwin.nn.network import NetSpec
from nerwin.optim import OPTIMIZERS

#: Used when the free memory cannot be read (no /proc/meminfo, no sysconf).
FALLBACK_LIMIT = 8 * 2**30
#: Rows of one evaluation batch (nerwin.model.PREDICT_BATCH; repeated to avoid an import
#: cycle, checked equal by a test).
EVAL_BATCH = 4096
#: The keys that size the model; each is compared at a usual value to find the culprit
#: (see check_memory), the first three are the usual remedies.
SIZE_KEYS = ("features.window", "features.dim", "model.hidden", "features.casing_dim",
             "features.affix_dim", "features.shape_dim", "features.char_filters",
             "features.char_dim", "features.char_width", "features.char_max_len",
             "training.batch_size")


def available_bytes() -> int:
    """Memory this process may still use: MemAvailable, else free pages, else 8 GiB."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return FALLBACK_LIMIT


def estimate_bytes(spec: NetSpec, *, optimizer: str, momentum: float, batch_size: int,
                   n_windows: int, itemsize: int = 4) -> dict[str, int]:
    """The parts of the estimate in the module docstring, in bytes (plain Python ints, so a
    window of 10¹² words does not overflow)."""
    params = spec.params()
    sizes = {p.name: p.size for p in params}
    total = sum(sizes.values())
    sparse = [p for p in params if p.row_sparse]  # gradients only on the batch's rows
    dense = total - sum(p.size for p in sparse)
    slots = OPTIMIZERS[optimizer].slots_for(momentum=momentum)  # moment arrays per parameter
    k = spec.n_positions
    b = max(1, min(batch_size, max(1, n_windows)), min(EVAL_BATCH, n_windows))
    sparse_rows = sum(min(p.shape[0], b * k) * p.shape[1] for p in sparse)
    return {
        "parameters": itemsize * total,
        "gradients": itemsize * (dense + sparse_rows),
        "optimiser state": itemsize * slots * total,
        "initialisation": 8 * max(sizes.values()),
        "one batch": itemsize * b * (3 * spec.input_dim + sum(blk.batch_floats()
                                                               for blk in spec.blocks())
                                     + 3 * spec.n_out),
        "projections": _projection_bytes(spec, itemsize),
        "token arrays": (4 * len(spec.tables) + 20) * n_windows
        + (10 + 4 * len(spec.tables)) * b * k
        # a character table's feature holds max_len int16 ids a token, not one int32
        + sum((2 * getattr(t, "max_len", 2) - 4) * (n_windows + b * k) for t in spec.tables),
    }


def _projection_bytes(spec: NetSpec, itemsize: int) -> int:
    """The most the precomputed first-layer projections of one evaluation can take: every
    lookup table's rows (as nerwin.nn.project lays them out), within project.MAX_BYTES. (A
    table is left out when it has more rows than the evaluation has tokens; not knowing
    those, count it.)"""
    blocks = spec.blocks()
    if not blocks or not blocks[0].projectable:
        return 0
    k = spec.n_positions
    rows = 0
    for t in spec.tables:
        if t.precomputable:
            combined = project.combined_rows(t.n_rows, k)
            rows += combined if combined is not None else t.n_rows * k
    return min(rows * blocks[0].n_out * itemsize, project.MAX_BYTES)


def _fmt(n: int) -> str:
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n / 10**3:,.1f} kB"


def check_memory(cfg: Config, spec: NetSpec, n_windows: int, itemsize: int = 4,
                 limit: int | None = None) -> dict[str, int]:
    """Refuse (ConfigError naming the key most responsible) a model whose estimate exceeds
    ``limit`` (default: :func:`available_bytes`); return the estimate otherwise."""
    o = cfg.training.optimizer

    def estimate(s: NetSpec, batch_size: int) -> dict[str, int]:
        return estimate_bytes(s, optimizer=o.name, momentum=o.momentum, batch_size=batch_size,
                              n_windows=n_windows, itemsize=itemsize)

    parts = estimate(spec, cfg.training.batch_size)
    total = sum(parts.values())
    limit = available_bytes() if limit is None else limit
    if total <= limit:
        return parts
    # The culprit: the key whose usual value would shrink the estimate the most (a key
    # whose table the model does not have saves nothing).
    def tables(change: dict[str, int], key: str = "") -> NetSpec:
        # The tables that config key sets (each table knows its dim's key), else those
        # that have the changed fields (the character encoder's filters, width, max_len).
        new = tuple(dataclasses.replace(t, **{k: min(v, getattr(t, k)) for k, v in
                                              change.items()})
                    if (t.dim_key == key if key else all(hasattr(t, k) for k in change))
                    else t for t in spec.tables)
        return dataclasses.replace(spec, tables=new)

    widths = [t.width for t in spec.tables if hasattr(t, "width")]
    usual = {"features.window": dataclasses.replace(spec, window=min(spec.window, 2)),
             "features.dim": tables({"dim": 50}, "features.dim"),
             "model.hidden": dataclasses.replace(spec, hidden=tuple(min(h, 100)
                                                                    for h in spec.hidden)),
             "features.casing_dim": tables({"dim": 5}, "features.casing_dim"),
             "features.affix_dim": tables({"dim": 20}, "features.affix_dim"),
             "features.shape_dim": tables({"dim": 20}, "features.shape_dim"),
             "features.char_filters": tables({"filters": 50}),
             "features.char_dim": tables({"dim": 25}, "features.char_dim"),
             "features.char_width": tables({"width": 3}),
             # the width must still fit in max_len
             "features.char_max_len": tables({"max_len": max([20, *widths])})}
    saved = {key: total - sum(estimate(smaller, cfg.training.batch_size).values())
             for key, smaller in usual.items()}
    saved["training.batch_size"] = total - sum(
        estimate(spec, min(cfg.training.batch_size, 32)).values())
    # Ties (nothing would help: a machine with little memory) go to the first key.
    ranked = sorted(saved, key=lambda kk: (-saved[kk], SIZE_KEYS.index(kk)))
    key = ranked[0]
    section, name = key.split(".")
    value = getattr(getattr(cfg, section), name)
    value = list(value) if isinstance(value, tuple) else value
    biggest = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])
                        if v >= total // 10)
    # The alternatives: the next keys that would help, else the usual remedies.
    helpful = [k for k in ranked[1:] if saved[k] > saved[key] // 100 and saved[k] > 0]
    others = ", ".join(helpful[:2] or [k for k in SIZE_KEYS[:3] if k != key][:2])
    raise ConfigError(cfg.source, key, f"{value!r} makes the model too big: it would need "
                      f"about {_fmt(total)} ({biggest}) but {_fmt(limit)} of memory is free; "
                      f"lower {key} (or {others})")
