"""Checkpoints (a folder of ``params.npz`` + ``meta.json``).

Checkpoint layout::

    <directory>/params.npz   numpy npz archive (uncompressed zip of .npy members, exactly
                             what np.savez writes), one member per array, no pickle
    <directory>/meta.json    the caller's meta dict plus
                               "format": "nerwin-checkpoint", "format_version": 1,
                               "sha256": {array name: hex digest},
                               "meta_sha256": hex digest of the rest of meta.json

The digest of an array ``a`` is ``sha256(header + data)`` where ``header`` is the ASCII
text ``f"{a.dtype.str} {','.join(map(str, a.shape))}\\n"`` (e.g. ``"<f4 300,50\\n"``, and
``"<i8 \\n"`` for a 0-d array) and ``data`` the array's raw bytes in C order. Putting the
dtype and shape in the hash catches a reshaped or re-typed array whose bytes are equal.

``meta_sha256`` is the sha256 of the meta object without its ``sha256`` and
``meta_sha256`` keys, as canonical JSON (``sort_keys``, separators ``","`` and ``":"``,
UTF-8). It makes an edited ``meta.json`` (its words, tags, config, loop counters or RNG
state) an error on load instead of a model that silently predicts something else; the
``sha256`` map is left out because each of its digests is checked against its array.

Before any array is read, each ``.npy`` member's header is checked against the size of
its zip member (and, when the caller knows them, against the expected shapes), so a
header that claims a huge shape is refused before memory is allocated for it.

Array names may contain ``/`` (``"opt/m/W1"``); they are zip member names, which ``np.load``
returns unchanged.

A save writes a complete new folder next to the target, fsyncs it, and only then swaps it
in with renames, so the final name never holds a half-written checkpoint. On POSIX there is
no atomic swap of two directories, so between the two renames the previous checkpoint
sits at ``.<name>.old-<pid>-<token>`` and the new one, complete, at
``.<name>.tmp-<pid>-<token>``. If the process dies exactly there, the final name is missing
(never half-written): :func:`load_checkpoint` then reads the newest complete set-aside copy
(verified by its hashes; it renames nothing), and :func:`recover_checkpoint`, which the
owner of the folder calls (``train --resume``), renames it back in. The next save cleans
up. Concurrent saves to the same target are not supported.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

# Re-exported (see __all__): older code imported the atomic writers from here.
from nerwin.atomic import atomic_write_bytes, atomic_write_text, atomic_writer  # noqa: F401
from nerwin.atomic import fsync_dir as _fsync_dir
from nerwin.atomic import temp_sibling as _temp_sibling
from nerwin.atomic import write_synced as _write_synced
from nerwin.errors import NerwinError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "META_FILE",
    "PARAMS_FILE",
    "append_jsonl",
    "array_sha256",
    # Re-exported from nerwin.atomic for code written before it existed; nerwin itself
    # imports them from nerwin.atomic.
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_writer",
    "complete_sibling",
    "is_checkpoint_folder",
    "load_checkpoint",
    "meta_sha256",
    "recover_checkpoint",
    "save_checkpoint",
]

FORMAT = "nerwin-checkpoint"
FORMAT_VERSION = 1
PARAMS_FILE = "params.npz"
META_FILE = "meta.json"

# Keys save_checkpoint writes itself; a caller's values for them are replaced.
_RESERVED_META_KEYS = ("format", "format_version", "sha256", "meta_sha256")
# What a checkpoint folder holds, and nothing else.
CHECKPOINT_FILES = frozenset({"params.npz", "meta.json"})
# bool, signed/unsigned int, float, complex: the dtypes .npy stores without pickle.
_NUMERIC_KINDS = "biufc"
# Slash-separated segments of safe characters: no empty segment, no leading '/', no NUL or
# backslash, so the name is the same zip member name on every platform.
_NAME_RE = re.compile(r"[A-Za-z0-9_.:\-]+(?:/[A-Za-z0-9_.:\-]+)*")

PathLike = str | os.PathLike[str]
# meta -> {array name: expected shape}; see load_checkpoint.
ExpectedShapes = Callable[[dict[str, Any]], Mapping[str, tuple[int, ...]]]

# Appends refuse to follow a symlink (O_NOFOLLOW; absent on Windows, which has no such links
# for ordinary users).
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


# --- JSON lines ------------------------------------------------------------------------


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
        OSError: the file cannot be written; ``ELOOP`` when ``path`` is a symlink (an
            append never follows one: it could point anywhere outside the run directory).
    """
    if not isinstance(record, dict):
        raise TypeError(f"append_jsonl expects a dict, got {type(record).__name__}")
    # Encode before opening so a bad record leaves the file untouched.
    line = (json.dumps(record, allow_nan=False) + "\n").encode("ascii")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | _O_NOFOLLOW, 0o666)
    with os.fdopen(fd, "a+b") as handle:
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


