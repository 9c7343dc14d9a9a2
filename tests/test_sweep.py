"""`nerwin sweep`: the space is validated like --set; trials are run directories; the study is
shared by concurrent sweeps, resumable after a kill, and a diverging trial is not fatal.

Every sweep here trains the sample corpus for 2 epochs with 20 hidden units (under a second a
trial); the workers are real processes on a real SQLite file, or on a real PostgreSQL server
(tests/pg_server.py; see the fixture below). Bad --out folders, damaged sweep.json and
study.db files and bad storage URLs are tables: one line each, no traceback, no password,
nothing changed on disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import default_sigint, docs_text, snapshot
from conftest import run_cli as run

from nerwin.config import load_config
from nerwin.errors import NerwinError
from nerwin.space import parse_space
from nerwin.sweep import SURPLUS

optuna = pytest.importorskip("optuna")

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "sample.yaml"
FAST = ["--set", "model.hidden=[20]", "--set", "training.epochs=2"]
SPACE = """\
training.optimizer.lr: {log_uniform: [1.0e-3, 3.0e-2]}
model.nonlinearity: {choice: [tanh, relu]}
"""



def sweep_args(space: Path, out: Path, *more) -> list[str]:
    return ["sweep", str(CONFIG), "--space", str(space), "--out", str(out), *FAST,
            *map(str, more)]


def study_trials(out: Path, name: str = "nerwin") -> list:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")
    return [t for t in study.get_trials() if not t.user_attrs.get(SURPLUS)]


def trial_dirs(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("trial-*"))


def test_two_workers_then_more_trials_adds_exactly_the_difference(tmp_path, write):
    space, out = write("space.yaml", SPACE), tmp_path / "sweep"
    r = run(*sweep_args(space, out, "--trials", 4, "--workers", 2))
    assert r.exit_code == 0, r.output
    assert trial_dirs(out) == [f"trial-{i:04d}" for i in range(4)]
    header = r.output.splitlines()[0].split()
    assert header[:5] == ["rank", "trial", "state", "training.optimizer.lr",
                          "model.nonlinearity"]
    assert "dev F1" in r.output.splitlines()[0] and "test F1" in r.output.splitlines()[0]
    trials = study_trials(out)
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    # The pruner was fed every epoch's dev F1: the intermediate values are metrics.jsonl's.
    for t in trials:
        lines = (out / f"trial-{t.number:04d}" / "metrics.jsonl").read_text().splitlines()
        dev = {json.loads(x)["epoch"]: json.loads(x)["dev_f1"] for x in lines}
        assert t.intermediate_values == pytest.approx(dev)
        assert t.user_attrs["best_f1"] == pytest.approx(max(dev.values()))
    before = {d: (out / d / "metrics.jsonl").read_bytes() for d in trial_dirs(out)}

    r = run(*sweep_args(space, out, "--trials", 6, "--workers", 2, "--json"))
    assert r.exit_code == 0, r.output
    j = json.loads(r.output)
    assert trial_dirs(out) == [f"trial-{i:04d}" for i in range(6)]
    assert sorted(row["trial"] for row in j["results"]) == list(range(6))
    for d, content in before.items():  # nothing finished was touched or run again
        assert (out / d / "metrics.jsonl").read_bytes() == content
    ranked = [row["best_dev_f1"] for row in j["results"] if row["state"] == "COMPLETE"]
    assert ranked == sorted(ranked, reverse=True)
    assert all(set(row["params"]) == {"training.optimizer.lr", "model.nonlinearity"}
               for row in j["results"])

    # best_config.yaml is the best trial's config: `nerwin train` reproduces its dev F1.
    best = next(row for row in j["results"] if row["state"] == "COMPLETE")
    assert j["best_config"] == str(out / "best_config.yaml")
    cfg = load_config(out / "best_config.yaml")
    assert cfg.training.optimizer.lr == best["params"]["training.optimizer.lr"]
    assert cfg.model.nonlinearity == best["params"]["model.nonlinearity"]
    assert cfg.model.hidden == (20,) and cfg.output.dir == out / "best_run"
    r = run("train", out / "best_config.yaml", "--quiet")
    assert r.exit_code == 0, r.output
    assert f"best dev F1 {best['best_dev_f1']:.2f}" in r.output


def test_two_sweeps_started_at_once_share_the_study(tmp_path, write):
    space, out = write("space.yaml", SPACE), tmp_path / "sweep"
    cmd = [sys.executable, "-m", "nerwin.cli", *sweep_args(space, out, "--trials", 4)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    trials = study_trials(out)
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # none lost, none twice
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    assert trial_dirs(out) == [f"trial-{i:04d}" for i in range(4)]
    for t in trials:  # each run directory trained once: one metrics line per epoch
        lines = (out / f"trial-{t.number:04d}" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["epoch"] for x in lines] == sorted(t.intermediate_values)


@pytest.mark.parametrize("space, expected", [
    ("model.nonlinearty: {choice: [tanh, relu]}\n",
     "model.nonlinearty: unknown key (did you mean 'model.nonlinearity'?)"),
    ("modle.hidden: {choice: [[20]]}\n", "modle: unknown key (did you mean 'model'?)"),
    ("model.nonlinearity: {choice: [tanh, relux]}\n", "model.nonlinearity: expected one of"),
    ("training.optimizer.lr: {log_uniform: [0, 0.1]}\n", "two numbers 0 < a < b"),
    ("training.epochs: {uniform: [1, 3]}\n", "training.epochs: expected an integer"),
    ("training.epochs: {int: [0, 3]}\n", "training.epochs: must be >= 1"),
    ("model.head: {choice: [logistic]}\n", "model.head = 'logistic': model.positive"),
    ("model.hidden: {range: [1, 3]}\n", "model.hidden: expected one of {choice"),
])
def test_bad_space_exits_2_naming_file_and_key(tmp_path, write, space, expected):
    path = write("space.yaml", space)
    r = run(*sweep_args(path, tmp_path / "sweep"))
    assert r.exit_code == 2, r.output
    line = r.output.strip()
    assert line.startswith(f"Error: {path}: ") and expected in line and "\n" not in line
    assert not (tmp_path / "sweep").exists()  # refused before anything ran


def test_parse_space_shapes():
    dims = parse_space({"a.b": {"int": [1, 3]}, "c.d": {"choice": [[1], [2, 3]]}}, "S")
    assert [(d.key, d.kind, d.values) for d in dims] == [
        ("a.b", "int", (1, 3)), ("c.d", "choice", ([1], [2, 3]))]
    for bad in ({}, [], {"a.b": {"choice": []}}, {"a.b": {"uniform": [2, 1]}},
                {"a.b": {"int": [1.5, 3]}}, {"a..b": {"int": [1, 2]}},
                {"output.dir": {"choice": ["x"]}}, {"a.b": {"choice": [1, 1]}}):
        with pytest.raises(NerwinError, match="^S: "):
            parse_space(bad, "S")


def test_list_choices_reach_the_config(tmp_path, write):
    space = write("space.yaml", "model.hidden: {choice: [[8], [6, 4]]}\n")
    out = tmp_path / "sweep"
    r = run(*sweep_args(space, out, "--trials", 2, "--set", "training.epochs=1", "--json"))
    assert r.exit_code == 0, r.output
    for row in json.loads(r.output)["results"]:
        cfg = load_config(Path(row["run_dir"]) / "config.yaml")
        assert list(cfg.model.hidden) == row["params"]["model.hidden"]
        assert row["params"]["model.hidden"] in ([8], [6, 4])


def test_diverging_trial_is_recorded_and_the_sweep_goes_on(tmp_path, write):
    # sgd at lr 1e6 with relu overflows to a NaN loss at step 3 (TrainingError). With sampler
    # seed 2 (training.seed), trial 1 draws it and trials 0 and 2 draw 0.003.
    space = write("space.yaml", "training.optimizer.lr: {choice: [0.003, 1.0e6]}\n")
    out = tmp_path / "sweep"
    r = run(*sweep_args(space, out, "--trials", 2, "--set", "training.optimizer.name=sgd",
                        "--set", "model.nonlinearity=relu", "--set", "training.seed=2"))
    assert r.exit_code == 0, r.output
    trials = {t.number: t for t in study_trials(out)}
    assert trials[1].state.name == "FAIL"
    assert "the loss became nan" in trials[1].user_attrs["error"]
    assert [t.state.name for n, t in sorted(trials.items()) if n != 1] == ["COMPLETE"] * 2
    assert "trial 1: the loss became nan" in r.output
    assert "fail" in r.output.splitlines()[-2] or "fail" in r.output


def _cmdlines() -> list[str]:
    out = []
    for p in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            out.append(p.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            pass
    return out


def test_killed_sweep_resumes_and_reruns_the_slot(tmp_path, write):
    space, out = write("space.yaml", SPACE), tmp_path / "sweep"
    args = sweep_args(space, out, "--trials", 2, "--set", "training.epochs=3")
    # Trial 0 must still be running when the kill comes, however slow or busy the machine:
    # the first sweep's trials train until killed (no real epoch limit, no early stopping).
    endless = sweep_args(space, out, "--trials", 2, "--set", "training.epochs=100000",
                         "--set", "training.patience=null")
    p = subprocess.Popen([sys.executable, "-m", "nerwin.cli", *endless], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "trial-0000" / "config.yaml").exists():  # trial 0 has started
            assert time.time() < deadline and p.poll() is None
            time.sleep(0.02)
    finally:
        os.killpg(p.pid, signal.SIGKILL)  # the sweep and its worker, mid-trial
        p.wait()
    assert study_trials(out)[0].state.name == "RUNNING"
    assert not (out / "trial-0000" / "test_scores.json").exists()

    r = run(*args)
    assert r.exit_code == 0, r.output
    assert "marked failed (their worker was gone): trials 0" in r.output
    trials = {t.number: t for t in study_trials(out)}
    assert trials[0].state.name == "FAIL" and "stale" in trials[0].user_attrs["error"]
    assert sorted(n for n, t in trials.items() if t.state.name != "FAIL") == [1, 2]
    assert trial_dirs(out) == ["trial-0000", "trial-0001", "trial-0002"]

    # A worker that finds the study full but a trial running waits; when that trial's
    # worker dies, it marks the trial failed and runs the freed slot.
    import socket
    import threading
    import warnings

    from nerwin import sweep as sw

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    study = optuna.load_study(study_name="nerwin", storage=f"sqlite:///{out / 'study.db'}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = study.ask()
    for k, v in {"host": socket.gethostname(), "pid": sleeper.pid,
                 "pid_start": sw._proc_start(sleeper.pid)}.items():
        t.set_user_attr(k, v)
    def kill_sleeper_once_a_worker_runs():  # workers start after the start-up stale check
        deadline = time.time() + 120
        while time.time() < deadline and not any(
                "nerwin.sweep" in c and str(out) in c for c in _cmdlines()):
            time.sleep(0.05)
        time.sleep(0.5)
        sleeper.kill()

    killer = threading.Thread(target=kill_sleeper_once_a_worker_runs, daemon=True)
    killer.start()
    try:
        more = [a if a != "2" else "3" for a in args]  # --trials 3
        r = run(*more)
    finally:
        sleeper.kill()
        sleeper.wait()
        killer.join()
    assert r.exit_code == 0, r.output
    assert "marked failed" not in r.output  # the sleeper was alive when the sweep began
    trials = {t.number: t.state.name for t in study_trials(out)}
    assert trials == {0: "FAIL", 1: "COMPLETE", 2: "COMPLETE", 3: "FAIL", 4: "COMPLETE"}
    assert trial_dirs(out) == [f"trial-{i:04d}" for i in (0, 1, 2, 4)]


def test_without_optuna_says_how_to_install(tmp_path, write, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    r = run(*sweep_args(write("space.yaml", SPACE), tmp_path / "sweep"))
    assert r.exit_code == 2
    assert r.output.strip() == ("Error: nerwin sweep needs Optuna: pip install "
                                "'nerwin[sweep]' (or pip install 'optuna>=3.5')")


def test_ctrl_c_records_the_running_trial_and_prints_the_table(tmp_path, write):
    space, out = write("space.yaml", SPACE), tmp_path / "sweep"
    # Trial 0 must still be running when Ctrl-C comes, however slow or busy the machine:
    # it trains until interrupted (no epoch limit worth the name, no early stopping).
    args = sweep_args(space, out, "--trials", 2, "--set", "training.epochs=100000",
                      "--set", "training.patience=null")
    # SIGINT as a terminal gives it: a background job of a script (as CI runs the suite)
    # inherits it ignored, and nerwin, like Python, keeps an inherited "ignore".
    p = subprocess.Popen([sys.executable, "-m", "nerwin.cli", *args], start_new_session=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=default_sigint)
    deadline = time.time() + 120
    while not (out / "trial-0000" / "config.yaml").exists():
        assert time.time() < deadline and p.poll() is None
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 130, stderr
    assert stdout.splitlines()[0].startswith("rank  trial  state")
    assert "trial 0: interrupted (Ctrl-C)" in stdout
    t0 = study_trials(out)[0]
    assert t0.state.name == "FAIL" and t0.user_attrs["error"] == "interrupted (Ctrl-C)"


def test_stale_means_process_gone_here_or_heartbeat_old_elsewhere(tmp_path, monkeypatch):
    import socket
    import warnings

    from nerwin import sweep as sw

    monkeypatch.setattr(sw, "HEARTBEAT_S", 1)
    monkeypatch.setattr(sw, "GRACE_S", 1)
    spec = sw.SweepSpec(config=str(CONFIG), space="-", out=str(tmp_path), trials=5,
                        storage=f"sqlite:///{tmp_path / 'study.db'}", study="s")
    storage = sw._storage(spec.storage)
    study = sw.open_study(spec, storage)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    here = socket.gethostname()
    owners = {"live": (here, os.getpid(), sw._proc_start(os.getpid())),
              "gone": (here, gone.pid, None), "far_old": ("elsewhere", 1, None),
              "far_fresh": ("elsewhere", 1, None)}
    trials = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (host, pid, start) in owners.items():
            trials[name] = t = study.ask()
            for k, v in {"host": host, "pid": pid, "pid_start": start}.items():
                t.set_user_attr(k, v)
    storage.record_heartbeat(trials["far_old"]._trial_id)
    time.sleep(2.2)
    storage.record_heartbeat(trials["far_fresh"]._trial_id)
    failed = sw.fail_stale_trials(study, storage)
    assert failed == [trials["gone"].number, trials["far_old"].number]
    states = {n: storage.get_trial(t._trial_id).state.name for n, t in trials.items()}
    assert states == {"live": "RUNNING", "gone": "FAIL", "far_old": "FAIL",
                      "far_fresh": "RUNNING"}


def test_shipped_space_validates_against_the_sample_config():
    from nerwin.space import load_space

    dims = load_space(ROOT / "configs" / "sample.space.yaml", CONFIG, [])
    assert {d.key for d in dims} == {"training.optimizer.lr", "model.nonlinearity"}


def test_no_completed_trial_exits_1_and_writes_no_best_config(tmp_path, write):
    space = write("space.yaml", "training.optimizer.lr: {choice: [1.0e6]}\n")
    out = tmp_path / "sweep"
    r = run(*sweep_args(space, out, "--trials", 1, "--set", "training.optimizer.name=sgd",
                        "--set", "model.nonlinearity=relu"))
    assert r.exit_code == 1, r.output
    assert "trial 0: the loss became nan" in r.output
    assert [t.state.name for t in study_trials(out)] == ["FAIL"]  # the worker gave up
    assert not (out / "best_config.yaml").exists()


def test_a_study_keeps_its_space(tmp_path, write):
    out = tmp_path / "sweep"
    first = write("a.yaml", "model.nonlinearity: {choice: [tanh]}\n")
    assert run(*sweep_args(first, out, "--trials", 1, "--set", "training.epochs=1")
               ).exit_code == 0
    other = write("b.yaml", "model.nonlinearity: {choice: [relu]}\n")
    r = run(*sweep_args(other, out, "--trials", 2))
    assert r.exit_code == 2
    assert f"{other}: study 'nerwin'" in r.output and "another search space" in r.output
    assert len(study_trials(out)) == 1
    r = run(*sweep_args(other, out, "--trials", 1, "--study", "second"))
    assert r.exit_code == 2  # run directories are named by trial number: one study a DIR
    assert f"{out}: holds the trials of study 'nerwin'" in r.output
    r = run(*sweep_args(other, tmp_path / "second", "--trials", 1, "--study", "second",
                        "--storage", f"sqlite:///{out / 'study.db'}", "--set",
                        "training.epochs=1", "--json"))
    assert r.exit_code == 0, r.output  # another study in the same storage, another DIR
    assert [row["state"] for row in json.loads(r.output)["results"]] == ["COMPLETE"]
    assert (tmp_path / "second" / "trial-0000" / "best").is_dir()
    assert len(study_trials(out)) == 1 and len(study_trials(out, "second")) == 1


def test_pruner_choice(tmp_path):
    from nerwin import sweep as sw

    spec = sw.SweepSpec(config=str(CONFIG), space="-", out=str(tmp_path), trials=1,
                        storage=f"sqlite:///{tmp_path / 'study.db'}", study="s")
    storage = sw._storage(spec.storage)
    pruner = sw.open_study(spec, storage).pruner
    assert isinstance(pruner, optuna.pruners.MedianPruner)
    assert (pruner._n_startup_trials, pruner._n_warmup_steps) == (5, 2)
    spec.prune = False
    assert isinstance(sw.open_study(spec, storage).pruner, optuna.pruners.NopPruner)


def test_sweep_help():
    r = run("sweep", "--help")
    assert r.exit_code == 0
    for opt in ("--space", "--out", "--trials", "--workers", "--storage", "--study", "--set",
                "--no-prune", "--json"):
        assert opt in r.output


# ---------------------------------------------------------------------------------------
# Bad --out folders, damaged files nerwin reads back, bad storage URLs. Every case: its exit
# code, one "Error:" line naming the file, no traceback, no password, nothing changed on
# disk (every file, folder and symlink under the case's folder compared before and after).

SECRET = "s3cr3t-PASS"


def one_error_line(output: str) -> str:
    assert "Traceback" not in output and SECRET not in output, output
    lines = [x for x in output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    return lines[0]


def _can_mount() -> bool:
    import shutil

    return os.geteuid() == 0 and shutil.which("mount") is not None


def _mount_tmpfs(where: Path, options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for this case ({r.stderr.strip()})")


@pytest.fixture
def mounts():
    """mounts(where, options): a tmpfs mounted for the test, unmounted after."""
    done: list[Path] = []

    def mount(where: Path, options: str) -> None:
        if not _can_mount():
            pytest.skip("a read-only or full folder needs root's mount (root ignores file "
                        "permissions); not root here")
        _mount_tmpfs(where, options)
        done.append(where)

    yield mount
    for where in reversed(done):
        subprocess.run(["umount", "-l", str(where)], check=False)


def _readonly(case: Path, mount) -> Path:
    """A read-only folder: a read-only tmpfs as root, mode 555 otherwise."""
    ro = case / "ro"
    if os.geteuid() == 0:
        mount(ro, "ro,size=1m")
    else:
        ro.mkdir()
        ro.chmod(0o555)
    return ro


def _readonly_sweep(case: Path, mount) -> Path:
    """A sweep's folder (sweep.json, a finished trial's folder) made read-only."""
    ro = case / "ro"
    if os.geteuid() == 0:
        mount(ro, "size=1m")
    else:
        ro.mkdir()
    out = ro / "out"
    _sweep_json(out)
    (out / "trial-0000").mkdir()
    (out / "study.db").write_bytes(b"")
    if os.geteuid() == 0:
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
    else:
        out.chmod(0o555)
    return out


def _full(case: Path, mount) -> Path:
    full = case / "full"
    mount(full, "size=64k")
    fd = os.open(full / "filler", os.O_WRONLY | os.O_CREAT)
    try:  # fill it: the next write gets ENOSPC
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return full


def _sweep_json(out: Path, **over) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = {"format": "nerwin-sweep", "study": "nerwin",
            "storage": f"sqlite:///{out / 'study.db'}", "best_config_sha256": None}
    data.update(over)
    (out / "sweep.json").write_text(json.dumps(data))


def _loop(case: Path) -> Path:
    (case / "a").symlink_to(case / "b")
    (case / "b").symlink_to(case / "a")
    return case / "a" / "out"


def _users_best_config(case: Path) -> Path:
    (case / "out").mkdir()
    (case / "out" / "best_config.yaml").write_text("model: {hidden: [7]}  # mine\n")
    return case / "out"


def _changed_best_config(case: Path) -> Path:
    out = case / "out"
    _sweep_json(out, best_config_sha256="0" * 64)
    (out / "best_config.yaml").write_text("# nerwin sweep: trial 0, best dev F1 1.00\n# edited\n")
    return out


def _old_sweep_json_users_best_config(case: Path) -> Path:
    out = case / "out"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps(
        {"study": "nerwin", "storage": f"sqlite:///{out / 'study.db'}"}))
    (out / "best_config.yaml").write_text("model: {hidden: [7]}  # mine\n")
    return out


def _below_file(case: Path) -> Path:
    (case / "f").write_text("x")
    return case / "f" / "out"


def _is_file(case: Path) -> Path:
    (case / "f").write_text("x")
    return case / "f"


def _users_folder(case: Path) -> Path:
    (case / "out").mkdir()
    (case / "out" / "notes.txt").write_text("mine")
    return case / "out"


def _sweep_json_symlink(case: Path) -> Path:
    (case / "out").mkdir()
    (case / "elsewhere.json").write_text("{}")
    (case / "out" / "sweep.json").symlink_to(case / "elsewhere.json")
    return case / "out"


def _best_config_symlink(case: Path) -> Path:
    out = case / "out"
    _sweep_json(out)
    (case / "mine.yaml").write_text("model: {hidden: [7]}\n")
    (out / "best_config.yaml").symlink_to(case / "mine.yaml")
    return out


def _study_db_gone(case: Path) -> Path:
    out = case / "out"
    _sweep_json(out)
    (out / "trial-0000").mkdir()
    return out


OUT_CASES = {
    # name: (make the --out path in the case folder, exit code, expected words)
    "below a file": (_below_file, 2, "lies below"),
    "a file": (_is_file, 2, "is not a folder"),
    "symlink loop": (_loop, 2, "cannot be a run directory"),
    "user's best_config.yaml": (_users_best_config, 2, "best_config.yaml: not written by a "
                                                       "nerwin sweep"),
    "user's folder": (_users_folder, 2, "notes.txt: not written by a nerwin sweep"),
    "best_config.yaml changed since": (_changed_best_config, 2, "best_config.yaml: not the "
                                                                "best_config.yaml this sweep"),
    "old sweep.json, user's best_config": (_old_sweep_json_users_best_config, 2,
                                           "best_config.yaml: not the"),
    "sweep.json a symlink": (_sweep_json_symlink, 2, "sweep.json: is not a regular file"),
    "best_config.yaml a symlink": (_best_config_symlink, 2, "best_config.yaml: not the"),
    "study.db gone, trials left": (_study_db_gone, 2, "study.db: missing, but"),
    "read-only parent": (lambda c, m: _readonly(c, m) / "out", 2, "cannot write the sweep folder"),
    "read-only folder": (_readonly, 2, "cannot write there (read-only or not yours)"),
    "read-only sweep folder": (_readonly_sweep, 2, "cannot write there (read-only"),
    "disk full": (lambda c, m: _full(c, m) / "out", 1, "No space left on device"),
    "disk full, three new folders": (lambda c, m: _full(c, m) / "a" / "b" / "out", 1,
                                     "No space left on device"),
}


@pytest.mark.parametrize("name", OUT_CASES)
def test_bad_out_is_one_line_and_changes_nothing(tmp_path, write, mounts, name):
    make, code, expected = OUT_CASES[name]
    space = write("space.yaml", SPACE)
    case = tmp_path / "case"
    case.mkdir()
    try:
        out = make(case, mounts)
    except TypeError:
        out = make(case)
    before = snapshot(case)
    r = run(*sweep_args(space, out, "--trials", 1))
    assert r.exit_code == code, r.output
    line = one_error_line(r.output)
    assert expected in line, line
    assert snapshot(case) == before


SWEEP_JSON_DAMAGE = {
    # name: (content of sweep.json, or a callable making it; words, with the line)
    "invalid UTF-8": (b'{"study": "nerwin",\n "storage": "\xff"}', "sweep.json:2: invalid UTF-8"),
    "invalid JSON": ('{\n"study": "nerwin",\n', "sweep.json:3: not valid JSON"),
    "empty": ("", "sweep.json:1: not valid JSON"),
    "a list": ("[]", "sweep.json: expected a JSON object"),
    "missing storage": ('{"study": "nerwin"}', "sweep.json: missing key 'storage'"),
    "missing study": ('{"storage": "sqlite:///x"}', "sweep.json: missing key 'study'"),
    "study not a string": ('{"study": 3, "storage": "x"}', "sweep.json: study: expected a "
                                                            "string, got int"),
    "storage null": ('{"study": "nerwin", "storage": null}', "sweep.json: storage: expected "
                                                             "a string, got NoneType"),
    "digest a number": ('{"study": "nerwin", "storage": "x", "best_config_sha256": 5}',
                        "sweep.json: best_config_sha256: expected a string or null"),
    "another format": ('{"format": "x", "study": "nerwin", "storage": "x"}',
                       "sweep.json: format: expected 'nerwin-sweep'"),
    "a folder": (lambda p: p.mkdir(), "sweep.json: is not a regular file"),
    "a FIFO": (lambda p: os.mkfifo(p), "sweep.json: is not a regular file"),
    "a dangling symlink": (lambda p: p.symlink_to(p.parent / "gone"),
                           "sweep.json: is not a regular file"),
}


@pytest.mark.parametrize("name", SWEEP_JSON_DAMAGE)
def test_damaged_sweep_json_is_one_line_naming_it(tmp_path, write, name):
    content, expected = SWEEP_JSON_DAMAGE[name]
    space = write("space.yaml", SPACE)
    out = tmp_path / "case" / "out"
    out.mkdir(parents=True)
    (out / "trial-0000").mkdir()
    path = out / "sweep.json"
    if callable(content):
        content(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    before = snapshot(tmp_path / "case")
    r = run(*sweep_args(space, out, "--trials", 1))
    assert r.exit_code == 2, r.output
    line = one_error_line(r.output)
    assert line.startswith(f"Error: {out}/") and expected in line, line
    assert snapshot(tmp_path / "case") == before


def _real_study_db(out: Path) -> bytes:
    """The bytes of a real study.db (one study, no trials)."""
    from nerwin import sweep as sw

    out.mkdir(parents=True, exist_ok=True)
    spec = sw.SweepSpec(config=str(CONFIG), space="-", out=str(out), trials=1,
                        storage=f"sqlite:///{out / 'study.db'}", study="nerwin")
    sw.open_study(spec, sw._storage(spec.storage))
    return (out / "study.db").read_bytes()


STUDY_DB_DAMAGE = {
    "text": (lambda out: (out / "study.db").write_text("hello\n"), "study.db: not an SQLite "
                                                                   "database"),
    "a short header": (lambda out: (out / "study.db").write_bytes(b"SQLite"),
                       "study.db: not an SQLite database"),
    "header then garbage": (lambda out: (out / "study.db").write_bytes(
        b"SQLite format 3\0" + bytes(range(256)) * 16), "study.db: cannot open the study's "
                                                        "SQLite database"),
    "truncated": (lambda out: (out / "study.db").write_bytes(_real_study_db(out)[:2048]),
                  "study.db: cannot open the study's SQLite database"),
    "a folder": (lambda out: (out / "study.db").mkdir(), "study.db: is a folder"),
    "a FIFO": (lambda out: os.mkfifo(out / "study.db"), "study.db: is not a regular file"),
}


@pytest.mark.parametrize("name", STUDY_DB_DAMAGE)
def test_damaged_study_db_is_one_line_naming_it(tmp_path, write, name):
    damage, expected = STUDY_DB_DAMAGE[name]
    space = write("space.yaml", SPACE)
    out = tmp_path / "case" / "out"
    _sweep_json(out)
    damage(out)
    before = snapshot(tmp_path / "case")
    r = run(*sweep_args(space, out, "--trials", 1))
    assert r.exit_code == 2, r.output
    line = one_error_line(r.output)
    assert f"{out / 'study.db'}" in line and expected in line, line
    assert snapshot(tmp_path / "case") == before


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


STORAGE_CASES = {
    # name: (URL, words); every URL carries SECRET where a password would go
    "in-memory SQLite": ("sqlite://", "in-memory SQLite database lives inside one process"),
    "in-memory SQLite, named": ("sqlite:///:memory:", "in-memory SQLite"),
    "missing SQLite folder": ("sqlite:///{tmp}/nope/study.db", "the folder {tmp}/nope does "
                                                              "not exist"),
    "SQLite below a file": ("sqlite:///{tmp}/space.yaml/study.db", "is not a folder"),
    "SQLite at a folder": ("sqlite:///{tmp}", "is a folder"),
    "unknown database": (f"postgress://u:{SECRET}@localhost/db", "unknown kind of database "
                                                                 "'postgress'"),
    "not a URL": (f"u:{SECRET}@localhost", "not a database URL"),
    "bad port": (f"postgresql+psycopg2://u:{SECRET}@localhost:nope/db", "--storage "),
    "closed port": ("postgresql+psycopg2://u:" + SECRET + "@127.0.0.1:{port}/db",
                    "Connection refused"),
    "closed port, plain postgresql://": ("postgresql://u:" + SECRET + "@127.0.0.1:{port}/db",
                                         "Connection refused"),
    "password in the query": ("postgresql+psycopg2://u@127.0.0.1:{port}/db?password=" + SECRET,
                              "Connection refused"),
    "percent-encoded password": ("postgresql+psycopg2://u:" + SECRET.replace("-", "%2D")
                                 + "@127.0.0.1:{port}/db", "Connection refused"),
    "bad connect_timeout": (f"postgresql+psycopg2://u:{SECRET}@h/db?connect_timeout=0",
                            "connect_timeout=0: expected a whole number of seconds"),
    "psycopg2 missing": (f"postgresql+psycopg2://u:{SECRET}@h/db",
                         "the database driver 'psycopg2' is not installed: pip install "
                         "psycopg2-binary"),
    "psycopg missing": (f"postgresql+psycopg://u:{SECRET}@h/db",
                        "the database driver 'psycopg' is not installed: pip install "
                        "'psycopg[binary]'"),
    "plain postgresql://, no driver": (f"postgresql://u:{SECRET}@h/db",
                                       "the database driver 'psycopg' is not installed: pip "
                                       "install psycopg2-binary"),
    "pymysql missing": (f"mysql+pymysql://u:{SECRET}@h/db",
                        "the database driver 'pymysql' is not installed: pip install pymysql"),
}


@pytest.mark.parametrize("name", STORAGE_CASES)
def test_bad_storage_is_one_line_and_writes_nothing(tmp_path, write, monkeypatch, name):
    url, expected = STORAGE_CASES[name]
    space = write("space.yaml", SPACE)
    port = _closed_port()
    url = url.format(tmp=tmp_path, port=port)
    expected = expected.format(tmp=tmp_path)
    if name in ("psycopg2 missing", "plain postgresql://, no driver"):
        monkeypatch.setitem(sys.modules, "psycopg2", None)  # import psycopg2 -> ImportError
        monkeypatch.setitem(sys.modules, "psycopg", None)
    elif name.endswith(" missing"):
        module = name.split()[0]
        if _installed(module):
            monkeypatch.setitem(sys.modules, module, None)
    elif name == "closed port, plain postgresql://":
        monkeypatch.setitem(sys.modules, "psycopg", None)  # SQLAlchemy 2.1's default driver
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    r = run(*sweep_args(space, out, "--trials", 1, "--storage", url))
    assert r.exit_code == 2, r.output
    line = one_error_line(r.output)
    assert expected in line, line
    assert snapshot(tmp_path) == before  # not even sweep.json: the URL was refused first


def test_a_refused_storage_leaves_the_folder_usable(tmp_path, write):
    space, out = write("space.yaml", SPACE), tmp_path / "sweep"
    bad = f"postgresql+psycopg2://u:{SECRET}@127.0.0.1:{_closed_port()}/db"
    assert run(*sweep_args(space, out, "--trials", 1, "--storage", bad)).exit_code == 2
    assert not out.exists()
    r = run(*sweep_args(space, out, "--trials", 1, "--set", "training.epochs=1"))
    assert r.exit_code == 0, r.output


SILENT_SERVER = """\
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
held = []
while True:  # accept, then never answer
    held.append(s.accept()[0])
