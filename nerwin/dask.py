"""Tagging a corpus on a Dask cluster (extra ``dask``: dask[bag] and distributed).

    from dask.distributed import Client
    import nerwin.dask

    client = Client("tcp://scheduler-host:8786")      # or Client() for a local cluster
    nerwin.dask.tag_files("corpus/*.txt", "runs/best/best", "tagged/")

Each task loads the model once per worker process (and keeps it for the next task), and
runs exactly what ``nerwin tag`` runs (nerwin.tagging.tag_stream), so every output is
what ``nerwin tag`` writes for the same input. The model path, the input files and the
output folder must be reachable under the same paths from every worker (a shared
filesystem); the tasks run on whatever scheduler is current (a ``distributed.Client``
once one is created, else Dask's local one) unless ``scheduler`` says otherwise.

:func:`tag_files` writes one output per input file (``<out_dir>/<file name>.<format>``),
or with ``blocksize`` one per block of lines (``part-00000.<format>``, …; text input only,
as a block may cut a CoNLL sentence). :func:`tag_bag` tags a Dask bag of text lines and
writes one output per partition. jsonl's ``line`` counts the lines of the whole input, as
a single ``nerwin tag`` over the concatenated partitions would. Each output is written
atomically; an error (invalid UTF-8, ragged CoNLL columns: the message of ``nerwin tag``
naming the file or partition and line) stops the whole computation, and outputs other
partitions had already finished stay.
"""

from __future__ import annotations

import functools
import glob
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nerwin.errors import NerwinError

EXTRA = "pip install 'nerwin[dask]'"
SUFFIX = {"conll": "conll", "jsonl": "jsonl", "inline": "txt"}
_JSON_LINE_SAFE = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}  # as nerwin tag


def _dask() -> Any:
    try:
        import dask
        import dask.bag  # noqa: F401
    except ImportError:
        raise NerwinError(f"nerwin.dask needs dask[bag] and distributed, which are not "
                          f"installed: {EXTRA}") from None
    return dask


@functools.lru_cache(maxsize=4)
def _model(path: str) -> Any:
    """The model at ``path``, loaded once per worker process."""
    from nerwin.api import load_model

    return load_model(path)


def _check_formats(input_format: str, output_format: str) -> None:
    from nerwin.tagging import INPUT_FORMATS, OUTPUT_FORMATS

    if input_format not in INPUT_FORMATS:
        raise NerwinError(f"input_format {input_format!r}: expected one of "
                          f"{', '.join(INPUT_FORMATS)}")
    if output_format not in OUTPUT_FORMATS:
        raise NerwinError(f"output_format {output_format!r}: expected one of "
                          f"{', '.join(OUTPUT_FORMATS)}")


def _write(dest: str, text: str) -> None:
    from nerwin.atomic import atomic_write_text

    atomic_write_text(dest, text, "the output")


def _tag_file(model: str, src: str, dest: str, input_format: str,
              output_format: str) -> str:
    """``nerwin tag MODEL SRC --output DEST``, in a worker."""
    from nerwin.atomic import atomic_writer
    from nerwin.errors import os_error
    from nerwin.tagging import tag_stream

    try:
        f = open(src, "rb")  # noqa: SIM115
    except OSError as e:
        raise os_error(src, e, "text to tag") from None
    with f, atomic_writer(dest, "the output") as out:
        tag_stream(_model(model), f, src, out, input_format=input_format,
                   output_format=output_format)
    return dest


def _shift_lines(jsonl: str, offset: int) -> str:
    """jsonl output with every record's ``line`` moved by ``offset`` (same formatting)."""
    if not offset:
        return jsonl
    out = []
    for line in jsonl.splitlines():
        rec = json.loads(line)
        rec["line"] += offset
        out.append(json.dumps(rec, ensure_ascii=False).translate(_JSON_LINE_SAFE) + "\n")
    return "".join(out)


def _n_lines(part: Sequence[str]) -> int:
    """The lines nerwin tag's reader counts in a partition (its errors are the tagging
    task's to report, with the line)."""
    from nerwin.conll import EOL_BYTES

    pieces = EOL_BYTES.split(_joined(part))
    return len(pieces) - (pieces[-1] == b"")


