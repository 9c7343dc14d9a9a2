"""``nerwin sweep``: hyperparameter search over config keys, on Optuna, in parallel, resumable.

The search space (SPACE.yaml, dotted config keys to distributions) is read and checked by
nerwin.space. Each trial is a normal run directory DIR/trial-NNNN trained by
:func:`nerwin.train.train` (the code path of ``nerwin train``) on one BLAS thread; its
objective is the best dev F1.
The study lives in an Optuna storage (SQLite at DIR/study.db unless ``--storage``); every
worker process, on this machine or another, runs the same loop against it:

    count the trials that are finished (complete or pruned) or running; at --trials, stop
    if none is running, else wait (one may fail, or turn out stale, and free its slot);
    ask for a trial; if, counting the trials numbered before it, the study is already full
    (another worker asked at the same moment), discard it; else train it and tell the result.

So two sweeps started at once share the study: trial numbers come from the storage, and a
run directory is named after its trial number. A trial left RUNNING by a killed worker is
marked FAILED (on this host at once, when its process is gone; on other hosts when its
heartbeat is older than :data:`GRACE_S`) and its slot is run again. Failed trials do not
count toward --trials.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nerwin.errors import NerwinError
from nerwin.space import Dim, load_space, override, param_value, suggest

DEFAULT_STUDY = "nerwin"
TRIAL_DIR = "trial-{:04d}"
HEARTBEAT_S = 10  # a running trial writes a heartbeat this often ...
GRACE_S = 60  # ... and is stale (its worker gone) when the last one is older than this
WAIT_S = 1  # how often an idle worker looks at a full study with trials still running
PRUNE_STARTUP_TRIALS = 5  # the median pruner waits for this many finished trials ...
PRUNE_WARMUP_EPOCHS = 2  # ... and judges a trial from this epoch on (1-based)
SURPLUS = "nerwin_surplus"  # user attr of a trial asked for after the study was full
INSTALL_HINT = ("nerwin sweep needs Optuna: pip install 'nerwin[sweep]' "
                "(or pip install 'optuna>=3.5')")


# ---------------------------------------------------------------------------------------
# The study


@dataclass
class SweepSpec:
    """Everything a worker needs (JSON on its command line)."""

    config: str
    space: str
    out: str
    trials: int
    storage: str
    study: str
    overrides: list[str] = field(default_factory=list)
    prune: bool = True
    seed: int = 0


def require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise NerwinError(INSTALL_HINT) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _storage(url: str) -> Any:
    """An RDB storage with heartbeats; retried, as two sweeps may create the tables at once."""
    optuna = require_optuna()
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 120}  # wait for the other writers' locks
    from sqlalchemy.exc import DBAPIError

    last: Exception | None = None
    for attempt in range(8):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # heartbeat_interval is "experimental"
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs,
                                                  heartbeat_interval=HEARTBEAT_S,
                                                  grace_period=GRACE_S)
        except DBAPIError as e:  # locked, or the tables being created by another sweep
            last = e
            time.sleep(0.2 * (attempt + 1))
        except Exception as e:  # noqa: BLE001 - a malformed URL, a missing database driver
            raise NerwinError(f"--storage {url}: cannot open it as an Optuna storage: "
                              f"{type(e).__name__}: {e}") from None
    raise NerwinError(f"--storage {url}: cannot open it as an Optuna storage: {last}")


def open_study(spec: SweepSpec, storage: Any, seed: int | None = None) -> Any:
    optuna = require_optuna()
    # Prune only from the 2nd epoch on, and once 5 trials have finished: a first epoch at a
    # small learning rate says little about the last.
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=PRUNE_STARTUP_TRIALS,
                                          n_warmup_steps=PRUNE_WARMUP_EPOCHS)
              if spec.prune else optuna.pruners.NopPruner())
    sampler = optuna.samplers.TPESampler(seed=spec.seed if seed is None else seed)
    for attempt in range(10):
        try:
            return optuna.create_study(study_name=spec.study, storage=storage, sampler=sampler,
                                       pruner=pruner, direction="maximize",
                                       load_if_exists=True)
        except optuna.exceptions.DuplicatedStudyError:  # created by another sweep just now
            time.sleep(0.1 * (attempt + 1))
    return optuna.load_study(study_name=spec.study, storage=storage, sampler=sampler,
                             pruner=pruner)


def _check_space_of_study(study: Any, dims: list[Dim], spec: SweepSpec) -> None:
    """A study keeps its space: resuming it with another one would mix two searches."""
    mine = [d.to_json() for d in dims]
    saved = study.user_attrs.get("space")
    if saved is None:
        study.set_user_attr("space", mine)
    elif saved != mine:
        raise NerwinError(f"{spec.space}: study {spec.study!r} in {spec.storage} was made with "
                          f"another search space; use a new --study NAME or --out DIR")


def _proc_start(pid: int) -> str | None:
    """Start time of a process (Linux /proc), to tell a reused pid from the original."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # a zombie has finished
        return "dead"
    return fields[19]


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _proc_start(pid)
    if now == "dead":
        return False
    return start is None or now is None or now == start