"""


@pytest.mark.parametrize("query, waited", [("?connect_timeout=2", "waited 2 s"),
                                           ("", "waited 5 s")])
def test_an_unresponsive_server_times_out(tmp_path, write, query, waited):
    space = write("space.yaml", SPACE)
    server = subprocess.Popen([sys.executable, "-c", SILENT_SERVER], stdout=subprocess.PIPE,
                              text=True)
    try:
        port = int(server.stdout.readline())
        url = f"postgresql+psycopg2://u:{SECRET}@127.0.0.1:{port}/db{query}"
        out = tmp_path / "out"
        # A hang would end here (the subprocess timeout), not pass.
        p = subprocess.run([sys.executable, "-m", "nerwin.cli",
                            *sweep_args(space, out, "--storage", url)],
                           capture_output=True, text=True, timeout=120)
    finally:
        server.kill()
        server.wait()
    assert p.returncode == 2, p.stderr
    line = one_error_line(p.stdout + p.stderr)
    assert "timeout expired" in line and waited in line and "connect_timeout=SECONDS" in line
    assert not out.exists()


def test_storage_urls_shown_masked_and_plain_postgresql_uses_psycopg2(monkeypatch):
    from nerwin import sweep as sw

    for url in (f"postgresql://u:{SECRET}@h/db", f"postgresql://u@h/db?password={SECRET}",
                "postgresql://u:" + SECRET.replace("-", "%2D") + "@h/db"):
        assert SECRET not in sw.mask_url(url) and "%2D" not in sw.mask_url(url)
        assert sw.mask(f"oops {SECRET} and {url}", url).count("***") >= 2
    monkeypatch.setitem(sys.modules, "psycopg", None)
    st = sw.check_storage(f"postgresql://u:{SECRET}@h:5432/db?connect_timeout=3")
    assert st.url.startswith("postgresql+psycopg2://") and st.connect_args == {
        "connect_timeout": 3}
    assert st.shown == "postgresql://u:***@h:5432/db?connect_timeout=3"
    assert st.key == "postgresql://u:***@h:5432/db"


def test_an_edited_best_config_is_kept_and_the_untouched_one_replaced(tmp_path, write):
    space, out = write("space.yaml", SPACE), tmp_path / "sweep"
    one = ["--set", "training.epochs=1"]
    assert run(*sweep_args(space, out, "--trials", 1, *one)).exit_code == 0
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["format"] == "nerwin-sweep" and saved["best_config_sha256"]
    r = run(*sweep_args(space, out, "--trials", 2, *one))  # the untouched one: replaced
    assert r.exit_code == 0, r.output
    mine = (out / "best_config.yaml").read_text() + "# my note\n"
    (out / "best_config.yaml").write_text(mine)
    r = run(*sweep_args(space, out, "--trials", 3, *one))
    assert r.exit_code == 2
    assert "best_config.yaml: not the best_config.yaml this sweep wrote" in one_error_line(
        r.output)
    assert (out / "best_config.yaml").read_text() == mine
    assert len(study_trials(out)) == 2  # refused before any trial ran


def test_an_older_sweep_json_is_still_the_sweeps(tmp_path, write):
    space, out = write("space.yaml", SPACE), tmp_path / "sweep"
    one = ["--set", "training.epochs=1"]
    assert run(*sweep_args(space, out, "--trials", 1, *one)).exit_code == 0
    (out / "sweep.json").write_text(json.dumps(
        {"study": "nerwin", "storage": f"sqlite:///{out / 'study.db'}"}))  # as before
    r = run(*sweep_args(space, out, "--trials", 2, *one))
    assert r.exit_code == 0, r.output
    assert json.loads((out / "sweep.json").read_text())["format"] == "nerwin-sweep"


# ---------------------------------------------------------------------------------------
# A real PostgreSQL server: $NERWIN_TEST_POSTGRES_URL (CI starts one, see .ci/run), else a
# throwaway one started here when PostgreSQL's binaries are installed, else skipped; in CI
# (CI=true or NERWIN_REQUIRE_POSTGRES=1) a missing server fails.


@pytest.fixture(scope="session")
def postgres_server():
    """The URL of a PostgreSQL server whose role may create databases."""
    import tempfile

    import pg_server

    url = os.environ.get("NERWIN_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    required = (os.environ.get("CI") == "true"
                or os.environ.get("NERWIN_REQUIRE_POSTGRES") == "1")
    bindir = pg_server.find_bindir()
    if bindir is None:
        reason = ("no PostgreSQL server binaries (initdb, pg_ctl) found and "
                  "NERWIN_TEST_POSTGRES_URL unset: apt-get install postgresql, or set "
                  "NERWIN_PG_BINDIR")
        if required:
            pytest.fail(f"CI needs the PostgreSQL tests: {reason}")
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="nerwin-pg-"))
    try:
        yield pg_server.start(root, bindir)
    finally:
        pg_server.stop(root)


@pytest.fixture
def postgres_db(postgres_server):
    """A fresh, empty database on the server for one test: its URL."""
    import secrets

    import psycopg2
    from sqlalchemy.engine import make_url

    u = make_url(postgres_server)
    name = f"t_{secrets.token_hex(6)}"
    conn = psycopg2.connect(host=u.host, port=u.port, user=u.username, password=u.password,
                            dbname=u.database)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()
    return u.set(database=name).render_as_string(hide_password=False)


def pg_trials(url: str, name: str) -> list:
    study = optuna.load_study(study_name=name, storage=url)
    return [t for t in study.get_trials() if not t.user_attrs.get(SURPLUS)]


def test_postgres_two_sweeps_one_killed_mid_trial_then_resumed(tmp_path, write, postgres_db):
    """Two `nerwin sweep` processes (two machines' worth: each its own --out) on one study in
    PostgreSQL; one is SIGKILLed mid-trial; the other marks its trial failed and runs the
    slot; the killed one, run again, adds its trials; counts and the best config agree."""
    from sqlalchemy.engine import make_url

    password = make_url(postgres_db).password
    space = write("space.yaml", SPACE)
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    common = ["--storage", postgres_db, "--study", "two", "--workers", "1"]
    # B's trial trains until killed, however slow the machine (no epoch limit worth the name).
    endless = ["--set", "training.epochs=100000", "--set", "training.patience=null"]
    b = subprocess.Popen([sys.executable, "-m", "nerwin.cli",
                          *sweep_args(space, out_b, "--trials", 3, *common, *endless)],
                         start_new_session=True, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    a = None
    try:
        deadline = time.time() + 120
        while not (out_b / "trial-0000" / "config.yaml").exists():  # B's trial 0 has started
            assert time.time() < deadline and b.poll() is None, b.communicate()
            time.sleep(0.05)
        # The storage URL (and its password) is on no worker's command line (B's own holds
        # what its user typed).
        workers = [c for c in _cmdlines() if "nerwin.sweep" in c and str(out_b) in c]
        assert workers and not any(password in c for c in workers)
        a = subprocess.Popen([sys.executable, "-m", "nerwin.cli",
                              *sweep_args(space, out_a, "--trials", 3, *common)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while not list(out_a.glob("trial-*/config.yaml")):  # A is training too
            assert time.time() < deadline and a.poll() is None, a.communicate()
            time.sleep(0.05)
    finally:
        os.killpg(b.pid, signal.SIGKILL)  # B and its worker, mid-trial
        b_out = b.communicate()
    assert b.returncode == -signal.SIGKILL
    a_out = a.communicate(timeout=600)
    assert a.returncode == 0, a_out
    # A waited for B's trial, found its worker gone, marked it failed and ran the slot.
    trials = {t.number: t for t in pg_trials(postgres_db, "two")}
    assert trials[0].state.name == "FAIL" and "stale" in trials[0].user_attrs["error"]
    finished = [t for t in trials.values() if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 3 and len(trials) == 4

    # B again, normally, asking for 2 more: it runs exactly those.
    r = subprocess.run([sys.executable, "-m", "nerwin.cli",
                        *sweep_args(space, out_b, "--trials", 5, *common, "--json")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    trials = {t.number: t for t in pg_trials(postgres_db, "two")}
    states = sorted(t.state.name for t in trials.values())
    assert states.count("FAIL") == 1 and len(trials) == 6
    assert sum(s in ("COMPLETE", "PRUNED") for s in states) == 5
    assert sorted(row["trial"] for row in j["results"]) == sorted(trials)
    # Each trial trained in one run directory, under the --out of the sweep that ran it.
    assert trial_dirs(out_b)[0] == "trial-0000" and len(trial_dirs(out_b)) == 3
    assert sorted(trial_dirs(out_a) + trial_dirs(out_b)) == [f"trial-{n:04d}"
                                                             for n in sorted(trials)]
    # best_config.yaml is the best complete trial of the whole study, whoever ran it.
    best = max((t for t in trials.values() if t.state.name == "COMPLETE"),
               key=lambda t: t.value)
    cfg = load_config(out_b / "best_config.yaml")
    assert cfg.training.optimizer.lr == best.params["training.optimizer.lr"]
    assert cfg.model.nonlinearity == best.params["model.nonlinearity"]
    assert j["best_config"] == str(out_b / "best_config.yaml")
    # No password anywhere: outputs, sweep.json, the table.
    for text in (*a_out, *b_out, r.stdout, r.stderr,
                 (out_a / "sweep.json").read_text(), (out_b / "sweep.json").read_text()):
        assert password not in text
    assert json.loads((out_b / "sweep.json").read_text())["storage"] == \
        make_url(postgres_db).set(drivername="postgresql").render_as_string()


PG_ERRORS = {
    # name: (change to the server's URL, words)
    "wrong password": (lambda u: u.set(password=SECRET), "password authentication failed"),
    "wrong user": (lambda u: u.set(username="nobody", password=SECRET),
                   "password authentication failed for user \"nobody\""),
    "wrong database": (lambda u: u.set(database="no_such_db"),
                       "database \"no_such_db\" does not exist"),
}


@pytest.mark.parametrize("name", PG_ERRORS)
def test_postgres_errors_are_one_line_without_the_password(tmp_path, write, postgres_server,
                                                           name):
    from sqlalchemy.engine import make_url

    change, expected = PG_ERRORS[name]
    real = make_url(postgres_server).password
    url = change(make_url(postgres_server)).render_as_string(hide_password=False)
    space, out = write("space.yaml", SPACE), tmp_path / "out"
    r = run(*sweep_args(space, out, "--storage", url))
    assert r.exit_code == 2, r.output
    line = one_error_line(r.output)
    assert expected in line and "***" in line and real not in line, line
    assert SECRET not in line
    assert not out.exists()


def test_postgres_readme_recipe_runs_as_written(tmp_path, postgres_db):
    """The command for sweeps on several machines (docs/sweeps.md), run against the server (its URL
    and --out swapped in, --trials made small)."""
    import re
    import shlex

    readme = docs_text()
    block = re.search(r"```sh\n(pip install 'nerwin\[sweep\]'[^\n]*\n)(nerwin sweep .*?)```",
                      readme, re.S)
    assert block, "the PostgreSQL recipe is gone from README.md and docs/"
    assert "psycopg2-binary" not in block.group(1) or "'nerwin[sweep]'" in block.group(1)
    args = shlex.split(block.group(2).replace("\\\n", " "))
    storage = args[args.index("--storage") + 1]
    assert storage.startswith("postgresql+psycopg2://")  # the sweep extra's driver
    args[args.index("--storage") + 1] = postgres_db
    args[args.index("--out") + 1] = str(tmp_path / "sweep")
    args[args.index("--trials") + 1] = "2"
    args += ["--set", "training.epochs=2"]
    r = subprocess.run([sys.executable, "-m", "nerwin.cli", *args[1:]], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "best config:" in r.stdout


def test_a_full_disk_at_the_end_keeps_the_table_and_says_so(tmp_path, write, monkeypatch):
    import errno
    import importlib

    from nerwin import checkpoint

    space, out = write("space.yaml", SPACE), tmp_path / "sweep"
    real = checkpoint.atomic_write_text

    def full_for_best_config(path, text):
        if Path(path).name == "best_config.yaml":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, text)

    # The atomic writer's home: nerwin.checkpoint, or nerwin.atomic where it may move.
    homes = []
    for name in ("nerwin.checkpoint", "nerwin.atomic"):
        try:
            homes.append(importlib.import_module(name))
        except ImportError:
            continue
    for module in homes:
        monkeypatch.setattr(module, "atomic_write_text", full_for_best_config)
    r = run(*sweep_args(space, out, "--trials", 1, "--set", "training.epochs=1"))
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and r.output.startswith("rank  trial  state")
    assert (f"error: {out / 'best_config.yaml'}: cannot write best_config.yaml (No space left "
            f"on device)") in r.output
    assert not (out / "best_config.yaml").exists()
    assert not list(out.glob(".best_config.yaml.*"))  # no temporary file left either
    monkeypatch.undo()
    r = run(*sweep_args(space, out, "--trials", 1))  # once there is room: written
    assert r.exit_code == 0, r.output
    assert (out / "best_config.yaml").is_file()


def test_postgres_server_gone_mid_sweep_is_one_line_per_process(tmp_path, write,
                                                               postgres_server):
    """A server of its own, stopped while a trial trains: the sweep and its worker end with
    one line each (exit 1), no traceback, no password, no hang."""
    import tempfile

    import pg_server
    from sqlalchemy.engine import make_url

    bindir = pg_server.find_bindir()
    if bindir is None:
        pytest.skip("needs PostgreSQL's binaries to start a server of its own")
    root = Path(tempfile.mkdtemp(prefix="nerwin-pg-"))
    try:
        url = pg_server.start(root, bindir)
        password = make_url(url).password
        space, out = write("space.yaml", SPACE), tmp_path / "sweep"
        endless = ["--set", "training.epochs=100000", "--set", "training.patience=null"]
        p = subprocess.Popen([sys.executable, "-m", "nerwin.cli",
                              *sweep_args(space, out, "--trials", 2, "--storage", url,
                                          *endless)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while not (out / "trial-0000" / "metrics.jsonl").exists():  # an epoch was reported
            assert time.time() < deadline and p.poll() is None, p.communicate()
            time.sleep(0.05)
    finally:
        pg_server.stop(root)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 1, stderr
    text = stdout + stderr
    assert "Traceback" not in text and password not in text, text
    lines = [x for x in stderr.splitlines() if x.strip() and not x.startswith("trials:")]
    assert any(x.startswith("Error: --storage postgresql+psycopg2://nerwin:***@127.0.0.1:")
               and "the study's database failed" in x for x in lines), stderr
    assert all(x.startswith(("Error: ", "nerwin sweep worker: ", "error: ")) for x in lines), \
        stderr
