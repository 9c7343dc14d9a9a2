"""Crash-safe file writes and checkpoints (a folder of ``params.npz`` + ``meta.json``).

Checkpoint layout::

    <directory>/params.npz   numpy npz archive (uncompressed zip of .npy members, exactly
                             what np.savez writes), one member per array, no pickle
    <directory>/meta.json    the caller's meta dict plus
                               "format": "nerwin-checkpoint", "format_version": 1,
                               "sha256": {array name: hex digest}

The digest of an array ``a`` is ``sha256(header + data)`` where ``header`` is the ASCII
text ``f"{a.dtype.str} {','.join(map(str, a.shape))}\\n"`` (e.g. ``"<f4 300,50\\n"``, and
``"<i8 \\n"`` for a 0-d array) and ``data`` the array's raw bytes in C order. Putting the
dtype and shape in the hash catches a reshaped or re-typed array whose bytes are equal.

Array names may contain ``/`` (``"opt/m/W1"``); they are zip member names, which ``np.load``
returns unchanged.

A save writes a complete new folder next to the target, fsyncs it, and only then swaps it
in with renames, so the final name never holds a half-written checkpoint. On POSIX there is
no atomic swap of two directories, so between the two renames the previous checkpoint
sits at ``.<name>.old-<pid>-<token>``; if the process dies exactly there, the final name is
missing (never half-written), :func:`load_checkpoint` says where the old one is, and the
next save cleans up. Concurrent saves to the same target are not supported.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from nerwin.errors import NerwinError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "META_FILE",
    "PARAMS_FILE",
    "append_jsonl",
    "array_sha256",
    "atomic_write_bytes",
    "atomic_write_text",
    "load_checkpoint",
    "save_checkpoint",
]

FORMAT = "nerwin-checkpoint"
FORMAT_VERSION = 1
PARAMS_FILE = "params.npz"
META_FILE = "meta.json"

# Keys save_checkpoint writes itself; a caller's values for them are replaced.
_RESERVED_META_KEYS = ("format", "format_version", "sha256")
# bool, signed/unsigned int, float, complex: the dtypes .npy stores without pickle.
_NUMERIC_KINDS = "biufc"
# Slash-separated segments of safe characters: no empty segment, no leading '/', no NUL or
# backslash, so the name is the same zip member name on every platform.
_NAME_RE = re.compile(r"[A-Za-z0-9_.:\-]+(?:/[A-Za-z0-9_.:\-]+)*")

PathLike = str | os.PathLike[str]


# --- atomic files ----------------------------------------------------------------------


def _fsync_dir(path: PathLike) -> None:
    """fsync a directory so a rename or a new entry in it survives a power loss.

    Best effort: some platforms (Windows) cannot open a directory, and some filesystems
    refuse fsync on one; the data files themselves have been fsynced already.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _temp_sibling(path: Path, kind: str) -> Path:
    """A fresh hidden name next to ``path``: ``.<name>.<kind>-<pid>-<random>``.

    The random part matters: pids repeat across container restarts, so a stale folder
    from an earlier run can carry our pid.
    """
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