def fail_stale_trials(study: Any, storage: Any) -> list[int]:
    """Mark FAILED the RUNNING trials whose worker is gone; return their numbers.

    On this host a worker is gone when its process is; on another host when its heartbeat
    is older than GRACE_S (Optuna's own check).
    """
    optuna = require_optuna()
    from optuna.trial import TrialState

    host = socket.gethostname()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        a = t.user_attrs
        if a.get("host") == host and "pid" in a:
            if _alive(a["pid"], a.get("pid_start")):
                continue
        elif "host" in a or time.time() - t.datetime_start.timestamp() < GRACE_S:
            continue  # another host's trial: its heartbeat decides, below
        try:
            storage.set_trial_user_attr(t._trial_id, "error", (
                f"stale: its worker (pid {a.get('pid')} on {a.get('host')}) ended "
                f"without finishing it"))
            storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            failed.append(t.number)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # finished, or failed by another sweep, meanwhile
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental"
        optuna.storages.fail_stale_trials(study)
    after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    return sorted(failed + list(after - before))


# ---------------------------------------------------------------------------------------
# A worker


def _counted(study: Any) -> list[Any]:
    """Trials that hold a slot: finished (complete, pruned) or running, not discarded."""
    from optuna.trial import TrialState

    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    return [t for t in study.get_trials(deepcopy=False, states=live)
            if not t.user_attrs.get(SURPLUS)]


class _Heartbeat:
    """Records the trial's heartbeat every HEARTBEAT_S seconds while it trains."""

    def __init__(self, storage: Any, trial_id: int) -> None:
        self.storage, self.trial_id = storage, trial_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # noqa: BLE001 - a missed beat is not worth a failed trial
                pass
            if self.stop.wait(HEARTBEAT_S):
                return

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()


