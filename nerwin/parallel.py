"""``nerwin tag --workers N``: chunks tagged in N processes, written in input order.

(``nerwin eval --workers N`` runs its chunks through the same pool, :func:`run_parallel`,
with its own task: nerwin.evaluation.)

The parent reads the input and cuts it into the very chunks one process would tag
(nerwin.tagging.record_chunks: text as whole lines cut by their characters, one string a
chunk, without tokenising; CoNLL as whole sentences), sends them to the workers, and writes
the results (the formatted text and its counts) in input order. Each worker loads the model
once and tokenises, tags and formats one chunk at a time (nerwin.tagging.tag_chunk), so the
output is byte-identical to one process: the same chunks go through the same code.

Memory is bounded: at most 2·N chunks are in flight (queued, being tagged, or done and
waiting for an earlier one), whatever the input's size. The workers are started with
'forkserver' where it exists (else 'spawn'): a fresh interpreter, no copy of the parent's
state or threads.

Failures: a worker that dies (killed, out of memory) or raises is reported as one line
naming it and its exit code or signal; Ctrl-C stops the parent. Either way the workers are
terminated, and the caller's atomic writer discards the partial output.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

from nerwin.allocator import collect_less
from nerwin.errors import NerwinError

POLL_S = 0.2  # how often a waiting parent checks that its workers are alive


def _context() -> Any:
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        # The fork server imports these once; each worker starts from it with them loaded.
        ctx.set_forkserver_preload(["nerwin.tagging", "nerwin.model", "nerwin.api"])
        return ctx
    return mp.get_context("spawn")


def start_early() -> None:
    """Start the fork server now, if workers start from one: it imports nerwin while the
    caller goes on with its own start-up (``nerwin tag`` imports and loads the model),
    rather than after it; the workers are forked from it when the first chunk is ready."""
    ctx = _context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _tagger_task(output_format: str, model_dir: str) -> Callable[[Any], Any]:
    """The tagging task of a worker: load the model, then tag_chunk each chunk."""
    from nerwin.api import load_model  # a checkpoint folder or an .onnx file, as nerwin tag
    from nerwin.tagging import Tagger, tag_chunk

    tagger = Tagger(load_model(model_dir))
    return lambda chunk: tag_chunk(tagger, chunk, output_format)


def _worker(model_dir: str, task: Callable[[str], Callable[[Any], Any]], tasks: Any,
            results: Any) -> None:
    """``task(model_dir)`` (it loads the model once), then run what it returns on chunks
    from ``tasks`` until a None arrives."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        run = task(model_dir)
    except Exception as e:  # noqa: BLE001 - reported to the parent as one line
        results.put(("error", -1, f"{type(e).__name__}: {e}" if not isinstance(
            e, NerwinError) else str(e)))
        return
    collect_less()  # as nerwin tag does in one process, once the model is loaded
    while True:
        item = tasks.get()
        if item is None:
            return
        seq, chunk = item
        try:
            results.put(("ok", seq, run(chunk)))
        except Exception as e:  # noqa: BLE001
            results.put(("error", seq, str(e) if isinstance(e, NerwinError)
                         else f"{type(e).__name__}: {e}"))
            return


_STOP = ("stop", -1, None)  # put by the parent itself: the pump's last item


def _pump(results: Any, inbox: queue.Queue[Any]) -> None:
    """Move the workers' results into ``inbox`` until the parent's _STOP arrives."""
    try:
        while True:
            item = results.get()
            if item == _STOP:
                return
            inbox.put(item)
    except (EOFError, OSError, ValueError):  # the queue was closed under it
        return


def _describe(p: Any) -> str:
    code = p.exitcode
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Workers:
    """A runner for nerwin.tagging.tag_stream: its chunks tagged by ``n`` processes that
    each load the model in ``model_dir``."""

    def __init__(self, model_dir: str, n: int) -> None:
        self.model_dir, self.n = model_dir, n

    def __call__(self, parts: Iterable[list[Any]], output_format: str
                 ) -> Iterator[tuple[str, Any]]:
        return tag_parallel(self.model_dir, parts, output_format, self.n)


def tag_parallel(model_dir: str, parts: Iterable[list[Any]], output_format: str,
                 workers: int) -> Iterator[tuple[str, Any]]:
    """(output text, TagStats) of each chunk of ``parts``, in order, tagged by ``workers``
    processes that each load the model in ``model_dir``."""
    return run_parallel(model_dir, parts, workers, partial(_tagger_task, output_format))


def run_parallel(model_dir: str, parts: Iterable[Any], workers: int,
                 task: Callable[[str], Callable[[Any], Any]], what: str = "tagging"
                 ) -> Iterator[Any]:
    """The results of each chunk of ``parts``, in order, computed by ``workers``
    processes: each calls ``task(model_dir)`` once (it loads the model) and applies the
    function it returns to one chunk at a time. ``task`` must be picklable (a module-level
    function, or a functools.partial of one); ``what`` names the work in error messages
    and the processes (``nerwin-tag-1``, ``nerwin-eval-1``, ...)."""
    ctx = _context()
    tasks = ctx.Queue(maxsize=workers)
    results = ctx.Queue()
    short = {"tagging": "tag", "evaluation": "eval"}.get(what, what)
    procs = [ctx.Process(target=_worker, args=(model_dir, task, tasks, results),
                         name=f"nerwin-{short}-{k + 1}", daemon=True) for k in range(workers)]
    for p in procs:
        p.start()
    max_in_flight = 2 * workers
    src = iter(parts)
    done_reading = False
    sent = written = 0
    ready: dict[int, tuple[str, Any]] = {}

    def check_alive() -> None:
        # Called while work is outstanding: a worker ends only on a None, sent after it.
        for p in procs:
            if p.exitcode is not None:
                raise NerwinError(f"{what} worker {p.name} died ({_describe(p)}); the "
                                  f"output is incomplete, so none was written")

    def put(item: Any) -> None:
        while True:
            try:
                tasks.put(item, timeout=POLL_S)
                return
            except queue.Full:
                check_alive()

    # The results are read by a thread into ``inbox``: a worker killed while writing a
    # result leaves half a message in the pipe, and a read of it would block for ever; the
    # thread may block so, but this loop waits on ``inbox`` with a timeout and sees the
    # worker gone (check_alive).
    inbox: queue.Queue[Any] = queue.Queue()
    pump = threading.Thread(target=_pump, args=(results, inbox), daemon=True,
                            name=f"nerwin-{short}-results")
    pump.start()
    try:
        while True:
            while not done_reading and sent - written < max_in_flight:
                chunk = next(src, None)  # the parent reads: input errors surface here
                if chunk is None:
                    done_reading = True
                    break
                put((sent, chunk))
                sent += 1
            # A worker that died is an error even if the others could finish its share:
            # the run is not the one asked for (and its chunk may be lost).
            check_alive()
            if done_reading and written == sent:
                break
            try:
                kind, seq, payload = inbox.get(timeout=POLL_S)
            except queue.Empty:
                check_alive()
                continue
            if kind == "error":
                raise NerwinError(f"{what} worker failed: {payload}")
            ready[seq] = payload
            while written in ready:
                yield ready.pop(written)
                written += 1
        for _ in procs:
            try:
                tasks.put(None, timeout=POLL_S)
            except queue.Full:  # pragma: no cover - all work is done: terminated below
                break
        for p in procs:
            p.join(timeout=10)
    finally:
        results.put(_STOP)  # ends the pump, unless it is stuck on a dead worker's message
        pump.join(timeout=1)
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
        for q in (tasks, results):
            q.cancel_join_thread()  # never wait on data nobody will read
            q.close()
