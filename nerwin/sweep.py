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

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nerwin.errors import NerwinError, os_error
from nerwin.space import Dim, load_space, override, param_value, suggest

DEFAULT_STUDY = "nerwin"
TRIAL_DIR = "trial-{:04d}"
HEARTBEAT_S = 10  # a running trial writes a heartbeat this often ...
GRACE_S = 60  # ... and is stale (its worker gone) when the last one is older than this
INTERRUPTED = "interrupted (Ctrl-C)"  # a trial's error when Ctrl-C stopped it
STOP_S = 30  # after Ctrl-C, how long a worker may take to record its trial before it is killed
WAIT_S = 1  # how often an idle worker looks at a full study with trials still running
PRUNE_STARTUP_TRIALS = 5  # the median pruner waits for this many finished trials ...
PRUNE_WARMUP_EPOCHS = 2  # ... and judges a trial from this epoch on (1-based)
SURPLUS = "nerwin_surplus"  # user attr of a trial asked for after the study was full
INSTALL_HINT = ("nerwin sweep needs Optuna: pip install 'nerwin[sweep]' "
                "(or pip install 'optuna>=3.5')")
CONNECT_TIMEOUT_S = 5  # a server database's connect timeout; ?connect_timeout=S in the URL
STORAGE_EXAMPLES = ("sqlite:///DIR/study.db, postgresql+psycopg2://user:password@host/db, "
                    "mysql+pymysql://user:password@host/db")
# The package that brings each SQLAlchemy driver, for the "not installed" message.
DRIVER_PACKAGES = {"psycopg2": "psycopg2-binary", "psycopg": "'psycopg[binary]'",
                   "pymysql": "pymysql", "mysqldb": "mysqlclient", "pg8000": "pg8000",
                   "asyncpg": "asyncpg", "mysqlconnector": "mysql-connector-python",
                   "mariadbconnector": "mariadb", "oracledb": "oracledb",
                   "pyodbc": "pyodbc", "pymssql": "pymssql"}


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
    # Errors only: its warnings on a lost database are many lines of SQL; nerwin says it
    # in one line.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna


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
        raise NerwinError(f"{spec.space}: study {spec.study!r} in {mask_url(spec.storage)} "
                          f"was made with "
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


def fail_interrupted_trials(study: Any, pids: list[int]) -> list[int]:
    """After Ctrl-C, once the workers ``pids`` (of this host) have ended: mark FAILED,
    interrupted, the trials they left RUNNING; return their numbers.

    A worker records its own trial; this covers the one that could not in time (killed
    after STOP_S, or its database write cut short by the signal).
    """
    optuna = require_optuna()
    from optuna.trial import TrialState

    host, ours = socket.gethostname(), set(pids)
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        a = t.user_attrs
        if a.get("host") != host or a.get("pid") not in ours:
            continue
        try:
            study._storage.set_trial_user_attr(t._trial_id, "error", INTERRUPTED)
            study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            failed.append(t.number)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
    return failed


# ---------------------------------------------------------------------------------------
# The storage URL: checked before anything is written, shown with its password masked


def _secrets(url: str) -> list[str]:
    """The secrets of a storage URL: its password as written (percent-encoded or not) and
    as decoded, in the user part or the query."""
    import re
    from urllib.parse import unquote

    from sqlalchemy.engine import make_url

    found = []
    userinfo = url.split("://", 1)[-1].rsplit("@", 1)[0] if "@" in url else ""
    if ":" in userinfo:  # user:password@host, as written (also when it is no valid URL)
        found.append(userinfo.split(":", 1)[1])
    found += re.findall(r"[?&]password=([^&]*)", url)
    try:
        u = make_url(url)
    except Exception:  # noqa: BLE001 - not a URL: what looks like user:password@ only
        u = None
    if u is not None and u.password:
        found.append(str(u.password))
    if u is not None and "password" in u.query:
        pw = u.query["password"]
        found += [pw] if isinstance(pw, str) else list(pw)
    return [s for s in {*found, *map(unquote, found)} if s]


def mask_url(url: str) -> str:
    """The storage URL as the user wrote it, with its passwords replaced by ``***``."""
    return mask(url, url)


def mask(text: str, url: str) -> str:
    """``text`` with every secret of ``url`` replaced by ``***`` (driver messages too)."""
    for s in sorted(_secrets(url), key=len, reverse=True):
        text = text.replace(s, "***")
    return text


@dataclass
class Storage:
    """A checked --storage: the URL to connect to, its connect arguments, how to show it."""

    url: str  # to connect to: a relative SQLite path made absolute, the driver chosen
    shown: str  # as the user wrote it, password masked: for messages
    key: str  # the URL without its driver, password masked: what DIR/sweep.json records
    connect_args: dict[str, Any]
    sqlite_path: Path | None = None  # the database file of an SQLite URL

    def engine_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"connect_args": self.connect_args}
        if self.sqlite_path is None:
            # A pooled connection the server dropped (a restart, an idle timeout) is
            # replaced before use, not a failed trial.
            kwargs["pool_pre_ping"] = True
        return kwargs


