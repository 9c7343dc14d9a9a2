"""One rule for every file nerwin writes, and for standard output (nerwin.atomic, cli.main).

Table-driven: every option that takes an output path x every path problem gives one line,
the right exit code (2 for the path the user gave, 1 for a full disk), no traceback, and
leaves the user's files exactly as they were (no file replaced, no temporary file left).
Standard output on a full disk is one line and exit 1 for every command that prints; a
closed pipe is a quiet exit. Every kind of damage to a metrics.jsonl that `plot` reads back
is one line naming the file and the line.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run_cli, snapshot

from nerwin import atomic
from nerwin.errors import NerwinError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "configs" / "sample.yaml"
TEST = ROOT / "data" / "sample" / "test.txt"
TEXT = "Karel Vosk visited Prague with Acme Corp.\nThe weather was fine.\n"


def metrics_lines(n: int = 3) -> str:
    return "".join(json.dumps({"epoch": e, "step": e, "train_loss": 1.0 / e, "lr": 0.01,
                               "dev_loss": 0.5, "dev_f1": 50.0 + e,
                               "dev_per_type_f1": {"PER": 40.0}, "best": e == 2}) + "\n"
                   for e in range(1, n + 1))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run of the sample config, one epoch: its best/ is the model of eval and tag."""
    out = tmp_path_factory.mktemp("trained") / "run"
    r = run_cli("train", SAMPLE, "--out", out, "--quiet", "--set", "training.epochs=1",
                "--set", "data.test=null")
    assert r.exit_code == 0, r.output
    return out


# --- the table ---------------------------------------------------------------------------

# Each command: (name, suffix of the file it writes, args(case, dest, trained)). For "plot
# default" the destination is fixed (RUN_DIR/learning_curves.png), so only the problems
# at that name, and the read-only folder, apply.
Command = tuple[str, str, Callable[[Path, Path, Path], list[object]]]


def _run_dir(case: Path) -> Path:
    d = case / "run"
    d.mkdir(exist_ok=True)
    (d / "metrics.jsonl").write_text(metrics_lines())
    return d


def _tag_input(case: Path) -> Path:
    p = case / "input.txt"
    p.write_text(TEXT)
    return p


COMMANDS: list[Command] = [
    ("plot --output", ".png", lambda c, d, m: ["plot", _run_dir(c), "--output", d]),
    ("plot default", ".png", lambda c, d, m: ["plot", d.parent]),
    ("eval --confusion", ".svg", lambda c, d, m: ["eval", m / "best", TEST, "--confusion", d]),
    ("eval --predictions", ".txt",
     lambda c, d, m: ["eval", m / "best", TEST, "--predictions", d]),
    ("config init", ".yaml", lambda c, d, m: ["config", "init", d]),
    ("config init --force", ".yaml", lambda c, d, m: ["config", "init", d, "--force"]),
    ("tag --output", ".txt",
     lambda c, d, m: ["tag", m / "best", _tag_input(c), "--output", d, "--quiet"]),
    ("convert OUT", ".txt", lambda c, d, m: ["convert", TEST, d, "--to", "iobes"]),
    ("convert OUT jsonl", ".jsonl", lambda c, d, m: ["convert", TEST, d, "--to", "jsonl"]),
    ("export OUT.onnx", ".onnx", lambda c, d, m: ["export", m / "best", d]),
]


def _deny_writes_to(folder: Path, monkeypatch) -> None:
    """Make ``folder`` unwritable for this process, also when it runs as root.

    chmod 0o555 is enough for an ordinary user; root writes anyway (and this machine has
    neither chattr nor read-only bind mounts for tests), so os.access, which is what the
    check asks, is told the truth an ordinary user would see.
    """
    folder.chmod(0o555)
    real = os.access
    target = folder.resolve()

    def access(path, mode, *a, **kw):
        if mode & os.W_OK and Path(path).resolve() == target:
            return False
        return real(path, mode, *a, **kw)

    monkeypatch.setattr(os, "access", access)


