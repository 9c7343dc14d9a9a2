"""The one rule for every file nerwin writes: checked first, written atomically, never
through or over something that is not a regular file.

Every output (``plot``'s pictures, ``eval --predictions/--confusion``, ``config init``,
``tag --output``, the files of a run directory and of a sweep) goes through
:func:`atomic_write_bytes`, :func:`atomic_write_text` or :func:`atomic_writer`:

1. :func:`check_destination` refuses, with a one-line :class:`WriteError` naming the path,
   a destination whose folder is missing, is not a folder, lies below a file, sits behind
   a symbolic-link loop, cannot be reached or is not writable (or is on a read-only file
   system); and a destination that is a symbolic link (even a dangling one), a folder, a
   FIFO, a device or a socket. Those are refused, never replaced: a rename would put a
   regular file where the user had a link or a pipe. An existing regular file is replaced
   only when the caller allows it (``config init`` without ``--force`` does not).
2. The data goes to a new hidden temporary file beside the destination
   (``.<name>.tmp-<pid>-<random>``), is fsynced, and is renamed over the destination, so
   readers see the old file or the complete new one; the folder is fsynced after.
3. Any failure on the way (a full disk, a quota, an I/O error, a permission) removes the
   temporary file, leaves the destination as it was, and is a one-line :class:`WriteError`:
   exit code 2 for a problem of the path the user gave, 1 when the device failed (full
   disk, quota, I/O error), as for standard output.

Callers that can check a path before long work (``eval``, ``tag``) call
:func:`check_destination` first; the write checks again (the folder may have changed
meanwhile).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from nerwin.errors import NerwinError

__all__ = [
    "WriteError",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_writer",
    "check_destination",
    "fsync_dir",
    "temp_sibling",
    "write_synced",
]

PathLike = str | os.PathLike[str]

# The device, not the path, failed: exit 1 like a full standard output (the user's input
# was fine; free some space and run again).
DEVICE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG})


class WriteError(NerwinError):
    """A file nerwin was asked to write cannot be written (one line: path, what, why).

    ``exit_code`` is 2 for a bad destination, 1 when the device failed (disk full).
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _why(e: OSError) -> str:
    """An OSError in the words a user acts on: the system's own (No space left on device,
    Permission denied, Read-only file system, ...), plainer where those are cryptic."""
    return {
        errno.ELOOP: "a symbolic link loop",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
    }.get(e.errno or 0, e.strerror or str(e))


def _write_error(path: PathLike, what: str, e: OSError) -> WriteError:
    code = 1 if e.errno in DEVICE_ERRNOS else 2
    return WriteError(f"{os.fspath(path)}: cannot write {what}: {_why(e)}; nothing was "
                      f"written (a previous file there is unchanged)", code)


def _first_non_folder(folder: str) -> str | None:
    """The first ancestor of ``folder`` (itself included) that exists but is not a folder."""
    parts = Path(folder)
    for p in [*reversed(parts.parents), parts]:
        try:
            st = os.stat(p)
        except OSError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            return str(p)
    return None


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def check_destination(path: PathLike, what: str = "the file", *,
                      replace: bool = True) -> Path:
    """Refuse a destination nerwin must not write (see the module docstring); write nothing.

    Args:
        path: the file to be written.
        what: how messages name it, e.g. ``"--output"`` or ``"the picture"``.
        replace: whether an existing regular file may be replaced (``config init`` passes
            ``replace=force``).

    Returns:
        ``Path(path)``.

    Raises:
        WriteError: one line naming ``path`` and the problem; exit code 2.
    """
    text = os.fspath(path)
    if not text or "\0" in text or not Path(text).name or text.endswith(("/", os.sep)):
        raise WriteError(f"{text!r}: cannot write {what}: expected the path of a file")
    # dirname, not abspath: "a/../b" must be resolved by the kernel, as the write will be.
    folder = os.path.dirname(text) or "."
    refuse = f"{text}: cannot write {what}:"
    try:
        st = os.stat(folder)
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise WriteError(f"{refuse} the folder {folder} does not exist") from None
        if e.errno == errno.ENOTDIR:
            blocker = _first_non_folder(folder)
            below = f"{blocker}, which" if blocker else "a part that"
            raise WriteError(f"{refuse} the path lies below {below} is not a folder") from None
        if e.errno == errno.ELOOP:
            raise WriteError(f"{refuse} the folder {folder} is a symbolic link loop") from None
        raise WriteError(f"{refuse} the folder {folder} cannot be reached: {_why(e)}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise WriteError(f"{refuse} the path lies below {folder}, which is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
        except (OSError, AttributeError):
            read_only = False
        why = "is on a read-only file system" if read_only else \
            "is not writable (permission denied)"
        raise WriteError(f"{refuse} the folder {folder} {why}")
    try:
        st = os.lstat(text)
    except FileNotFoundError:
        return Path(path)
    except OSError as e:
        raise WriteError(f"{refuse} {_why(e)}") from None
    kind = _kind(st.st_mode)
    if kind == "a symbolic link":
        try:
            points = f" (to {os.readlink(text)})"
        except OSError:
            points = ""
        raise WriteError(f"{refuse} it is a symbolic link{points}; nerwin neither writes "
                         f"through nor replaces one: give the path of a regular file")
    if kind is not None:
        raise WriteError(f"{refuse} it is {kind}; give the path of a regular file (nerwin "
                         f"replaces only regular files)")
    if not replace:
        raise WriteError(f"{refuse} it exists; pass --force to overwrite it")
    return Path(path)


# --- the temporary file ------------------------------------------------------------------


def fsync_dir(path: PathLike) -> None:
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


def temp_sibling(path: Path, kind: str) -> Path:
    """A fresh hidden name next to ``path``: ``.<name>.<kind>-<pid>-<random>``.

    The random part matters: pids repeat across container restarts, so a stale folder
    from an earlier run can carry our pid.
    """
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


def create_new(path: Path) -> int:
    """Create ``path`` (which must not exist) for writing; its file descriptor."""
    # os.open with mode 0o666 lets the umask decide permissions, as open() would;
    # tempfile.mkstemp would leave the final file private (0o600).
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)