def _joined(part: Sequence[str]) -> bytes:
    """A partition's lines as the bytes of a file (a line end after each line)."""
    # surrogateescape: the bytes of invalid UTF-8 that read_text kept (see tag_files) come
    # back as they were, and nerwin tag's reader reports them with their line.
    return "".join(s if s.endswith(("\n", "\r")) else s + "\n"
                   for s in part).encode("utf-8", errors="surrogateescape")


def _tag_partition(part: Sequence[str], model: str, name: str, dest: str, first_line: int,
                   input_format: str, output_format: str) -> str:
    from nerwin.tagging import tag_stream

    buf = io.StringIO()
    try:
        tag_stream(_model(model), io.BytesIO(_joined(part)), name, buf,
                   input_format=input_format, output_format=output_format)
    except NerwinError:
        # "no tokens found" is an error for a whole input, not for a block of blank lines
        # in the middle of one: its output (everything was written) stands.
        if any(s.strip() for s in part):
            raise
    text = buf.getvalue()
    if output_format == "jsonl":
        text = _shift_lines(text, first_line - 1)
    _write(dest, text)
    return dest


def _out_dir(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if not out.is_dir():
        problem = "does not exist" if not out.exists() else "is not a folder"
        raise NerwinError(f"{out}: the output folder {problem}")
    return out


def tag_bag(lines: Any, model: str | Path, out_dir: str | Path, *,
            input_format: str = "text", output_format: str = "jsonl",
            scheduler: Any = None) -> list[str]:
    """Tag a Dask bag of text lines (e.g. ``dask.bag.read_text``) with the model at
    ``model``; write partition i's output to ``out_dir/part-<i>.<format>``; return the
    paths in partition order. Their concatenation is ``nerwin tag`` of the concatenated
    lines. ``input_format="conll"`` needs partitions that do not cut a sentence."""
    dask = _dask()
    _check_formats(input_format, output_format)
    out = _out_dir(out_dir)
    model = os.path.abspath(model)
    parts = lines.to_delayed()
    firsts = [1] * len(parts)
    if output_format == "jsonl":  # jsonl names each sentence's line: count them first
        counts = dask.compute(*[dask.delayed(_n_lines)(p) for p in parts],
                              scheduler=scheduler)
        for i in range(1, len(parts)):
            firsts[i] = firsts[i - 1] + counts[i - 1]
    tasks = [dask.delayed(_tag_partition, pure=False)(
        p, model, f"<partition {i}>", str(out / f"part-{i:05d}.{SUFFIX[output_format]}"),
        firsts[i], input_format, output_format) for i, p in enumerate(parts)]
    return list(dask.compute(*tasks, scheduler=scheduler))


def tag_files(pattern: str | Sequence[str], model: str | Path, out_dir: str | Path, *,
              input_format: str = "text", output_format: str = "jsonl",
              blocksize: int | str | None = None, scheduler: Any = None) -> list[str]:
    """Tag the files matching ``pattern`` (a glob, or a list of paths) with the model at
    ``model``, one task per file, each output ``out_dir/<file name>.<format>`` byte for
    byte what ``nerwin tag FILE`` writes; return the output paths.

    With ``blocksize`` (bytes, or a string such as ``"64MiB"``), big files are cut into
    blocks of whole lines (``dask.bag.read_text``) and each block is a task with an output
    of its own (:func:`tag_bag`); text input only.
    """
    dask = _dask()
    _check_formats(input_format, output_format)
    out = _out_dir(out_dir)
    files = sorted(glob.glob(pattern)) if isinstance(pattern, str) else list(pattern)
    if not files:
        raise NerwinError(f"{pattern}: no file matches")
    model = os.path.abspath(model)
    if blocksize is not None:
        if input_format != "text":
            raise NerwinError("blocksize: a block may cut a CoNLL sentence; use it with "
                              "input_format='text', or tag whole CoNLL files")
        bag = dask.bag.read_text(files, blocksize=blocksize, encoding="utf-8",
                                 errors="surrogateescape", linedelimiter="\n")
        return tag_bag(bag, model, out, input_format=input_format,
                       output_format=output_format, scheduler=scheduler)
    names = [Path(f).name for f in files]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise NerwinError(f"{dup[0]}: two input files share this name; their outputs "
                          f"would collide in {out}")
    tasks = [dask.delayed(_tag_file, pure=False)(
        model, os.path.abspath(f), str(out / f"{Path(f).name}.{SUFFIX[output_format]}"),
        input_format, output_format) for f in files]
    return list(dask.compute(*tasks, scheduler=scheduler))
