"""The run directory: where it may be, what in it is nerwin's, and how a run claims it.

nerwin deletes only what it can prove it wrote, and writes only under its own names:

- ``.nerwin-run``: the run marker, a small JSON file (``{"format": "nerwin-run", ...}``)
  written when a run starts, before any other file of the run;
- ``best/``, ``last/``: checkpoint folders (:func:`nerwin.checkpoint.is_checkpoint_folder`:
  a real folder holding only ``params.npz`` and a nerwin ``meta.json``), and the
  ``.best.tmp-*`` / ``.last.old-*`` folders a crashed save leaves beside them;
- ``config.yaml``, ``metrics.jsonl``, ``test_scores.json``, ``learning_curves.png|svg``
  (``nerwin plot``'s default picture) (and the ``.<name>.tmp-*`` files
  of an interrupted atomic write): nerwin's only when the folder holds nerwin's marker,
  since a user may keep a ``config.yaml`` of their own anywhere.

Anything else (a user's file, a folder of theirs named ``best``, a symlink at any of these
names) makes ``--force`` refuse, naming it, before anything is deleted; a new run refuses a
folder that holds anything not nerwin's; the home folder and ``/`` are never a run
directory. Nothing here writes until :func:`claim_run_dir`, which ``train`` calls after
every check of the data, the vectors and the model has passed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from nerwin import __version__
from nerwin.atomic import atomic_write_text
from nerwin.checkpoint import (
    CHECKPOINT_FILES,
    complete_sibling,
    is_checkpoint_folder,
    recover_checkpoint,
)
from nerwin.errors import NerwinError

MARKER = ".nerwin-run"
MARKER_FORMAT = "nerwin-run"
CHECKPOINTS = ("best", "last")
# Files of a run: nerwin's when the folder carries nerwin's marker (learning_curves.* is
# what `nerwin plot RUN_DIR` writes there by default).
RUN_FILES = ("config.yaml", "metrics.jsonl", "test_scores.json", "learning_curves.png",
             "learning_curves.svg")


def check_out_path(out: Path) -> Path:
    """The absolute run directory for ``out``, refused where a run must not go.

    Writes nothing. Refuses ``/``, the home folder, a path that is (or lies below) a
    regular file, and a symlink loop, each with a one-line :class:`NerwinError`.
    """
    try:
        resolved = Path(out).expanduser().resolve()
    except (RuntimeError, OSError) as e:  # Python < 3.13 raises RuntimeError on a loop
        raise NerwinError(f"{out}: cannot be a run directory ({e})") from None
    forbidden = {Path(resolved.anchor)}
    try:
        forbidden.add(Path.home().resolve())
    except (RuntimeError, OSError, KeyError):
        pass
    if resolved in forbidden:
        raise NerwinError(f"{out}: refusing to use {resolved} as a run directory (output.dir "
                          f"or --out); give a folder of its own, e.g. runs/NAME")
    probe = resolved
    while not os.path.lexists(probe):
        probe = probe.parent
    if not probe.is_dir():
        where = "is not a folder" if probe == resolved else \
            f"lies below {probe}, which is not a folder"
        raise NerwinError(f"{out}: cannot be a run directory (output.dir or --out): it {where}")
    return resolved


def _marker_ok(out: Path) -> bool:
    path = out / MARKER
    if path.is_symlink() or not path.is_file():
        return False
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("format") == MARKER_FORMAT


def _is_temp_of(name: str, base: str, kinds: tuple[str, ...]) -> bool:
    return any(name.startswith(f".{base}.{kind}-") for kind in kinds)


def survey(out: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Sort the entries of ``out`` into nerwin's and others' (with why they are not nerwin's).

    Returns ``(nerwin's, [(path, reason), ...])``; both empty when ``out`` is missing.
    """
    if not out.is_dir():
        return [], []
    marked = _marker_ok(out)
    ours: list[Path] = []
    theirs: list[tuple[Path, str]] = []
    for name in sorted(os.listdir(out)):
        p = out / name
        if p.is_symlink():
            theirs.append((p, "is a symlink (nerwin never writes one)"))
        elif name == MARKER:
            if marked:
                ours.append(p)
            else:
                theirs.append((p, "is not a run marker nerwin wrote"))
        elif name in CHECKPOINTS:
            if is_checkpoint_folder(p):
                ours.append(p)
            elif p.is_dir():
                entries = set(os.listdir(p))
                extra = sorted(entries - CHECKPOINT_FILES)
                missing = sorted(CHECKPOINT_FILES - entries)
                shown = (f"holds {', '.join(extra[:3])}" if extra else
                         f"lacks {', '.join(missing)}" if missing else
                         "has a meta.json nerwin did not write")
                theirs.append((p, f"is not a nerwin checkpoint: it {shown}"))
            else:
                theirs.append((p, "is not a nerwin checkpoint folder"))
        elif any(_is_temp_of(name, c, ("tmp", "old")) for c in CHECKPOINTS):
            if is_checkpoint_folder(p, partial=True):
                ours.append(p)
            else:
                theirs.append((p, "is not a checkpoint nerwin left"))
        elif name in RUN_FILES or any(_is_temp_of(name, f, ("tmp",))
                                      for f in (*RUN_FILES, MARKER)):
            if not p.is_file():
                theirs.append((p, "is not a regular file"))
            elif marked:
                ours.append(p)
            else:
                theirs.append((p, f"not provably nerwin's: the folder has no {MARKER} "
                                  f"marker of a nerwin run"))
        else:
            theirs.append((p, "was not written by nerwin"))
    return ours, theirs


