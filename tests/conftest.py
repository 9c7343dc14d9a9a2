"""Shared fixtures: the path of ../shared/data, a helper to write small files, and run_cli."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The BLAS thread count comes first, before anything below imports numpy: the tests call the
# CLI in-process and compare its arrays with child processes' (resume after kill -9, sweeps),
# and two thread counts round a product differently on some CPUs. The variables only work
# before numpy loads; if a pytest plugin loaded numpy earlier, OpenBLAS is told directly.
from nerwin.threads import pin_blas_threads_to_environment

pin_blas_threads_to_environment()

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

if TYPE_CHECKING:
    from click.testing import Result

# In CI (CI=true) property tests draw the same examples every run: a red CI is then
# reproducible, never a one-off draw. Locally they explore new examples each run.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
# Config overrides that turn on every token feature but gazetteers (tests of features).
ALL_FEATURES = ["features.prefixes=[2]", "features.suffixes=[2,3]", "features.shape_dim=4",
                "features.char_filters=8", "features.char_dim=5", "features.affix_dim=6"]


def docs_text() -> str:
    """README.md and every page of docs/ as one text: the documentation tests check what the
    docs say wherever it is written (README keeps the newcomer's parts, docs/ the reference),
    each page starting on a line of its own so that `\n## ` still ends a section."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return "\n\n".join(p.read_text(encoding="utf-8").rstrip("\n") + "\n" for p in pages)


def run_cli(*args: object, **kwargs: Any) -> Result:
    """Run the nerwin command line in this process on ``args`` (each str()-ed); click's
    Result (exit_code, output, exception). ``kwargs`` go to CliRunner.invoke (``input=``)."""
    from click.testing import CliRunner

    from nerwin.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)


def shared_file(rel: str) -> Path:
    """A file under ../shared/data: skip when absent, fail when CI requires it."""
    path = SHARED / rel
    if not path.is_file():
        reason = (f"{path} is absent: shared data sits beside the checkout on developer "
                  f"machines and in CI (see ../shared/data/README.md)")
        if os.environ.get("NERWIN_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"NERWIN_REQUIRE_SHARED_DATA=1 but {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture
def write(tmp_path: Path):
    """write(name, text_or_bytes) -> path of a new file in tmp_path."""

    def _write(name: str, content: str | bytes) -> Path:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")
        return p

    return _write


@pytest.fixture
def shared_data():
    """shared_data(rel) -> path under ../shared/data (skip if absent; fail if required)."""
    return shared_file


def train_and_resume(config: Path, args: list[str], tmp_path: Path) -> tuple[Path, dict]:
    """Train 2 epochs into tmp_path/full; train 1 into tmp_path/part and --resume it to 2;
    require last/ of both to hold the same arrays, bit for bit. Returns (full, its arrays)."""
    from nerwin.checkpoint import load_checkpoint

    run = run_cli
    full, part = tmp_path / "full", tmp_path / "part"
    r = run("train", config, "--out", full, "--quiet", "--set", "training.epochs=2", *args)
    assert r.exit_code == 0, r.output
    r = run("train", config, "--out", part, "--quiet", "--set", "training.epochs=1", *args)
    assert r.exit_code == 0, r.output
    r = run("train", config, "--out", part, "--quiet", "--resume", "--set", "training.epochs=2",
            *args)
    assert r.exit_code == 0, r.output
    a, _ = load_checkpoint(full / "last")
    b, _ = load_checkpoint(part / "last")
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    return full, a


def conll_sets(*, dev: bool) -> list[str]:
    """``--set`` arguments that point a CoNLL-2003 config at ../shared/data: the training
    file and GloVe, the dev file when ``dev`` (else none), never the test file."""
    dev_value = shared_file("conll2003/valid.txt") if dev else "null"
    return ["--set", f"data.train={shared_file('conll2003/train.txt')}",
            "--set", f"data.dev={dev_value}", "--set", "data.test=null",
            "--set", f"features.vectors={shared_file('embeddings/glove.6B.50d.txt.gz')}"]



def snapshot(root: Path) -> dict[str, object]:
    """Every entry under ``root`` (links not followed): a link's target, a file's bytes, a
    folder, or the kind of anything else (FIFO, socket). Equal snapshots before and after a
    command mean it changed nothing there."""
    seen: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            key = str(p.relative_to(root))
            if p.is_symlink():
                seen[key] = ("link", os.readlink(p))
            elif p.is_dir():
                seen[key] = "dir"
            elif p.is_file():
                seen[key] = p.read_bytes()
            else:
                seen[key] = "fifo" if p.is_fifo() else "special"
    return seen


def descendants(pid: int) -> list[tuple[int, int, str]]:
    """(pid, parent pid, command line) of every process below ``pid`` (from /proc)."""
    procs = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, ValueError, IndexError):
                continue
            procs[int(d.name)] = (ppid, cmd)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c, (pp, cmd) in procs.items():
            if pp == p:
                out.append((c, pp, cmd))
                todo.append(c)
    return out


def forkserver_workers(p: Any, n: int, timeout: float) -> list[int]:
    """The pids of the worker processes of ``p`` (children of its fork server, itself a
    child of ``p``), waited for until there are ``n``, ``p`` ends or ``timeout`` s pass."""
    import time

    workers: list[int] = []
    deadline = time.monotonic() + timeout
    while len(workers) < n and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.1)
        kids = descendants(p.pid)
        ids = {c for c, _, _ in kids}
        workers = [c for c, pp, cmd in kids if pp in ids and "forkserver" in cmd]
    return workers


def wait_for_no_descendants(pid: int, timeout: float = 10) -> None:
    """Wait until ``pid`` has no process below it (at most ``timeout`` s)."""
    import time

    deadline = time.monotonic() + timeout
    while descendants(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def default_sigint() -> None:
    """A child's preexec_fn: SIGINT at its default, as a terminal gives it. A test run
    started as a background job of a script has SIGINT ignored, and children inherit that."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