def _full_disk(monkeypatch) -> None:
    """Every write to one of nerwin's temporary files fails with ENOSPC (a full disk);
    other writes (pytest's own) go through."""
    real = os.write

    def write(fd, data):
        try:
            name = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            name = ""
        if ".tmp-" in name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


# Each problem: (name, make(case, file name, plot_default, monkeypatch) -> destination,
# words the message must hold, exit code).
def _missing_folder(c, name, fixed, mp):
    return c / "nope" / name


def _unwritable(c, name, fixed, mp):
    folder = _run_dir(c) if fixed else c / "ro"
    folder.mkdir(exist_ok=True)
    _deny_writes_to(folder, mp)
    return folder / name


def _dest(c, name, fixed):
    return _run_dir(c) / name if fixed else c / name


def _symlink_to_file(c, name, fixed, mp):
    (c / "mine.txt").write_text("the user's own file")
    d = _dest(c, name, fixed)
    d.symlink_to(c / "mine.txt")
    return d


def _dangling_symlink(c, name, fixed, mp):
    d = _dest(c, name, fixed)
    d.symlink_to(c / "not-there-yet")
    return d


def _fifo(c, name, fixed, mp):
    d = _dest(c, name, fixed)
    os.mkfifo(d)
    return d


def _folder(c, name, fixed, mp):
    d = _dest(c, name, fixed)
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    return d


def _below_a_file(c, name, fixed, mp):
    (c / "afile").write_text("a file, not a folder")
    return c / "afile" / name


def _deep_below_a_file(c, name, fixed, mp):
    (c / "afile").write_text("a file, not a folder")
    return c / "afile" / "sub" / name


def _link_loop(c, name, fixed, mp):
    if fixed:  # a loop at the name itself is a symlink there
        d = _dest(c, name, fixed)
        d.symlink_to(d)
        return d
    (c / "loop").symlink_to(c / "loop")
    return c / "loop" / name


def _disk_full(c, name, fixed, mp):
    d = _dest(c, name, fixed)
    _full_disk(mp)
    return d


PROBLEMS = [
    ("missing folder", _missing_folder, "does not exist", 2),
    ("unwritable folder", _unwritable, "not writable", 2),
    ("symlink to a file", _symlink_to_file, "is a symbolic link", 2),
    ("dangling symlink", _dangling_symlink, "is a symbolic link", 2),
    ("FIFO", _fifo, "FIFO", 2),
    ("folder", _folder, "is a folder", 2),
    ("below a file", _below_a_file, "lies below", 2),
    ("two levels below a file", _deep_below_a_file, "lies below", 2),
    ("symlink loop", _link_loop, "symbolic link", 2),
    ("disk full", _disk_full, "No space left on device", 1),
]


# plot's default picture is always RUN_DIR/learning_curves.png: a missing RUN_DIR, or one
# below a file, is the read of its metrics.jsonl failing (tested below), not the write.
NOT_AT_A_FIXED_NAME = {"missing folder", "below a file", "two levels below a file"}
CASES = [pytest.param(c, p, id=f"{c[0]}-{p[0]}") for c in COMMANDS for p in PROBLEMS
         if not (c[0] == "plot default" and p[0] in NOT_AT_A_FIXED_NAME)]