def _refuse(out: Path, theirs: list[tuple[Path, str]], action: str) -> NerwinError:
    path, reason = theirs[0]
    more = f" (and {len(theirs) - 1} more)" if len(theirs) > 1 else ""
    return NerwinError(f"{path}: {reason}{more}; {action} nothing was deleted or written in "
                       f"{out}: move it away, or choose another --out")


def check_run_dir(out: Path, *, resume: bool, force: bool) -> None:
    """Every check of the run directory, writing nothing (see the module docstring)."""
    ours, theirs = survey(out)
    if resume:
        last = out / "last"
        if not os.path.lexists(last) and complete_sibling(last) is None:
            raise NerwinError(f"{out}: nothing to resume (no last/ checkpoint here)")
        # A resume writes only nerwin's names; those must not be anyone else's.
        own = {*CHECKPOINTS, *RUN_FILES, MARKER}
        bad = [(p, r) for p, r in theirs if p.name in own and
               (p.name in (*CHECKPOINTS, MARKER) or p.is_symlink() or not p.is_file())]
        if bad:
            raise _refuse(out, bad, "--resume refuses to write there;")
        return
    if theirs:
        what = "--force deletes only what nerwin wrote, so" if force else \
            "a run needs a new or empty folder, or one of nerwin's runs;"
        raise _refuse(out, theirs, what)
    if ours and not force:
        shown = ", ".join(p.name for p in ours if not p.name.startswith("."))
        raise NerwinError(f"{out}: a run is already there ({shown or 'leftovers'}); use "
                          f"--resume to continue it, --force to overwrite it, or --out DIR")


def claim_run_dir(out: Path, *, resume: bool, force: bool) -> None:
    """Make ``out`` this run's folder: check again, clear (``force``), mark. Writes.

    With ``resume``, puts back a checkpoint a killed save left beside ``last/`` or
    ``best/`` and adopts a run written before markers existed. Called only after every
    check of the run has passed.
    """
    check_run_dir(out, resume=resume, force=force)
    try:
        if resume:
            for name in CHECKPOINTS:
                recover_checkpoint(out / name)
        else:
            ours, _ = survey(out)
            for p in ours:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            out.mkdir(parents=True, exist_ok=True)
        if not _marker_ok(out):
            marker = {"format": MARKER_FORMAT, "nerwin_version": __version__,
                      "note": "written by nerwin: this folder is a run directory"}
            atomic_write_text(out / MARKER, json.dumps(marker, indent=2) + "\n")
    except OSError as e:
        raise NerwinError(f"{e.filename or out}: cannot write the run directory "
                          f"({e.strerror or e})") from None