def run_trial(spec: SweepSpec, dims: list[Dim], study: Any, storage: Any, trial: Any) -> None:
    """Sample, validate, train and tell one trial (never raises but KeyboardInterrupt)."""
    import dataclasses

    optuna = require_optuna()
    from optuna.trial import TrialState

    from nerwin.config import OutputConfig, load_config
    from nerwin.train import train

    # A sampler seeded by seed + trial number (the trial draws from study.sampler when it
    # suggests): parallel workers do not draw the same random start-up trials, and a
    # trial's draws do not depend on which worker runs it.
    study.sampler = optuna.samplers.TPESampler(seed=spec.seed + trial.number)
    run_dir = Path(spec.out) / TRIAL_DIR.format(trial.number)
    trial.set_user_attr("run_dir", str(run_dir))
    best: dict[str, Any] = {}

    def on_epoch(record: dict[str, Any]) -> None:
        f1 = record.get("dev_f1")
        if f1 is None:
            return
        if not best or f1 > best["f1"]:
            best.update(f1=f1, epoch=record["epoch"])
        trial.report(f1, record["epoch"])
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {record['epoch']}")

    t0 = time.perf_counter()
    state, value, error = TrialState.FAIL, None, None
    test_f1 = None
    try:
        params = {d.key: suggest(trial, d) for d in dims}
        cfg = load_config(spec.config, [*spec.overrides,
                                        *(override(k, v) for k, v in params.items())])
        cfg = dataclasses.replace(cfg, output=OutputConfig(dir=run_dir))
        with _Heartbeat(storage, trial._trial_id), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # overflow on the way to NaN
            result = train(cfg, run_dir, quiet=True, echo=lambda _line: None,
                           on_epoch=on_epoch)
        state, value = TrialState.COMPLETE, result.state.best_f1
        best.update(f1=result.state.best_f1, epoch=result.state.best_epoch)
        if result.test_scores is not None:
            test_f1 = result.test_scores["f1"]
    except optuna.TrialPruned:
        state = TrialState.PRUNED
    except KeyboardInterrupt:
        error = "interrupted (Ctrl-C)"
        raise
    except NerwinError as e:  # a diverged loss (TrainingError), a sampled config refused
        error = str(e)
    except Exception as e:  # noqa: BLE001 - a bug in one trial must not end the sweep
        error = f"{type(e).__name__}: {e}"
    finally:
        attrs = {"seconds": round(time.perf_counter() - t0, 2), "best_f1": best.get("f1"),
                 "best_epoch": best.get("epoch"), "test_f1": test_f1, "error": error}
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        if state == TrialState.COMPLETE:
            study.tell(trial.number, value)
        else:
            study.tell(trial.number, state=state)


def worker(spec: SweepSpec) -> None:
    """Run trials until the study holds ``spec.trials`` finished (complete or pruned) ones.

    Gives up after ``spec.trials`` failed trials of its own.
    """
    from nerwin.threads import default_to_one_blas_thread

    default_to_one_blas_thread()
    require_optuna()
    storage = _storage(spec.storage)
    study = open_study(spec, storage)
    dims = [Dim(d["key"], d["kind"], tuple(d["values"])) for d in study.user_attrs["space"]]
    host, pid = socket.gethostname(), os.getpid()
    failures = 0
    while failures < spec.trials:  # every trial failing (a bad data file) must end too
        counted = _counted(study)
        if len(counted) >= spec.trials:
            if all(t.state.name not in ("RUNNING", "WAITING") for t in counted):
                return
            # Full, but with trials still running: wait, as one may fail (or its worker be
            # gone, on another machine too) and free its slot for this worker.
            fail_stale_trials(study, storage)
            time.sleep(WAIT_S)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "heartbeat is supposed to be used with optimize"
            trial = study.ask()
        for k, v in {"host": host, "pid": pid, "pid_start": _proc_start(pid)}.items():
            trial.set_user_attr(k, v)
        ahead = [t for t in _counted(study) if t.number < trial.number]
        if len(ahead) >= spec.trials:  # another worker took the last slot meanwhile
            trial.set_user_attr(SURPLUS, True)
            study.tell(trial, state=require_optuna().trial.TrialState.FAIL)
            continue
        run_trial(spec, dims, study, storage, trial)
        if storage.get_trial(trial._trial_id).state.name == "FAIL":
            failures += 1


# ---------------------------------------------------------------------------------------
# The table


