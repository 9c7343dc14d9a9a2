"""`nerwin sweep`: the space is validated like --set; trials are run directories; the study is
shared by concurrent sweeps, resumable after a kill, and a diverging trial is not fatal.

Every sweep here trains the sample corpus for 2 epochs with 20 hidden units (under a second a
trial); the workers are real processes on a real SQLite file.
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
    p = subprocess.Popen([sys.executable, "-m", "nerwin.cli", *args], start_new_session=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
