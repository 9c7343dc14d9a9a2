"""Pictures: a run's learning curves and a tag confusion matrix, as PNG or SVG.

matplotlib is an optional extra (``pip install 'nerwin[plot]'``) and is imported here only,
when a picture is asked for; the figures are built with matplotlib's object API on the Agg
canvas, so no display and no pyplot global state are involved.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

from nerwin.atomic import atomic_write_bytes, check_destination
from nerwin.errors import NerwinError, os_error, utf8_error

FORMATS = (".png", ".svg")
INSTALL_HINT = "pip install 'nerwin[plot]'"


def _figure_class() -> Any:
    """matplotlib's Figure, or a one-line error saying how to install it."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise NerwinError(f"pictures need matplotlib: {INSTALL_HINT}") from None
    return Figure


# What learning_curves reads from each record besides 'epoch' (a missing key or null is a
# gap in its curve). Numbers are int or float, never bool.
_NUMBERS = ("train_loss", "dev_loss", "dev_f1", "lr")
_METRICS_WHAT = "a run directory written by `nerwin train`"


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_record(rec: Any) -> str | None:
    """What is wrong with one metrics record, in words, or None when it can be drawn."""
    if not isinstance(rec, dict):
        return f"expected a JSON object, got {type(rec).__name__}"
    epoch = rec.get("epoch")
    if "epoch" not in rec:
        return "no 'epoch' key"
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 1 <= epoch <= 10**9:
        return f"'epoch' must be a positive integer, got {epoch!r:.40}"
    for key in _NUMBERS:
        if rec.get(key) is not None and not _is_number(rec[key]):
            return f"{key!r} must be a number or null, got {rec[key]!r:.40}"
    per_type = rec.get("dev_per_type_f1")
    if per_type is not None:
        if not isinstance(per_type, dict):
            return f"'dev_per_type_f1' must be an object, got {per_type!r:.40}"
        for t, v in per_type.items():
            if v is not None and not _is_number(v):
                return f"'dev_per_type_f1' of {t!r:.40} must be a number, got {v!r:.40}"
    if "best" in rec and not isinstance(rec["best"], bool):
        return f"'best' must be true or false, got {rec['best']!r:.40}"
    return None


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of ``RUN_DIR/metrics.jsonl``, one per epoch (the last wins).

    A line torn by a crash (not JSON, and the file does not end in a newline) is skipped
    only if it is the last line. Anything else that is not a record ``nerwin train``
    writes (invalid UTF-8, not JSON, a missing key, a value of the wrong type) is a
    one-line NerwinError naming the file and the line.
    """
    path = Path(run_dir) / "metrics.jsonl"
    try:
        if not os.path.lexists(path):
            raise FileNotFoundError(path)
        if not path.is_file():  # a FIFO would block the read; a folder cannot be read
            kind = "a folder" if path.is_dir() else "not a regular file"
            raise NerwinError(f"{path}: is {kind}; expected the metrics of "
                              f"{_METRICS_WHAT}")
        data = path.read_bytes()
    except FileNotFoundError:
        raise NerwinError(f"{path}: no such file; expected {_METRICS_WHAT}") from None
    except OSError as e:
        raise os_error(path, e, f"the metrics of {_METRICS_WHAT}") from None
    lines = data.split(b"\n")
    torn_tail = not data.endswith(b"\n")
    by_epoch: dict[int, dict[str, Any]] = {}
    for i, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise utf8_error(path, i, e, raw, "metrics.jsonl") from None
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError) as e:
            if i == len(lines) and torn_tail:
                continue  # the last line, cut short by a crash mid-write
            why = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
            raise NerwinError(f"{path}:{i}: not a metrics record: not valid JSON ({why}); "
                              f"expected one JSON object a line, as `nerwin train` writes "
                              f"them") from None
        problem = _check_record(rec)
        if problem is not None:
            raise NerwinError(f"{path}:{i}: not a metrics record: {problem}") from None
        by_epoch[rec["epoch"]] = rec
    if not by_epoch:
        raise NerwinError(f"{path}: no epochs recorded yet")
    return [by_epoch[e] for e in sorted(by_epoch)]


def best_epoch(records: list[dict[str, Any]]) -> int | None:
    """The epoch whose model is in best/: the last one flagged ``best`` (else max dev F1)."""
    flagged = [r["epoch"] for r in records if r.get("best")]
    if flagged:
        return int(flagged[-1])
    scored = [r for r in records if r.get("dev_f1") is not None]
    return int(max(scored, key=lambda r: r["dev_f1"])["epoch"]) if scored else None


def learning_curves(records: list[dict[str, Any]], title: str = "") -> Any:
    """A Figure with three axes, one point per epoch: losses, dev F1 (overall and per
    type), learning rate; the best epoch is a dotted vertical line on each and a star on
    the F1 curve."""
    Figure = _figure_class()
    fig = Figure(figsize=(11, 3.4), dpi=80, layout="constrained")
    ax_loss, ax_f1, ax_lr = fig.subplots(1, 3)
    epochs = [r["epoch"] for r in records]

    def series(key: str) -> list[float | None]:
        return [r.get(key) for r in records]

    ax_loss.plot(epochs, series("train_loss"), "o-", label="train loss")
    if any(v is not None for v in series("dev_loss")):
        ax_loss.plot(epochs, series("dev_loss"), "s-", label="dev loss")
    ax_loss.set(title="Loss", xlabel="epoch", ylabel="mean cross-entropy")
    ax_loss.legend()

    if any(v is not None for v in series("dev_f1")):
        ax_f1.plot(epochs, series("dev_f1"), "o-", color="black", linewidth=2,
                   label="dev F1 (all)")
        types = sorted({t for r in records for t in (r.get("dev_per_type_f1") or {})})
        for t in types:
            ax_f1.plot(epochs, [(r.get("dev_per_type_f1") or {}).get(t) for r in records],
                       ".--", linewidth=1, label=t)
        ax_f1.legend(fontsize="small")
    else:
        ax_f1.text(0.5, 0.5, "no dev data", ha="center", va="center",
                   transform=ax_f1.transAxes)
    ax_f1.set(title="Dev entity F1", xlabel="epoch", ylabel="F1 (%)")

    ax_lr.plot(epochs, series("lr"), "o-", color="tab:purple", label="learning rate")
    ax_lr.set(title="Learning rate", xlabel="epoch", ylabel="lr")

    best = best_epoch(records)
    if best is not None:
        for ax in (ax_loss, ax_f1, ax_lr):
            ax.axvline(best, color="tab:red", linestyle=":", linewidth=1)
        f1 = next(r.get("dev_f1") for r in records if r["epoch"] == best)
        if f1 is not None:
            ax_f1.plot([best], [f1], "*", color="tab:red", markersize=14,
                       label=f"best: epoch {best}, F1 {f1:.2f}")
            ax_f1.legend(fontsize="small")
    for ax in (ax_loss, ax_f1, ax_lr):
        ax.set_xticks(epochs if len(epochs) <= 20 else ax.get_xticks())
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def confusion_figure(confusion: dict[str, Any], title: str = "") -> Any:
    """A heatmap of the tag confusion matrix (rows gold, columns predicted).

    Colour is the row share (how each gold tag was predicted), so the huge ``O`` row does
    not wash out the rest; each cell prints its count.
    """
    Figure = _figure_class()
    labels, matrix = confusion["labels"], confusion["matrix"]
    n = len(labels)
    size = max(4.0, 0.55 * n + 2.0)
    fig = Figure(figsize=(size + 1.0, size), dpi=80, layout="constrained")
    ax = fig.subplots()
    shares = [[c / max(1, sum(row)) for c in row] for row in matrix]
    im = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set(xlabel="predicted tag", ylabel="gold tag",
           title=title or "Tag confusion (colour: share of the gold row)")
    for i in range(n):
        for j in range(n):
            if matrix[i][j]:
                ax.text(j, i, str(matrix[i][j]), ha="center", va="center", fontsize=8,
                        color="white" if shares[i][j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of gold row")
    return fig


def check_suffix(path: str | Path) -> str:
    """The picture format of ``path`` from its suffix (png or svg), or a NerwinError."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise NerwinError(f"{path}: unknown picture format {suffix or '(no suffix)'!r}; "
                          f"expected a file name ending in .png or .svg")
    return suffix[1:]


def save_figure(fig: Any, path: str | Path, what: str = "the picture") -> Path:
    """Render ``fig`` to PNG or SVG by the suffix of ``path`` and write it atomically
    (:mod:`nerwin.atomic`: the destination is checked before the figure is rendered)."""
    fmt = check_suffix(path)
    target = check_destination(path, what)
    buf = io.BytesIO()
    # metadata without a date, so the same run gives the same bytes; and SVG element ids
    # from a fixed salt (matplotlib salts them with a random uuid by default)
    meta = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": "nerwin"}):
        fig.savefig(buf, format=fmt, metadata=meta)
    atomic_write_bytes(target, buf.getvalue(), what)
    return target