def _db_errors() -> tuple[type[BaseException], ...]:
    """What a lost database raises: SQLAlchemy's errors, and Optuna's wrapper of them."""
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import SQLAlchemyError

    return SQLAlchemyError, StorageInternalError


def _first_line(e: BaseException) -> str:
    """A driver's message in one line (libpq's take several, and "FATAL:  " two spaces)."""
    from optuna.exceptions import StorageInternalError

    if isinstance(e, StorageInternalError) and e.__cause__ is not None:
        e = e.__cause__  # Optuna's "An exception is raised during the commit" says little
    text = str(getattr(e, "orig", None) or e).strip()
    return " ".join(text.splitlines()[0].split()) if text else type(e).__name__


def check_storage(url: str, new_out: Path | None = None) -> Storage:
    """Parse and check a storage URL, connecting to nothing and writing nothing.

    Refused with a one-line error (password masked): a string that is no database URL, a
    kind of database SQLAlchemy does not know, a missing driver (naming the package to
    install), an in-memory SQLite database, an SQLite file whose folder is missing or that
    is not an SQLite database, a bad ``connect_timeout``. ``postgresql://`` with no driver
    named uses psycopg2 when SQLAlchemy's default driver for it (psycopg 3 in SQLAlchemy
    2.1) is not installed and psycopg2 is. ``new_out``: a folder the sweep will create,
    where an SQLite file may go.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = mask_url(url)
    try:
        u = make_url(url)
    except (ArgumentError, ValueError) as e:
        raise NerwinError(f"--storage {shown}: not a database URL ({mask(_first_line(e), url)}); "
                          f"expected e.g. {STORAGE_EXAMPLES}") from None
    try:
        dialect = u.get_dialect()
    except NoSuchModuleError:
        raise NerwinError(f"--storage {shown}: unknown kind of database "
                          f"{u.drivername!r}; expected e.g. {STORAGE_EXAMPLES}") from None
    try:
        dialect.import_dbapi()
    except ImportError:
        alt = _installed_alternative(u)
        if alt is None:
            # plain postgresql://: psycopg2 (the sweep extra's) would do, see above
            package = ("psycopg2-binary" if u.drivername == "postgresql" else
                       DRIVER_PACKAGES.get(dialect.driver, dialect.driver))
            raise NerwinError(f"--storage {shown}: the database driver {dialect.driver!r} "
                              f"is not installed: pip install {package}") from None
        u = alt
    backend = u.get_backend_name()
    connect_args: dict[str, Any] = {}
    sqlite_path = None
    if backend == "sqlite":
        sqlite_path = _check_sqlite(u, shown, new_out)
        u = u.set(database=str(sqlite_path))
        connect_args["timeout"] = 120  # wait for the other workers' write locks
    else:
        timeout = u.query.get("connect_timeout", str(CONNECT_TIMEOUT_S))
        try:
            seconds = int(timeout) if isinstance(timeout, str) else -1
        except ValueError:
            seconds = -1
        if seconds < 1:
            raise NerwinError(f"--storage {shown}: connect_timeout={timeout}: expected a "
                              f"whole number of seconds >= 1")
        u = u.difference_update_query(["connect_timeout"])
        # libpq (psycopg2, psycopg) and PyMySQL/mysqlclient all take connect_timeout; an
        # unresponsive server otherwise blocks the sweep for ever.
        connect_args["connect_timeout"] = seconds
    full = u.render_as_string(hide_password=False)
    key = mask(u.set(drivername=backend).render_as_string(hide_password=True), url)
    return Storage(full, shown, key, connect_args, sqlite_path)


def _installed_alternative(u: Any) -> Any:
    """``postgresql://`` with psycopg 3 missing: psycopg2, when installed (same server)."""
    import importlib.util

    if u.drivername == "postgresql" and importlib.util.find_spec("psycopg2") is not None:
        return u.set(drivername="postgresql+psycopg2")
    return None


