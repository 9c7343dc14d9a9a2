"""Pictures: a run's learning curves and a tag confusion matrix, as PNG or SVG.

matplotlib is an optional extra (``pip install 'nerwin[plot]'``) and is imported here only,
when a picture is asked for; the figures are built with matplotlib's object API on the Agg
canvas, so no display and no pyplot global state are involved.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from nerwin.checkpoint import atomic_write_bytes
from nerwin.errors import NerwinError

FORMATS = (".png", ".svg")
INSTALL_HINT = "pip install 'nerwin[plot]'"


def _figure_class() -> Any:
    """matplotlib's Figure, or a one-line error saying how to install it."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise NerwinError(f"pictures need matplotlib: {INSTALL_HINT}") from None
    return Figure


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of ``RUN_DIR/metrics.jsonl``, one per epoch (the last wins).

    A line torn by a crash (not JSON) is skipped only if it is the last line.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise NerwinError(f"{path}: no such file; expected a run directory written by "
                          f"`nerwin train`")
    lines = path.read_text(encoding="utf-8").splitlines()
    by_epoch: dict[int, dict[str, Any]] = {}
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            by_epoch[int(rec["epoch"])] = rec
        except (ValueError, KeyError, TypeError):
            if i == len(lines):
                continue
            raise NerwinError(f"{path}:{i}: not a metrics record (a JSON object with "
                              f"'epoch')") from None
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


def save_figure(fig: Any, path: str | Path) -> Path:
    """Render ``fig`` to PNG or SVG by the suffix of ``path`` and write it atomically."""
    fmt = check_suffix(path)
    target = Path(path)
    if not target.resolve().parent.is_dir():
        raise NerwinError(f"{path}: the folder {target.resolve().parent} does not exist")
    buf = io.BytesIO()
    # metadata without a date, so the same run gives the same bytes
    meta = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
    fig.savefig(buf, format=fmt, metadata=meta)
    atomic_write_bytes(target, buf.getvalue())
    return target