def results(study: Any, dims: list[Dim]) -> list[dict[str, Any]]:
    """One dict per trial (discarded asks left out), best first: finished by dev F1, then
    running, then failed."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        if a.get(SURPLUS):
            continue
        rows.append({
            "trial": t.number, "state": t.state.name,
            "params": {d.key: param_value(d, t.params[d.key])
                       for d in dims if d.key in t.params},
            "best_dev_f1": a.get("best_f1"), "best_epoch": a.get("best_epoch"),
            "test_f1": a.get("test_f1"), "seconds": a.get("seconds"),
            "run_dir": a.get("run_dir"), "error": a.get("error")})
    order = {"COMPLETE": 0, "PRUNED": 0, "RUNNING": 1, "WAITING": 1, "FAIL": 2}
    rows.sort(key=lambda r: (order[r["state"]], -(r["best_dev_f1"] or -1.0), r["trial"]))
    return rows


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def format_results(rows: list[dict[str, Any]], dims: list[Dim]) -> str:
    """The ranked table: rank, trial, state, sampled values, dev F1, epoch, test F1, seconds."""
    head = ["rank", "trial", "state", *(d.key for d in dims), "dev F1", "epoch", "test F1",
            "seconds"]
    body = []
    for i, r in enumerate(rows, 1):
        f = r["best_dev_f1"]
        body.append([str(i), str(r["trial"]), r["state"].lower(),
                     *(_fmt(r["params"].get(d.key)) for d in dims),
                     "-" if f is None else f"{f:.2f}", _fmt(r["best_epoch"]),
                     "-" if r["test_f1"] is None else f"{r['test_f1']:.2f}",
                     "-" if r["seconds"] is None else f"{r['seconds']:.1f}"])
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(row, widths)).rstrip()
             for row in [head, *body]]
    for r in rows:
        if r["error"]:
            lines.append(f"trial {r['trial']}: {r['error']}")
    return "\n".join(lines)


def write_best_config(spec: SweepSpec, rows: list[dict[str, Any]]) -> Path | None:
    """DIR/best_config.yaml: the resolved config of the best complete trial (atomically).

    Built from CONFIG, --set and the trial's values, so it holds this machine's paths even
    when the trial ran elsewhere; its output.dir is DIR/best_run, so ``nerwin train`` on it
    does not touch the trial's run directory.
    """
    import dataclasses

    from nerwin.atomic import atomic_write_text
    from nerwin.config import OutputConfig, dump_yaml, load_config

    done = [r for r in rows if r["state"] == "COMPLETE" and r["best_dev_f1"] is not None]
    if not done:
        return None
    best = done[0]
    cfg = load_config(spec.config, [*spec.overrides,
                                    *(override(k, v) for k, v in best["params"].items())])
    cfg = dataclasses.replace(cfg, output=OutputConfig(dir=Path(spec.out) / "best_run"))
    path = Path(spec.out) / "best_config.yaml"
    atomic_write_text(path, f"# nerwin sweep: trial {best['trial']}, best dev F1 "
                            f"{best['best_dev_f1']:.2f}\n" + dump_yaml(cfg))
    return path


# ---------------------------------------------------------------------------------------
# The sweep: validate, open the study, run the workers, report


@dataclass
class SweepResult:
    rows: list[dict[str, Any]]
    dims: list[Dim]
    best_config: Path | None
    stale: list[int]
    interrupted: bool = False
    worker_errors: list[str] = field(default_factory=list)

    def to_json(self, spec: SweepSpec) -> dict[str, Any]:
        return {"study": spec.study, "storage": spec.storage, "trials": spec.trials,
                "space": [d.to_json() for d in self.dims],
                "best_config": None if self.best_config is None else str(self.best_config),
                "stale_failed": self.stale, "interrupted": self.interrupted,
                "results": self.rows}


def prepare(config: str | Path, space: str | Path, out: str | Path, *, trials: int,
            storage: str | None = None, study: str | None = None,
            overrides: list[str] | None = None, prune: bool = True) -> SweepSpec:
    """Validate CONFIG and SPACE (exit-2 errors) and return the workers' spec."""
    from nerwin.config import load_config

    require_optuna()
    overrides = list(overrides or [])
    cfg = load_config(config, overrides)
    if cfg.data.dev is None:
        raise NerwinError(f"{config}: data.dev: a sweep scores trials by their best dev F1; "
                          f"set data.dev")
    load_space(space, config, overrides)
    out_p = Path(out).resolve()
    return SweepSpec(config=str(Path(config).resolve()), space=str(space), out=str(out_p),
                     trials=trials, storage=storage or f"sqlite:///{out_p / 'study.db'}",
                     study=study or DEFAULT_STUDY, overrides=overrides, prune=prune,
                     seed=cfg.training.seed)