def meta_sha256(meta: Mapping[str, Any]) -> str:
    """Hex sha256 of ``meta`` without its ``sha256`` and ``meta_sha256`` keys (canonical JSON)."""
    rest = {k: v for k, v in meta.items() if k not in ("sha256", "meta_sha256")}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_checkpoint_folder(path: PathLike, *, partial: bool = False) -> bool:
    """Whether ``path`` is provably a folder nerwin's :func:`save_checkpoint` wrote.

    That is: a real folder (not a symlink) holding exactly the regular files
    ``params.npz`` and ``meta.json``, whose ``meta.json`` says
    ``"format": "nerwin-checkpoint"``. With ``partial``, a folder a save was still writing
    also counts (either file may be absent, ``meta.json`` torn): what a
    ``.<name>.tmp-*`` left by a crash looks like.
    """
    path = Path(path)
    try:
        if path.is_symlink() or not path.is_dir():
            return False
        entries = set(os.listdir(path))
        if not entries <= CHECKPOINT_FILES or (not partial and entries != CHECKPOINT_FILES):
            return False
        if any((path / e).is_symlink() or not (path / e).is_file() for e in entries):
            return False
        if partial and META_FILE not in entries:
            return True
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return partial and path.is_dir() and not path.is_symlink()
    return isinstance(meta, dict) and meta.get("format") == FORMAT


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
        # The digest is taken of what load will see: the meta after a JSON round trip.
        plain = json.loads(json.dumps(full_meta, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint meta is not JSON-serialisable: {exc}") from exc
    plain["meta_sha256"] = meta_sha256(plain)
    meta_text = json.dumps(plain, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

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


def complete_sibling(target: PathLike) -> Path | None:
    """The newest complete copy a save that died mid-swap left next to ``target``, if any.

    Candidates are ``.<name>.tmp-*`` (the new checkpoint, complete once its meta.json is
    written) before ``.<name>.old-*`` (the previous one), newest first within each kind;
    the first that loads and matches all its hashes wins.
    """
    target = Path(target)

    def order(p: Path) -> tuple[int, float]:
        try:
            mtime = p.stat().st_mtime
        except OSError:
            mtime = 0.0
        return (0 if p.name.startswith(f".{target.name}.tmp-") else 1, -mtime)

    for path in sorted(_stale_siblings(target), key=order):
        if not is_checkpoint_folder(path):
            continue
        try:
            _load_verified(path)
        except NerwinError:
            continue
        return path
    return None


def recover_checkpoint(directory: PathLike) -> Path | None:
    """Put back a complete checkpoint that a save killed mid-swap left beside ``directory``.

    Only for the owner of the folder (``train --resume``): renames the newest complete
    ``.<name>.tmp-*`` or ``.<name>.old-*`` (see :func:`complete_sibling`) to the final name
    when the final name is missing. Returns the folder it came from, or None.
    """
    target = Path(directory)
    if os.path.lexists(target):
        return None
    found = complete_sibling(target)
    if found is None:
        return None
    os.replace(found, target)
    _fsync_dir(target.parent)
    return found


def load_checkpoint(directory: PathLike, expected: ExpectedShapes | None = None
                    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load and verify a checkpoint written by :func:`save_checkpoint`.

    Args:
        directory: the checkpoint folder. When it is missing but a save that died
            mid-swap left a complete copy beside it, that copy is read (nothing renamed).
        expected: optional ``meta -> {array name: shape}``, called once meta.json is
            verified; each named array's header must claim exactly that shape.

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
        if not os.path.lexists(root):
            # A save died between its two renames: read the complete copy it left.
            found = complete_sibling(root)
            if found is not None:
                return _load_verified(found, expected)
        problem = "is not a folder" if root.exists() else "no such checkpoint folder"
        raise NerwinError(f"{root}: {problem}")
    return _load_verified(root, expected)


def _load_verified(root: Path, expected: ExpectedShapes | None = None
                   ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
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
    stored = meta.get("meta_sha256")
    if not isinstance(stored, str):
        raise NerwinError(f"{meta_path}: no 'meta_sha256' (the hash that covers meta.json); "
                          f"{corrupt}, or was written by an older nerwin")
    if meta_sha256(meta) != stored:
        raise NerwinError(f"{meta_path}: does not match its 'meta_sha256': {corrupt} (an "
                          "edited vocabulary, tag list, config or counter would silently "
                          "change the model); restore the file or retrain")

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

    shapes: Mapping[str, tuple[int, ...]] = {}
    if expected is not None:
        try:
            shapes = expected(meta)
        except NerwinError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise NerwinError(f"{meta_path}: not a nerwin model ({exc!r}); {corrupt}") from None
    try:
        _check_headers(params_path, shapes, unreadable)
    except NerwinError:
        archive.close()
        raise
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


def _check_headers(params_path: Path, shapes: Mapping[str, tuple[int, ...]],
                   unreadable: str) -> None:
    """Read each .npy member's header (not its data) and refuse one that cannot be right.

    A header's shape and dtype say how many bytes numpy will allocate; a member whose
    header claims more (or fewer) bytes than the member holds, a non-numeric dtype or a
    shape other than the expected one is refused before that allocation.
    """
    fmt = np.lib.format
    try:
        with zipfile.ZipFile(params_path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                name = info.filename[: -len(".npy")]
                try:
                    with archive.open(info) as member:
                        version = fmt.read_magic(member)
                        if version == (1, 0):
                            shape, _, dtype = fmt.read_array_header_1_0(member)
                        elif version == (2, 0):
                            shape, _, dtype = fmt.read_array_header_2_0(member)
                        else:
                            raise ValueError(f"unsupported .npy format version {version}")
                        data_bytes = info.file_size - member.tell()
                except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                    raise NerwinError(f"{params_path}: array {name!r} cannot be read "
                                      f"({exc}); {unreadable}") from exc
                if dtype.kind not in _NUMERIC_KINDS or dtype.hasobject:
                    raise NerwinError(f"{params_path}: member {name!r} is not a numeric "
                                      f"array (dtype {dtype}); {unreadable}")
                claimed = dtype.itemsize * math.prod(shape)
                if name in shapes and tuple(shape) != tuple(shapes[name]):
                    raise NerwinError(
                        f"{params_path}: array {name!r} has shape {tuple(shape)}, expected "
                        f"{tuple(shapes[name])} from meta.json; {unreadable}")
                if claimed != data_bytes:
                    raise NerwinError(
                        f"{params_path}: array {name!r} claims shape {tuple(shape)} {dtype} "
                        f"({claimed:,} bytes) but holds {data_bytes:,} bytes; {unreadable}")
    except NerwinError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise NerwinError(f"{params_path}: not a readable npz archive ({exc}); {unreadable}") \
            from exc
