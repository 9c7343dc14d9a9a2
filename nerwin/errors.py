"""The one exception type for user-facing errors (bad input, bad config, bad usage).

The CLI turns a :class:`NerwinError` into a one-line message and exit code 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class NerwinError(Exception):
    """An error in what the user gave us: a file, a line, a config key.

    The message must say where (file and line, or the dotted config key) and what was
    expected. ``exit_code`` is what the command line exits with.
    """

    exit_code = 2


class TrainingError(NerwinError):
    """Training cannot go on (e.g. the loss diverged); the last good checkpoint is kept."""

    exit_code = 1