@pytest.mark.parametrize("command,problem", CASES)
def test_every_output_path_x_every_problem(command, problem, trained, tmp_path, monkeypatch):
    cname, suffix, build = command
    _, make, words, code = problem
    case = tmp_path / "case"
    case.mkdir()
    dest = make(case, f"out{suffix}" if cname != "plot default" else "learning_curves.png",
                cname == "plot default", monkeypatch)
    args = build(case, dest, trained)
    before = snapshot(case)
    r = run_cli(*args)
    assert r.exit_code == code, (r.exit_code, r.output, r.exception)
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    lines = r.output.strip().splitlines()
    assert len(lines) == 1, r.output
    assert lines[0].startswith("Error: ") and words in lines[0], lines[0]
    assert dest.name in lines[0], lines[0]
    assert snapshot(case) == before  # nothing replaced, nothing created, no temporary left


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_output_path_works_and_replaces_only_a_regular_file(command, trained, tmp_path):
    """The control: a good path is written, an old regular file there is replaced (except
    by config init without --force, which refuses it), and no temporary file is left."""
    cname, suffix, build = command
    case = tmp_path / "case"
    case.mkdir()
    fixed = cname == "plot default"
    dest = _run_dir(case) / "learning_curves.png" if fixed else case / f"out{suffix}"
    dest.write_bytes(b"old")
    r = run_cli(*build(case, dest, trained))
    if cname == "config init":
        assert r.exit_code == 2 and "exists; pass --force" in r.output, r.output
        assert dest.read_bytes() == b"old"
        return
    assert r.exit_code == 0, r.output
    assert dest.read_bytes() != b"old" and dest.stat().st_size > 100
    assert not [p for p in dest.parent.iterdir() if ".tmp-" in p.name]


def test_a_file_appearing_during_config_init_is_not_replaced(tmp_path, monkeypatch):
    """Without --force the rename never replaces: a file created between the check and the
    rename (by another process) stays."""
    dest = tmp_path / "c.yaml"
    real = atomic.check_destination
    calls = {"n": 0}

    def check(path, what="the file", *, replace=True):
        calls["n"] += 1
        out = real(path, what, replace=replace)
        if calls["n"] == 2:  # the check right before the rename: someone writes there now
            dest.write_text("theirs")
        return out

    monkeypatch.setattr(atomic, "check_destination", check)
    r = run_cli("config", "init", dest)
    assert r.exit_code == 2 and "exists; pass --force" in r.output, r.output
    assert dest.read_text() == "theirs" and sorted(os.listdir(tmp_path)) == ["c.yaml"]


def test_a_read_error_of_the_streamed_input_is_not_called_a_write_error(tmp_path):
    """atomic_writer converts only its own failed writes; the block's errors pass through."""
    dest = tmp_path / "out.txt"
    with pytest.raises(OSError, match="input went away"), atomic.atomic_writer(dest) as out:
        out.write("partial")
        raise OSError(errno.EIO, "input went away")
    assert not dest.exists() and os.listdir(tmp_path) == []


def test_a_full_disk_while_streaming_is_one_error(tmp_path, monkeypatch):
    dest = tmp_path / "out.txt"
    dest.write_text("old")
    _full_disk(monkeypatch)
    with pytest.raises(NerwinError, match="No space left on device") as e, \
            atomic.atomic_writer(dest, "--output") as out:
        for _ in range(10_000):  # more than one buffer: the error comes mid-stream
            out.write("some tagged text\n")
    assert e.value.exit_code == 1
    assert dest.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]


# --- standard output -----------------------------------------------------------------------


def _nerwin(args: list[object], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "nerwin", *map(str, args)], env=env,
                          stderr=subprocess.PIPE, text=True, timeout=300, **kw)


def _stdout_commands(trained: Path, tmp: Path) -> dict[str, tuple[list[object], str | None]]:
    """Every command that prints to standard output: (args, its standard input)."""
    run = _run_dir(tmp)
    return {
        "tag": (["tag", trained / "best", "-"], TEXT * 50),
        "tag jsonl": (["tag", trained / "best", "-", "--output-format", "jsonl"], TEXT),
        "eval": (["eval", trained / "best", TEST], None),
        "eval --conlleval": (["eval", trained / "best", TEST, "--conlleval"], None),
        "eval --json": (["eval", trained / "best", TEST, "--json"], None),
        "config keys": (["config", "keys"], None),
        "config show": (["config", "show", SAMPLE], None),
        "data": (["data", TEST], None),
        "data --json": (["data", TEST, "--json"], None),
        "plot": (["plot", run, "--output", tmp / "p.svg"], None),
        "--help": (["--help"], None),
    }


