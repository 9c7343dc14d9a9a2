"""The one exception type for user-facing errors (bad input, bad config, bad usage).

The CLI turns a :class:`NerwinError` into a one-line message and exit code 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno


class NerwinError(Exception):
    """An error in what the user gave us: a file, a line, a config key.

    The message must say where (file and line, or the dotted config key) and what was
    expected. ``exit_code`` is what the command line exits with.
    """

    exit_code = 2


class TrainingError(NerwinError):
    """Training cannot go on (e.g. the loss diverged); the last good checkpoint is kept."""

    exit_code = 1



def os_error(path: object, e: OSError, what: str) -> NerwinError:
    """A one-line error for a file that cannot be opened or read (``what``: "a CoNLL file").

    Says why in words a user acts on: missing, a folder, a symbolic-link loop, no permission.
    """
    if isinstance(e, FileNotFoundError):
        return NerwinError(f"{path}: no such file; expected {what}")
    if isinstance(e, IsADirectoryError):
        return NerwinError(f"{path}: is a folder, expected {what}")
    if isinstance(e, PermissionError):
        return NerwinError(f"{path}: permission denied; cannot read {what}")
    if e.errno == errno.ELOOP:
        return NerwinError(f"{path}: symbolic link loop; cannot read {what}")
    return NerwinError(f"{path}: cannot read {what}: {e.strerror or e}")


def utf8_error(path: object, line: int, e: UnicodeDecodeError, data: bytes,
               what: str = "the file") -> NerwinError:
    """A one-line error for invalid UTF-8 at ``line`` of ``path`` (``data``: the bytes that
    ``e`` came from, for the offending byte)."""
    return NerwinError(f"{path}:{line}: invalid UTF-8 ({e.reason}, byte 0x{data[e.start]:02x}); "
                       f"save {what} as UTF-8")