def _claim_out_dir(spec: SweepSpec) -> None:
    """DIR/sweep.json names the study DIR holds: run directories are named by trial number
    alone, so a second study in the same DIR would collide with the first one's."""
    from sqlalchemy.engine import make_url

    from nerwin.atomic import atomic_write_text

    try:
        url = make_url(spec.storage).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not an SQLAlchemy URL: _storage() says so
        url = spec.storage
    mine = {"study": spec.study, "storage": url}
    path = Path(spec.out) / "sweep.json"
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved != mine:
            raise NerwinError(f"{spec.out}: holds the trials of study {saved['study']!r} in "
                              f"{saved['storage']}; use another --out for study "
                              f"{spec.study!r} in {url}")
    else:
        atomic_write_text(path, json.dumps(mine, indent=2) + "\n")


def _worker_env() -> dict[str, str]:
    """One BLAS thread in each worker: set before its numpy is imported."""
    from nerwin.threads import THREAD_VARS

    env = dict(os.environ)
    env.update({v: "1" for v in THREAD_VARS})
    return env


def run_sweep(spec: SweepSpec, workers: int = 1, *, progress: bool = True) -> SweepResult:
    """Run ``workers`` worker processes on the study until it is full; the ranked results.

    Ctrl-C stops the workers (their running trials are recorded as failed) and still
    returns the results so far, with ``interrupted`` set.
    """
    from tqdm import tqdm

    dims = load_space(spec.space, spec.config, spec.overrides)
    require_optuna()
    Path(spec.out).mkdir(parents=True, exist_ok=True)
    _claim_out_dir(spec)
    storage = _storage(spec.storage)
    study = open_study(spec, storage)
    _check_space_of_study(study, dims, spec)
    stale = fail_stale_trials(study, storage)

    cmd = [sys.executable, "-m", "nerwin.sweep", json.dumps(asdict(spec))]
    procs = [subprocess.Popen(cmd, env=_worker_env(), stdout=subprocess.DEVNULL)
             for _ in range(workers)]
    bar = tqdm(total=spec.trials, desc="trials", unit="trial", disable=None if progress else True,
               file=sys.stderr)
    # A flag, not KeyboardInterrupt: that can surface inside a garbage-collector callback,
    # where Python prints and drops it.
    sigint = threading.Event()
    main = threading.current_thread() is threading.main_thread()  # where handlers may go
    previous = signal.signal(signal.SIGINT, lambda *_: sigint.set()) if main else None
    try:
        while any(p.poll() is None for p in procs) and not sigint.is_set():
            _update_bar(bar, study)
            sigint.wait(0.2)
        if sigint.is_set():
            _stop_workers(procs)
        _update_bar(bar, study)
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
        bar.close()
    # A worker ends with 130 when Ctrl-C reached it (and maybe not this process).
    interrupted = sigint.is_set() or any(p.returncode == 130 for p in procs)
    errors = [f"worker {i} exited with code {p.returncode}" for i, p in enumerate(procs)
              if p.returncode not in (0, 130)]
    rows = results(study, dims)
    return SweepResult(rows, dims, write_best_config(spec, rows), stale, interrupted, errors)


def _stop_workers(procs: list[subprocess.Popen]) -> None:
    """After Ctrl-C: let the workers record their trials as failed and exit.

    Ctrl-C in a terminal reaches the workers too (one process group); a ``kill -INT`` of
    the sweep alone does not, so those still running after a moment get SIGINT from here.
    """
    deadline = time.time() + 3
    while time.time() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.05)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _update_bar(bar: Any, study: Any) -> None:
    rows = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(SURPLUS)]
    done = sum(t.state.name in ("COMPLETE", "PRUNED") for t in rows)
    failed = sum(t.state.name == "FAIL" for t in rows)
    values = [t.value for t in rows if t.state.name == "COMPLETE" and t.value is not None]
    bar.set_postfix(failed=failed, best=f"{max(values):.2f}" if values else "-", refresh=False)
    bar.update(min(done, bar.total) - bar.n)


def main(argv: list[str] | None = None) -> int:
    """Worker entry point: ``python -m nerwin.sweep SPEC_JSON`` (started by run_sweep)."""
    args = sys.argv[1:] if argv is None else argv
    spec = SweepSpec(**json.loads(args[0]))
    try:
        worker(spec)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