def _check_sqlite(u: Any, shown: str, new_out: Path | None) -> Path:
    db = u.database or ""
    if db in ("", ":memory:") or u.query.get("mode") == "memory" or "mode=memory" in db:
        raise NerwinError(f"--storage {shown}: an in-memory SQLite database lives inside one "
                          f"process, and the sweep's workers are separate processes that "
                          f"could not share it; give a file, e.g. sqlite:///DIR/study.db")
    if db.startswith("file:"):
        raise NerwinError(f"--storage {shown}: SQLite file: URIs are not supported; give a "
                          f"path, e.g. sqlite:///DIR/study.db")
    path = Path(os.path.abspath(os.path.expanduser(db)))
    if new_out is not None and path.parent == new_out and not os.path.lexists(new_out):
        return path  # the default DIR/study.db of a DIR about to be made
    try:
        check_sqlite_file(path)
    except NerwinError as e:
        raise NerwinError(f"--storage {shown}: {e}") from None
    return path


SQLITE_HEADER = b"SQLite format 3\x00"


def check_sqlite_file(path: Path) -> None:
    """An SQLite database file may go at ``path``: its folder exists, and it is missing, empty
    or an SQLite database. Fast, where SQLite's "unable to open database file" comes only
    after the retries for a locked one."""
    import stat

    parent = path.parent
    try:
        st = os.stat(parent)
    except FileNotFoundError:
        raise NerwinError(f"{path}: the folder {parent} does not exist (SQLite creates the "
                          f"database file, not its folder)") from None
    except OSError as e:
        raise NerwinError(f"{path}: cannot use the folder {parent} ({e.strerror})") from None
    if not stat.S_ISDIR(st.st_mode):
        raise NerwinError(f"{path}: {parent} is not a folder")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise NerwinError(f"{path}: a symlink to nothing; expected an SQLite "
                              f"database file (or nothing there)") from None
        return
    except OSError as e:
        raise NerwinError(f"{path}: cannot open it as an SQLite database "
                          f"({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise NerwinError(f"{path}: is a folder, expected an SQLite database file")
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read below
        raise NerwinError(f"{path}: is not a regular file, expected an SQLite database file")
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as e:
        raise os_error(path, e, "an SQLite database") from None
    if head and head != SQLITE_HEADER:  # an empty file is a new database to SQLite
        raise NerwinError(f"{path}: not an SQLite database (it does not start with SQLite's "
                          f"header); a sweep keeps its study there: move the file away, or "
                          f"give another --out or --storage")


def _retryable(e: BaseException) -> bool:
    """A lock held by another worker, or tables being created by another sweep right now."""
    from sqlalchemy.exc import IntegrityError

    text = str(getattr(e, "orig", None) or e).lower()
    return (isinstance(e, IntegrityError) or "locked" in text or "already exists" in text
            or "duplicate key" in text)


def _storage(storage: Storage | str) -> Any:
    """An RDB storage with heartbeats. Retried only while another sweep holds a lock or
    creates the tables; anything else (no server, a wrong password, a damaged file) is a
    one-line error at once, password masked."""
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    optuna = require_optuna()
    if isinstance(storage, str):
        storage = check_storage(storage)
    what = (f"{storage.sqlite_path}: cannot open the study's SQLite database"
            if storage.sqlite_path else f"--storage {storage.shown}: cannot open the study")
    for attempt in range(8):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # heartbeat_interval is "experimental"
                return optuna.storages.RDBStorage(
                    storage.url, engine_kwargs=storage.engine_kwargs(),
                    heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
        except DBAPIError as e:
            if attempt < 7 and _retryable(e):
                time.sleep(0.2 * (attempt + 1))
                continue
            line = mask(_first_line(e), storage.url)
            if "timeout expired" in line or "timed out" in line:
                line += (f" (waited {storage.connect_args.get('connect_timeout')} s; add "
                         f"?connect_timeout=SECONDS to the URL to wait longer)")
            raise NerwinError(f"{what}: {line}") from None
        except (SQLAlchemyError, ValueError, RuntimeError, ImportError) as e:
            # an Optuna schema of another version, a URL the driver refuses
            raise NerwinError(f"{what}: {mask(_first_line(e), storage.url)}") from None
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------
# --out: a sweep's own folder, claimed by DIR/sweep.json


SWEEP_FILE = "sweep.json"
SWEEP_FORMAT = "nerwin-sweep"
BEST_CONFIG = "best_config.yaml"
BEST_HEADER = "# nerwin sweep: trial "


def _out_error(path: Path | str, e: OSError, what: str) -> NerwinError:
    """An OS error while writing ``what``: one line; a full disk exits 1 (not bad input)."""
    err = NerwinError(f"{e.filename or path}: cannot write {what} ({e.strerror or e})")
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        err.exit_code = 1
    return err


def read_sweep_json(path: Path) -> dict[str, Any]:
    """DIR/sweep.json, checked: damage is a one-line error naming the file (and line)."""
    import stat

    fix = "nerwin wrote it: move it away (and the folder's trials with it) or choose another --out"
    try:
        st = os.lstat(path)
    except OSError as e:
        raise os_error(path, e, "a sweep's sweep.json") from None
    if not stat.S_ISREG(st.st_mode):
        raise NerwinError(f"{path}: is not a regular file (a symlink, a folder or a special "
                          f"file); nerwin writes sweep.json itself: move it away or choose "
                          f"another --out")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise os_error(path, e, "a sweep's sweep.json") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise NerwinError(f"{path}:{line}: invalid UTF-8 (byte 0x{data[e.start]:02x}); {fix}"
                          ) from None
    try:
        saved = json.loads(text)
    except ValueError as e:
        where = f":{e.lineno}" if isinstance(e, json.JSONDecodeError) else ""
        msg = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
        raise NerwinError(f"{path}{where}: not valid JSON ({msg}); {fix}") from None
    if not isinstance(saved, dict):
        raise NerwinError(f"{path}: expected a JSON object with keys study and storage, got "
                          f"{type(saved).__name__}; {fix}")
    for key in ("study", "storage"):
        if key not in saved:
            raise NerwinError(f"{path}: missing key {key!r}; {fix}")
        if not isinstance(saved[key], str):
            raise NerwinError(f"{path}: {key}: expected a string, got "
                              f"{type(saved[key]).__name__}; {fix}")
    digest = saved.get("best_config_sha256")
    if digest is not None and not isinstance(digest, str):
        raise NerwinError(f"{path}: best_config_sha256: expected a string or null, got "
                          f"{type(digest).__name__}; {fix}")
    fmt = saved.get("format")
    if fmt is not None and fmt != SWEEP_FORMAT:
        raise NerwinError(f"{path}: format: expected {SWEEP_FORMAT!r}, got {fmt!r}; {fix}")
    return saved


def _storage_key(shown: str) -> str:
    """A masked storage URL without its driver: postgresql:// and postgresql+psycopg2://
    name the same database."""
    from sqlalchemy.engine import make_url

    try:
        u = make_url(shown)
        return u.set(drivername=u.get_backend_name()).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an old sweep.json's URL that no longer parses
        return shown


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _best_config_is_ours(path: Path, saved: dict[str, Any] | None) -> bool:
    """best_config.yaml may be replaced: missing, or the very file the sweep wrote.

    sweep.json records the sha256 of the best_config.yaml it wrote, so a file edited since
    (or the user's own) is not replaced; an older sweep.json without it: nerwin's first line.
    """
    if not os.path.lexists(path):
        return True
    if saved is None or path.is_symlink() or not path.is_file():
        return False
    try:
        if "best_config_sha256" in saved:
            return saved["best_config_sha256"] == _sha256(path)
        with open(path, "rb") as f:
            return f.readline().startswith(BEST_HEADER.encode())
    except OSError:
        return False


def check_out_dir(spec: SweepSpec, storage: Storage) -> dict[str, Any] | None:
    """Every check of DIR, writing nothing; DIR/sweep.json's content when it is a sweep's.

    DIR must be new or empty, or hold a sweep.json of the same study and storage: run
    directories are named by trial number alone, so a second study in the same DIR would
    collide with the first's, and a folder of the user's holds files nerwin may not replace.
    In a sweep's DIR, best_config.yaml is replaced only if it is the one the sweep wrote.
    """
    from nerwin.rundir import check_out_path

    out = check_out_path(Path(spec.out))
    if not out.exists():
        return None
    try:
        entries = sorted(os.listdir(out))
    except OSError as e:
        raise os_error(out, e, "a sweep folder (--out)") from None
    if not os.access(out, os.W_OK | os.X_OK):  # a read-only mount says so for root too
        raise NerwinError(f"{out}: cannot write there (read-only or not yours); a sweep "
                          f"writes its trials in --out: choose another --out")
    marker = out / SWEEP_FILE
    # A sweep started at the same moment may be writing sweep.json right now (its temporary
    # .sweep.json.tmp-* is there, the file not yet): give it a moment to appear.
    deadline = time.monotonic() + 5.0
    while (not os.path.lexists(marker) and time.monotonic() < deadline
           and any(e.startswith(f".{SWEEP_FILE}.tmp-") for e in entries)):
        time.sleep(0.05)
        with contextlib.suppress(OSError):
            entries = sorted(os.listdir(out))
    if not os.path.lexists(marker):
        if entries:
            more = f" (and {len(entries) - 1} more)" if len(entries) > 1 else ""
            raise NerwinError(f"{out / entries[0]}: not written by a nerwin sweep{more}, and "
                              f"{out} has no {SWEEP_FILE}; a sweep needs a new or empty "
                              f"folder, or one of its own: choose another --out")
        return None
    saved = read_sweep_json(marker)
    if (_storage_key(saved["storage"]), saved["study"]) != (_storage_key(storage.key),
                                                             spec.study):
        raise NerwinError(f"{spec.out}: holds the trials of study {saved['study']!r} in "
                          f"{mask_url(saved['storage'])}; use another --out for study "
                          f"{spec.study!r} in {storage.shown}")
    db = storage.sqlite_path
    trials = [e for e in entries if e.startswith("trial-")]
    if db is not None and db.parent == out and not os.path.lexists(db) and trials:
        # A new study here would number its trials from 0 again, onto these folders.
        raise NerwinError(f"{db}: missing, but {out} holds the trials of its study "
                          f"({trials[0]}, ...); put study.db back, or choose another --out")
    best = out / BEST_CONFIG
    if not _best_config_is_ours(best, saved):
        raise NerwinError(f"{best}: not the {BEST_CONFIG} this sweep wrote (changed since, or "
                          f"not nerwin's); the sweep would replace it: move it away")
    return saved


def write_sweep_json(spec: SweepSpec, storage: Storage, best_sha256: str | None) -> None:
    from nerwin.atomic import atomic_write_text

    path = Path(spec.out) / SWEEP_FILE
    mine = {"format": SWEEP_FORMAT, "study": spec.study, "storage": storage.key,
            "best_config_sha256": best_sha256,
            "note": "written by nerwin sweep: this folder holds the trials of this study"}
    try:
        atomic_write_text(path, json.dumps(mine, indent=2) + "\n")
    except OSError as e:
        raise _out_error(path, e, "the sweep's sweep.json") from None


def claim_out_dir(spec: SweepSpec, storage: Storage) -> tuple[list[Path], dict[str, Any]]:
    """Check DIR, create it and write DIR/sweep.json if missing.

    Returns the folders it created (deepest first: what to remove again if the sweep is
    refused later) and DIR/sweep.json's content.
    """
    saved = check_out_dir(spec, storage)
    out = Path(spec.out)
    created = []
    p = out
    while not os.path.lexists(p):
        created.append(p)
        p = p.parent
    try:
        out.mkdir(parents=True, exist_ok=True)
        if saved is None:
            write_sweep_json(spec, storage, None)
    except (OSError, NerwinError) as e:
        _remove_created(created)  # leave nothing behind
        if isinstance(e, OSError):
            raise _out_error(out, e, "the sweep folder (--out)") from None
        raise
    return created, read_sweep_json(out / SWEEP_FILE)


def _remove_created(folders: list[Path], files: tuple[str, ...] = ()) -> None:
    """Remove what a refused sweep made: ``files`` in the first folder, then the folders
    (only if empty: never anything else)."""
    for name in files:
        if folders:
            with contextlib.suppress(OSError):
                (folders[0] / name).unlink()
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


# ---------------------------------------------------------------------------------------
# A worker


def _counted(study: Any) -> list[Any]:
    """Trials that hold a slot: finished (complete, pruned) or running, not discarded."""
    from optuna.trial import TrialState

    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    return [t for t in study.get_trials(deepcopy=False, states=live)
            if not t.user_attrs.get(SURPLUS)]


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold Ctrl-C's KeyboardInterrupt until a database call of the main thread is done.

    Raised in the middle of one, between a lock's acquire and its release in Optuna or
    SQLAlchemy, it can leave that lock held: the trial's recording after it would then
    hang, and the trial stay "running". A SIGINT that came meanwhile is raised after.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: came.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if came and callable(previous):
        previous(signal.SIGINT, None)  # the default one raises KeyboardInterrupt


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
    with _sigint_held():
        trial.set_user_attr("run_dir", str(run_dir))
    best: dict[str, Any] = {}

    def on_epoch(record: dict[str, Any]) -> None:
        f1 = record.get("dev_f1")
        if f1 is None:
            return
        if not best or f1 > best["f1"]:
            best.update(f1=f1, epoch=record["epoch"])
        with _sigint_held():
            trial.report(f1, record["epoch"])
            prune = trial.should_prune()
        if prune:
            raise optuna.TrialPruned(f"pruned after epoch {record['epoch']}")

    t0 = time.perf_counter()
    state, value, error = TrialState.FAIL, None, None
    test_f1 = None
    try:
        with _sigint_held():
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
        error = INTERRUPTED
        # A second SIGINT (the sweep's, when this one is slow to stop) must not cut short
        # the recording below, or the trial would stay "running".
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
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
        # Held: a trial asked but not yet marked as this worker's could not be failed by
        # the sweep after Ctrl-C.
        with _sigint_held(), warnings.catch_warnings():
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


def write_best_config(spec: SweepSpec, rows: list[dict[str, Any]],
                      storage: Storage | None = None) -> Path | None:
    """DIR/best_config.yaml: the resolved config of the best complete trial (atomically).

    Built from CONFIG, --set and the trial's values, so it holds this machine's paths even
    when the trial ran elsewhere; its output.dir is DIR/best_run, so ``nerwin train`` on it
    does not touch the trial's run directory. Replaces only the file this sweep wrote
    (its sha256 is in DIR/sweep.json); an OS error or a file that is not the sweep's is a
    one-line :class:`NerwinError`.
    """
    import dataclasses
    import hashlib

    from nerwin.atomic import atomic_write_text
    from nerwin.config import OutputConfig, dump_yaml, load_config

    done = [r for r in rows if r["state"] == "COMPLETE" and r["best_dev_f1"] is not None]
    if not done:
        return None
    storage = storage or check_storage(spec.storage)
    best = done[0]
    cfg = load_config(spec.config, [*spec.overrides,
                                    *(override(k, v) for k, v in best["params"].items())])
    cfg = dataclasses.replace(cfg, output=OutputConfig(dir=Path(spec.out) / "best_run"))
    path = Path(spec.out) / BEST_CONFIG
    text = (f"{BEST_HEADER}{best['trial']}, best dev F1 {best['best_dev_f1']:.2f}\n"
            + dump_yaml(cfg))
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    saved = read_sweep_json(Path(spec.out) / SWEEP_FILE)
    # The same bytes are no loss (another sweep on this DIR wrote them a moment ago).
    same = path.is_file() and not path.is_symlink() and _sha256(path) == digest
    if not same and not _best_config_is_ours(path, saved):
        raise NerwinError(f"{path}: not replaced: it is not the {BEST_CONFIG} this sweep "
                          f"wrote (changed since, or not nerwin's); the trials are kept in the "
                          f"study: move it away and run the same command again to write it")
    try:
        atomic_write_text(path, text)
    except OSError as e:
        raise _out_error(path, e, BEST_CONFIG) from None
    write_sweep_json(spec, storage, digest)
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
        return {"study": spec.study, "storage": mask_url(spec.storage), "trials": spec.trials,
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
    from nerwin.rundir import check_out_path

    out_p = check_out_path(Path(out))  # not /, home, below a file, or a symlink loop
    spec = SweepSpec(config=str(Path(config).resolve()), space=str(space), out=str(out_p),
                     trials=trials, storage=storage or f"sqlite:///{out_p / 'study.db'}",
                     study=study or DEFAULT_STUDY, overrides=overrides, prune=prune,
                     seed=cfg.training.seed)
    check_storage(spec.storage, new_out=out_p)
    return spec


def _worker_env() -> dict[str, str]:
    """One BLAS thread in each worker: set before its numpy is imported."""
    from nerwin.threads import THREAD_VARS

    env = dict(os.environ)
    env.update({v: "1" for v in THREAD_VARS})
    return env


def open_out_and_storage(spec: SweepSpec) -> tuple[Storage, Any]:
    """Check --storage and --out, claim --out (DIR/sweep.json), open the storage.

    Nothing is written before every check has passed; a server database is connected to
    before DIR/sweep.json is written, so a mistyped --storage leaves nothing behind (an
    SQLite file inside DIR is opened after, as DIR may not exist before). A folder this
    call created is removed again if the storage then cannot be opened.
    """
    out = Path(spec.out)
    storage = check_storage(spec.storage, new_out=out)
    check_out_dir(spec, storage)
    inside = storage.sqlite_path is not None and storage.sqlite_path.parent == out
    rdb = None if inside else _storage(storage)
    created, _ = claim_out_dir(spec, storage)
    if rdb is None:
        try:
            rdb = _storage(storage)
        except NerwinError:
            # only what this call wrote, in the folders it made: sweep.json and study.db
            _remove_created(created, (SWEEP_FILE, "study.db"))
            raise
    return storage, rdb


def run_sweep(spec: SweepSpec, workers: int = 1, *, progress: bool = True) -> SweepResult:
    """Run ``workers`` worker processes on the study until it is full; the ranked results.

    Ctrl-C stops the workers (their running trials are recorded as failed) and still
    returns the results so far, with ``interrupted`` set. A database error after the study
    was opened (the server gone) stops the workers and is a one-line error, exit code 1.
    """
    dims = load_space(spec.space, spec.config, spec.overrides)
    require_optuna()
    storage, rdb = open_out_and_storage(spec)
    procs: list[subprocess.Popen] = []
    try:
        study = open_study(spec, rdb)
        _check_space_of_study(study, dims, spec)
        stale = fail_stale_trials(study, rdb)
        result = _run_workers(spec, workers, study, procs, progress)
        rows = results(study, dims)
    except _db_errors() as e:
        _stop_workers(procs)
        err = NerwinError(f"--storage {storage.shown}: the study's database failed: "
                          f"{mask(_first_line(e), storage.url)}")
        err.exit_code = 1
        raise err from None
    interrupted, errors = result
    best = None
    try:
        best = write_best_config(spec, rows, storage)
    except NerwinError as e:
        errors.append(str(e))
    return SweepResult(rows, dims, best, stale, interrupted, errors)


def _run_workers(spec: SweepSpec, workers: int, study: Any, procs: list[subprocess.Popen],
                 progress: bool) -> tuple[bool, list[str]]:
    """Start the workers (into ``procs``) and wait for them: (interrupted?, errors)."""
    # The spec goes on stdin, not the command line: the storage URL may hold a password,
    # and any user of the machine can read a process's command line.
    cmd = [sys.executable, "-m", "nerwin.sweep", "--out", spec.out]
    payload = json.dumps(asdict(spec)).encode("utf-8")
    # A flag, not KeyboardInterrupt: that can surface inside a garbage-collector callback,
    # where Python prints and drops it. Set before the first worker starts, so a Ctrl-C
    # that reaches a worker always reaches this handler too.
    sigint = threading.Event()
    main = threading.current_thread() is threading.main_thread()  # where handlers may go
    previous = signal.signal(signal.SIGINT, lambda *_: sigint.set()) if main else None
    try:
        _start_workers(cmd, payload, workers, procs)
        _wait_for_workers(spec, study, procs, progress, sigint)
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
    # A worker ends with 130 when Ctrl-C reached it (and maybe not this process).
    interrupted = sigint.is_set() or any(p.returncode == 130 for p in procs)
    errors = [f"worker {i} exited with code {p.returncode}" for i, p in enumerate(procs)
              if p.returncode not in (0, 130)]
    return interrupted, errors


def _start_workers(cmd: list[str], payload: bytes, workers: int,
                   procs: list[subprocess.Popen]) -> None:
    for _ in range(workers):
        p = subprocess.Popen(cmd, env=_worker_env(), stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL)
        procs.append(p)
        assert p.stdin is not None
        p.stdin.write(payload)
        p.stdin.close()


def _wait_for_workers(spec: SweepSpec, study: Any, procs: list[subprocess.Popen],
                      progress: bool, sigint: threading.Event) -> None:
    """Show the progress bar until the workers end or Ctrl-C; then stop them, and fail the
    trials a worker left RUNNING (killed, or its recording cut short)."""
    from tqdm import tqdm

    bar = tqdm(total=spec.trials, desc="trials", unit="trial", disable=None if progress else True,
               file=sys.stderr)
    try:
        while any(p.poll() is None for p in procs) and not sigint.is_set():
            _update_bar(bar, study)
            sigint.wait(0.2)
        if sigint.is_set():
            _stop_workers(procs)
        # Every worker has ended here (Ctrl-C may have reached the workers alone).
        if sigint.is_set() or any(p.returncode == 130 for p in procs):
            fail_interrupted_trials(study, [p.pid for p in procs])
        _update_bar(bar, study)
    finally:
        bar.close()


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
            p.wait(timeout=STOP_S)
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
    """Worker entry point: ``python -m nerwin.sweep --out DIR`` with the spec's JSON on
    standard input (started by run_sweep; --out only shows in process lists whose worker
    it is). A database or input error is one line on stderr, password masked, exit 1."""
    spec = SweepSpec(**json.loads(sys.stdin.read()))
    try:
        worker(spec)
    except KeyboardInterrupt:
        return 130
    except NerwinError as e:
        print(f"nerwin sweep worker: {e}", file=sys.stderr)
        return 1
    except _db_errors() as e:
        print(f"nerwin sweep worker: --storage {mask_url(spec.storage)}: the study's database "
              f"failed: {mask(_first_line(e), spec.storage)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