def _write_synced(path: Path, data: bytes) -> None:
    """Create ``path`` (which must not exist), write ``data``, flush and fsync it."""
    # os.open with mode 0o666 lets the umask decide permissions, as open() would;
    # tempfile.mkstemp would leave the final file private (0o600).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Replace the file at ``path`` with ``data`` so readers see the old or new bytes only.

    Writes a temporary file in the same folder (a rename is only atomic within one
    filesystem), fsyncs it, ``os.replace``-s it over ``path`` and fsyncs the folder. The
    folder must exist. On failure the temporary file is removed and ``path`` is unchanged.

    Args:
        path: destination file.
        data: the complete new contents.
    """
    target = Path(path)
    tmp = _temp_sibling(target, "tmp")
    try:
        _write_synced(tmp, bytes(data))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def atomic_write_text(path: PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` for text, encoded as UTF-8 (newlines written as given)."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_writer(path: PathLike) -> Iterator[IO[str]]:
    """Stream text into ``path`` atomically: a UTF-8 temporary file, renamed on success.

    For outputs too large to hold in memory (``nerwin tag`` on a big file). Readers of
    ``path`` see the old file or the complete new one; if the ``with`` block raises, the
    temporary file is removed and ``path`` is unchanged. The folder must exist.
    """
    target = Path(path)
    tmp = _temp_sibling(target, "tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def append_jsonl(path: PathLike, record: dict[str, Any]) -> None:
    """Append ``record`` to the JSON-lines file at ``path`` as one line, then flush+fsync.

    The line is strict JSON (``NaN``/``inf`` are refused, since many JSON readers reject
    them) and pure ASCII. If the file does not end in a newline (a line torn by a crash),
    a newline is written first so the new record stays parseable on its own line.

    Args:
        path: the ``.jsonl`` file; created if missing (its folder must exist).
        record: a JSON-serialisable dict.

    Raises:
        TypeError: ``record`` is not a dict, or holds a value JSON cannot encode.
        ValueError: ``record`` holds NaN or infinity.
    """
    if not isinstance(record, dict):
        raise TypeError(f"append_jsonl expects a dict, got {type(record).__name__}")
    # Encode before opening so a bad record leaves the file untouched.
    line = (json.dumps(record, allow_nan=False) + "\n").encode("ascii")
    with open(path, "a+b") as handle:
        if handle.seek(0, os.SEEK_END) > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                line = b"\n" + line
        # In append mode the write goes to the end whatever the read position is.
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


# --- checkpoints -----------------------------------------------------------------------


def array_sha256(array: np.ndarray) -> str:
    """Hex sha256 of an array's dtype, shape and C-order bytes (see the module docstring).

    Args:
        array: any numeric ndarray, of any shape and memory layout.

    Returns:
        64 lowercase hex digits.
    """
    array = np.asarray(array)
    digest = hashlib.sha256()
    shape = ",".join(str(dim) for dim in array.shape)
    digest.update(f"{array.dtype.str} {shape}\n".encode("ascii"))
    # A flat uint8 view of the C-contiguous copy hashes the bytes without another copy.
    digest.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    return digest.hexdigest()


def _check_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validate names and dtypes before anything touches the disk."""
    if not isinstance(arrays, Mapping):
        raise TypeError(f"arrays must be a dict of name -> ndarray, got {type(arrays).__name__}")
    checked: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ValueError(
                f"array name {name!r} is not allowed: use letters, digits, '_', '.', ':', '-' "
                "in segments separated by single '/' (e.g. 'opt/m/W1')"
            )
        if not isinstance(value, np.ndarray):
            raise TypeError(f"array {name!r}: expected a numpy ndarray, got {type(value).__name__}")
        if value.dtype.kind not in _NUMERIC_KINDS:
            # Object, string, structured and datetime arrays would need pickle or would
            # not round-trip as plain numbers; a checkpoint holds numbers only.
            raise ValueError(
                f"array {name!r} has dtype {value.dtype}; a checkpoint holds only bool, "
                "integer, float or complex arrays (no object arrays, no pickle)"
            )
        # asarray drops ndarray subclasses (np.matrix, memmap) so what loads is what saved.
        checked[name] = np.asarray(value)
    return checked


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write an uncompressed npz, the same bytes layout np.savez produces, and fsync it.

    np.savez itself is not used because its own parameters (``file``, and
    ``allow_pickle`` in numpy >= 2.1) cannot also be array names, and older numpy has no
    way to forbid pickle there.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as handle:
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, array in arrays.items():
                # force_zip64 because the size is unknown when the member is opened;
                # np.savez does the same (numpy gh-10776).
                with archive.open(name + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())


def _remove(path: Path) -> None:
    """Delete a file, symlink or folder tree; missing is fine."""
    if path.is_symlink() or path.is_file():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def _stale_siblings(target: Path) -> list[Path]:
    """Temporary and set-aside folders left next to ``target`` by earlier saves."""
    prefixes = (f".{target.name}.tmp-", f".{target.name}.old-")
    try:
        return [p for p in target.parent.iterdir() if p.name.startswith(prefixes)]
    except OSError:
        return []


