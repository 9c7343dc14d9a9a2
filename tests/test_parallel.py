"""nerwin.parallel's pool on its own: a worker that dies in the middle of sending a result
stops the run with one error, in bounded time (no read of half a message for ever)."""

from __future__ import annotations

import os
import signal
import struct
import sys
import threading
from typing import Any

import pytest

from nerwin.errors import NerwinError
from nerwin.parallel import run_parallel


def _dies_mid_message(model_dir: str) -> Any:
    """A task (run in the worker) whose first chunk writes the header of a 1 MiB result and
    100 bytes of it into the results pipe, then kills its process: what a SIGKILL during a
    large put leaves behind."""
    results = sys._getframe(1).f_locals["results"]  # the queue _worker puts results on

    def run(chunk: Any) -> Any:
        os.write(results._writer.fileno(), struct.pack("!i", 1 << 20) + b"x" * 100)
        os.kill(os.getpid(), signal.SIGKILL)
    return run


def _echo(model_dir: str) -> Any:
    return lambda chunk: chunk


def test_the_pool_returns_every_chunk_in_order():
    assert list(run_parallel("-", iter(range(20)), 3, _echo)) == list(range(20))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_killed_mid_message_is_an_error_not_a_hang(workers):
    outcome: list[Any] = []

    def consume() -> None:
        try:
            outcome.append(list(run_parallel("-", iter(range(50)), workers,
                                             _dies_mid_message)))
        except NerwinError as e:
            outcome.append(e)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive(), "the pool hung on a dead worker's half-written result"
    assert isinstance(outcome[0], NerwinError), outcome
    assert "died (killed by signal SIGKILL)" in str(outcome[0])