STDOUT_CASES = ["tag", "tag jsonl", "eval", "eval --conlleval", "eval --json", "config keys",
                "config show", "data", "data --json", "plot", "--help"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
@pytest.mark.parametrize("name", STDOUT_CASES)
def test_standard_output_on_a_full_disk_is_one_line_and_exit_1(name, trained, tmp_path):
    args, stdin = _stdout_commands(trained, tmp_path)[name]
    with open("/dev/full", "w") as full:
        r = _nerwin(args, stdout=full, input=stdin)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip() == "Error: cannot write to standard output: No space left on " \
                               "device", r.stderr


@pytest.mark.parametrize("name", STDOUT_CASES)
def test_a_closed_pipe_is_a_quiet_exit(name, trained, tmp_path):
    """`nerwin ... | head -1` once head has gone: no message, no traceback, and the status a
    Unix tool killed by SIGPIPE shows in the shell (141), so pipefail sees it."""
    args, stdin = _stdout_commands(trained, tmp_path)[name]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write: EPIPE, every time
    try:
        r = _nerwin(args, stdout=write_end, input=stdin)
    finally:
        os.close(write_end)
    assert r.returncode == 141, r.stderr
    assert r.stderr == ""


def test_stdout_still_works(trained):
    r = _nerwin(["config", "keys"], stdout=subprocess.PIPE)
    assert r.returncode == 0 and r.stdout.startswith("| key |") and r.stderr == ""


# --- metrics.jsonl read back by plot ------------------------------------------------------

GOOD = json.dumps({"epoch": 1, "train_loss": 1.0, "lr": 0.1})
DAMAGED_METRICS = [
    ("invalid UTF-8", GOOD.encode() + b"\n" + b'{"epoch": 2, "x": "\xff"}\n', 2,
     "invalid UTF-8"),
    ("invalid UTF-8 on the last line", GOOD.encode() + b"\n\xc3(", 2, "invalid UTF-8"),
    ("not JSON", f"{GOOD}\nnot json\n{GOOD}\n", 2, "not valid JSON"),
    ("not JSON, last line ends in a newline", f"{GOOD}\n{{\"epo\n", 2, "not valid JSON"),
    ("nested too deeply", GOOD + "\n" + "[" * 100_000 + "]" * 100_000 + "\n", 2,
     "not valid JSON"),
    ("a list", f"{GOOD}\n[1, 2]\n", 2, "expected a JSON object, got list"),
    ("a number", f"{GOOD}\n3\n", 2, "expected a JSON object, got int"),
    ("no epoch", f'{GOOD}\n{{"train_loss": 1.0}}\n', 2, "no 'epoch' key"),
    ("epoch a string", '{"epoch": "1"}\n', 1, "'epoch' must be a positive integer"),
    ("epoch a float", '{"epoch": 1.5}\n', 1, "'epoch' must be a positive integer"),
    ("epoch true", '{"epoch": true}\n', 1, "'epoch' must be a positive integer"),
    ("epoch zero", '{"epoch": 0}\n', 1, "'epoch' must be a positive integer"),
    ("epoch huge", '{"epoch": 1' + "0" * 400 + "}\n", 1, "'epoch' must be a positive integer"),
    ("train_loss a string", '{"epoch": 1, "train_loss": "low"}\n', 1,
     "'train_loss' must be a number"),
    ("lr a list", '{"epoch": 1, "lr": [0.1]}\n', 1, "'lr' must be a number"),
    ("dev_f1 a bool", '{"epoch": 1, "dev_f1": true}\n', 1, "'dev_f1' must be a number"),
    ("dev_per_type_f1 a list", '{"epoch": 1, "dev_per_type_f1": [1]}\n', 1,
     "'dev_per_type_f1' must be an object"),
    ("a per-type F1 a string", '{"epoch": 1, "dev_per_type_f1": {"PER": "x"}}\n', 1,
     "'dev_per_type_f1' of 'PER' must be a number"),
    ("best a string", '{"epoch": 1, "best": "yes"}\n', 1, "'best' must be true or false"),
]


@pytest.mark.parametrize("content,line,words", [d[1:] for d in DAMAGED_METRICS],
                         ids=[d[0] for d in DAMAGED_METRICS])
def test_damaged_metrics_is_one_line_naming_file_and_line(content, line, words, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    p = run / "metrics.jsonl"
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    r = run_cli("plot", run)
    assert r.exit_code == 2, (r.output, r.exception)
    assert "Traceback" not in r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1, r.output
    assert f"metrics.jsonl:{line}: " in lines[0] and words in lines[0], lines[0]
    assert sorted(os.listdir(run)) == ["metrics.jsonl"]  # no picture of a damaged run


@pytest.mark.parametrize("content,words", [
    ("", "no epochs recorded yet"),
    ("\n\n  \n", "no epochs recorded yet"),
    ('{"epo', "no epochs recorded yet"),  # only a torn line: nothing to draw yet
])
def test_empty_metrics_is_one_line(content, words, tmp_path):
    (tmp_path / "metrics.jsonl").write_text(content)
    r = run_cli("plot", tmp_path)
    assert r.exit_code == 2 and r.output.count("\n") == 1 and words in r.output, r.output


@pytest.mark.parametrize("kind", ["folder", "fifo", "dangling symlink"])
def test_metrics_that_is_not_a_file(kind, tmp_path):
    p = tmp_path / "metrics.jsonl"
    if kind == "folder":
        p.mkdir()
    elif kind == "fifo":
        os.mkfifo(p)  # must not block waiting for a writer
    else:
        p.symlink_to(tmp_path / "gone")
    r = run_cli("plot", tmp_path)
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    assert "metrics.jsonl" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("path", ["", ".", "..", "/", "sub/", "out.png/"])
@pytest.mark.parametrize("command", [c for c in COMMANDS if c[0] != "plot default"],
                         ids=[c[0] for c in COMMANDS if c[0] != "plot default"])
def test_a_path_that_names_no_file_is_one_line(command, path, trained, tmp_path, monkeypatch):
    _, _, build = command
    case = tmp_path / "case"
    case.mkdir()
    (case / "sub").mkdir()
    monkeypatch.chdir(case)
    args = build(case, Path(path), trained)
    args[args.index(Path(path))] = path  # the string as typed: Path("") would be "."
    before = snapshot(case)
    r = run_cli(*args)
    assert r.exit_code == 2, (r.output, r.exception)
    assert r.output.count("\n") == 1 and r.output.startswith("Error: "), r.output
    assert snapshot(case) == before


# --- every step of the write failing: one error, the old file kept, nothing left behind ---

def _fail(err: int):
    def boom(*a, **kw):
        raise OSError(err, os.strerror(err))
    return boom


WRITE_STEPS = [
    ("create: permission denied", "create_new", errno.EACCES, 2, "Permission denied"),
    ("create: disk full", "create_new", errno.ENOSPC, 1, "No space left on device"),
    ("create: read-only file system", "create_new", errno.EROFS, 2, "Read-only file system"),
    ("create: name too long", "create_new", errno.ENAMETOOLONG, 2, "File name too long"),
    ("fsync: I/O error", "fsync", errno.EIO, 1, "Input/output error"),
    ("fsync: quota", "fsync", errno.EDQUOT, 1, "Disk quota exceeded"),
    ("rename: permission denied", "replace", errno.EACCES, 2, "Permission denied"),
]


@pytest.mark.parametrize("step,target,err,code,words", WRITE_STEPS,
                         ids=[s[0] for s in WRITE_STEPS])
def test_each_step_of_the_write_failing(step, target, err, code, words, tmp_path, monkeypatch):
    dest = tmp_path / "out.txt"
    dest.write_text("old")
    if target == "create_new":
        monkeypatch.setattr(atomic, "create_new", _fail(err))
    else:
        monkeypatch.setattr(os, target, _fail(err))
    with pytest.raises(NerwinError) as e:
        atomic.atomic_write_text(dest, "new", "--output")
    assert e.value.exit_code == code
    msg = str(e.value)
    assert msg.startswith(f"{dest}: cannot write --output: ") and words in msg, msg
    assert "\n" not in msg
    monkeypatch.undo()
    assert dest.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]