def write_synced(path: Path, data: bytes) -> None:
    """Create ``path`` (which must not exist), write ``data``, flush and fsync it."""
    with os.fdopen(create_new(path), "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


class _OwnWriteFailed(OSError):
    """A write to the temporary file failed: raised by :class:`_TempFile` so that the
    ``with`` block of :func:`atomic_writer` tells its own write errors from others (say, a
    read error of the input being streamed in), which pass through unchanged."""


class _TempFile(io.FileIO):
    def write(self, data: Any) -> int:
        try:
            # os.write rather than FileIO.write: the same system call, and one a test can
            # make fail (a full disk) without touching any other file.
            return os.write(self.fileno(), data)
        except OSError as e:
            raise _OwnWriteFailed(e.errno, e.strerror) from None


def _rename(tmp: Path, target: Path, replace: bool) -> None:
    """Rename ``tmp`` to ``target``; without ``replace``, never over a file that appeared
    meanwhile (a hard link fails if the name exists; a file system without hard links
    falls back to the rename, the destination having just been checked)."""
    if replace:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise WriteError(f"{target}: exists; pass --force to overwrite it") from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        os.replace(tmp, target)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def _atomic_file(path: PathLike, mode: str, what: str, replace: bool) -> Iterator[IO[Any]]:
    """A new temporary file beside ``path`` (``mode`` "wb" or "w": UTF-8, newlines as
    written), fsynced and renamed over ``path`` when the ``with`` block ends normally;
    removed, leaving ``path`` as it was, when it raises. The folder is fsynced after the
    rename (a rename is only atomic within one filesystem: hence beside ``path``)."""
    target = check_destination(path, what, replace=replace)
    tmp = temp_sibling(target, "tmp")
    try:
        fd = create_new(tmp)
    except OSError as e:
        raise _write_error(path, what, e) from None
    raw = _TempFile(fd, "w", closefd=True)
    buffered = io.BufferedWriter(raw)
    handle: IO[Any] = buffered if "b" in mode else \
        io.TextIOWrapper(buffered, encoding="utf-8", newline="")
    done = False
    try:
        try:
            yield handle
        except _OwnWriteFailed as e:  # the block's write to our file: the disk failed
            raise _write_error(path, what, e) from None
        try:
            handle.flush()
            os.fsync(raw.fileno())
            handle.close()
            # The destination may have changed since the check (a link made meanwhile):
            # look again right before the rename, which would replace whatever is there.
            check_destination(path, what, replace=replace)
            _rename(tmp, target, replace)
        except OSError as e:
            raise _write_error(path, what, e) from None
        done = True
    finally:
        if not done:
            # close() still closes the file when its last flush fails (a full disk).
            with contextlib.suppress(Exception):
                handle.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    fsync_dir(target.parent)


def atomic_write_bytes(path: PathLike, data: bytes, what: str = "the file", *,
                       replace: bool = True) -> None:
    """Replace the file at ``path`` with ``data`` so readers see the old or new bytes only.

    Args:
        path: destination file; its folder must exist (see :func:`check_destination`).
        data: the complete new contents.
        what: how error messages name the file (``"--output"``).
        replace: whether an existing regular file may be replaced.

    Raises:
        WriteError: the destination is refused or the write failed; the temporary file is
            removed and ``path`` is unchanged.
    """
    with _atomic_file(path, "wb", what, replace) as handle:
        handle.write(bytes(data))


def atomic_write_text(path: PathLike, text: str, what: str = "the file", *,
                      replace: bool = True) -> None:
    """:func:`atomic_write_bytes` for text, encoded as UTF-8 (newlines written as given)."""
    atomic_write_bytes(path, text.encode("utf-8"), what, replace=replace)


def atomic_writer(path: PathLike, what: str = "the file", *, replace: bool = True
                  ) -> contextlib.AbstractContextManager[IO[str]]:
    """Stream text into ``path`` atomically: a UTF-8 temporary file, renamed on success.

    For outputs too large to hold in memory (``nerwin tag`` on a big file). Readers of
    ``path`` see the old file or the complete new one; if the ``with`` block raises, the
    temporary file is removed and ``path`` is unchanged. A failed write to the file (disk
    full) is a :class:`WriteError`; the block's other exceptions pass through unchanged.
    """
    return _atomic_file(path, "w", what, replace)