def _check_replaceable(target: Path) -> None:
    """Refuse to delete something at ``target`` that is not a checkpoint.

    The swap deletes the previous folder, so a mistyped path must not cost the user a
    folder of their own files.
    """
    if not os.path.lexists(target):
        return
    if not target.is_dir():
        raise NerwinError(f"{target}: exists and is not a folder; refusing to replace it")
    entries = set(os.listdir(target))
    if entries <= {PARAMS_FILE, META_FILE}:
        return
    try:
        meta = json.loads((target / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = None
    if isinstance(meta, dict) and meta.get("format") == FORMAT:
        return
    shown = ", ".join(sorted(entries - {PARAMS_FILE, META_FILE})[:5])
    raise NerwinError(
        f"{target}: refusing to replace this folder with a checkpoint: it is not a nerwin "
        f"checkpoint (it holds {shown}); choose another path or remove it yourself"
    )


def save_checkpoint(
    directory: PathLike, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]
) -> Path:
    """Save ``arrays`` and ``meta`` as a checkpoint folder, replacing any previous one.

    Args:
        directory: the checkpoint folder (e.g. ``runs/x/best``); parents are created.
        arrays: ``{name: ndarray}``, numeric dtypes only, any shapes; names may contain
            ``/``. Values are stored bit for bit (dtype, shape and byte order kept).
        meta: JSON-serialisable dict (strict JSON: no NaN/inf). Its ``format``,
            ``format_version`` and ``sha256`` keys, if any, are overwritten. Tuples come
            back as lists.

    Returns:
        ``Path(directory)``.

    Raises:
        TypeError / ValueError: bad array names or dtypes, or ``meta`` is not JSON; in this
            case nothing has been written.
        NerwinError: ``directory`` exists but is not a checkpoint folder.
        OSError: the filesystem failed; the previous checkpoint, if any, is still intact
            under ``directory`` (or, after a hard crash mid-swap, in ``.<name>.old-*``).
    """
    target = Path(directory)
    checked = _check_arrays(arrays)
    if not isinstance(meta, Mapping):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    full_meta = {key: value for key, value in meta.items() if key not in _RESERVED_META_KEYS}
    full_meta["format"] = FORMAT
    full_meta["format_version"] = FORMAT_VERSION
    full_meta["sha256"] = {name: array_sha256(array) for name, array in checked.items()}
    try:
        meta_text = json.dumps(full_meta, indent=2, sort_keys=True, allow_nan=False,
                               ensure_ascii=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint meta is not JSON-serialisable: {exc}") from exc

    target.parent.mkdir(parents=True, exist_ok=True)
    _check_replaceable(target)

    tmp = _temp_sibling(target, "tmp")
    tmp.mkdir()
    try:
        _write_npz(tmp / PARAMS_FILE, checked)
        _write_synced(tmp / META_FILE, meta_text.encode("utf-8"))
        _fsync_dir(tmp)
    except BaseException:
        _remove(tmp)
        raise

    aside = _temp_sibling(target, "old")
    moved_aside = False
    try:
        if os.path.lexists(target):
            # A rename cannot replace a non-empty folder, so move the old one out first.
            os.replace(target, aside)
            moved_aside = True
        os.replace(tmp, target)
    except BaseException:
        # Put the previous checkpoint back under its name; it is complete.
        if moved_aside and not os.path.lexists(target):
            with contextlib.suppress(OSError):
                os.replace(aside, target)
        _remove(tmp)
        raise
    _fsync_dir(target.parent)

    # The new checkpoint is in place: the old one and any leftovers of crashed saves
    # (temporary or set-aside folders) are garbage now.
    for stale in [aside, *_stale_siblings(target)]:
        _remove(stale)
    return target


def _aside_hint(target: Path) -> str:
    """Point at a previous checkpoint set aside by a save that died mid-swap, if any."""
    for path in sorted(_stale_siblings(target)):
        if path.name.startswith(f".{target.name}.old-") and (path / META_FILE).is_file():
            return (
                f"; a save was interrupted and left the previous checkpoint at {path}: "
                f"rename it to {target.name} to use it"
            )
    return ""


def load_checkpoint(directory: PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load and verify a checkpoint written by :func:`save_checkpoint`.

    Args:
        directory: the checkpoint folder.

    Returns:
        ``(arrays, meta)``: ``arrays`` maps each name to its ndarray (same dtype, shape and
        bytes as saved, in saving order); ``meta`` is the whole ``meta.json`` object,
        i.e. the caller's meta plus ``format``, ``format_version`` and ``sha256``.

    Raises:
        NerwinError: the folder or a file is missing or unreadable, ``meta.json`` is not a
            nerwin checkpoint of a supported version, ``params.npz`` is truncated or
            corrupt, an array is missing, extra, non-numeric, or does not match its
            sha256. The message names the path and the array.
    """
    root = Path(directory)
    if not root.is_dir():
        problem = "is not a folder" if root.exists() else "no such checkpoint folder"
        raise NerwinError(f"{root}: {problem}{_aside_hint(root)}")

    meta_path = root / META_FILE
    corrupt = "the checkpoint is corrupt or was edited"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NerwinError(f"{meta_path}: missing; {root} is not a complete checkpoint") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NerwinError(f"{meta_path}: cannot be read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise NerwinError(f"{meta_path}: not valid JSON ({exc}); {corrupt}") from exc
    if not isinstance(meta, dict):
        raise NerwinError(f"{meta_path}: expected a JSON object; {corrupt}")
    if meta.get("format") != FORMAT:
        raise NerwinError(
            f"{meta_path}: 'format' is {meta.get('format')!r}, expected {FORMAT!r}; "
            "this is not a nerwin checkpoint"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise NerwinError(
            f"{meta_path}: unsupported 'format_version' {meta.get('format_version')!r}; "
            f"this version of nerwin reads format_version {FORMAT_VERSION}"
        )
    hashes = meta.get("sha256")
    if not isinstance(hashes, dict) or not all(isinstance(h, str) for h in hashes.values()):
        raise NerwinError(f"{meta_path}: 'sha256' must map array names to hex digests; {corrupt}")

    params_path = root / PARAMS_FILE
    if not params_path.is_file():
        raise NerwinError(f"{params_path}: missing; {root} is not a complete checkpoint")
    unreadable = "the checkpoint is truncated or corrupt"
    try:
        archive = np.load(params_path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise NerwinError(f"{params_path}: not a readable npz archive ({exc}); {unreadable}") \
            from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise NerwinError(f"{params_path}: a single .npy array, not an npz archive; {corrupt}")

    arrays: dict[str, np.ndarray] = {}
    with archive:
        names = list(dict.fromkeys(archive.files))
        missing = [name for name in hashes if name not in names]
        extra = [name for name in names if name not in hashes]
        if missing:
            raise NerwinError(
                f"{params_path}: array(s) {', '.join(map(repr, missing))} listed in "
                f"meta.json are missing; {corrupt}"
            )
        if extra:
            raise NerwinError(
                f"{params_path}: array(s) {', '.join(map(repr, extra))} are not listed in "
                f"meta.json; {corrupt}"
            )
        for name in names:
            try:
                value = archive[name]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                raise NerwinError(
                    f"{params_path}: array {name!r} cannot be read ({exc}); {unreadable}"
                ) from exc
            if not isinstance(value, np.ndarray) or value.dtype.kind not in _NUMERIC_KINDS:
                raise NerwinError(f"{params_path}: member {name!r} is not a numeric array; "
                                  f"{corrupt}")
            if array_sha256(value) != hashes[name]:
                raise NerwinError(
                    f"{params_path}: array {name!r} does not match its sha256 in meta.json; "
                    f"{corrupt}"
                )
            arrays[name] = value
    return arrays, meta
