"""A throwaway PostgreSQL server for the sweep tests and CI (standard library only).

    python3 tests/pg_server.py start DIR   # prints the URL of a fresh server in DIR
    python3 tests/pg_server.py stop DIR    # stops it and deletes DIR

The server's files, its log and its unix socket live in DIR (which must be new or empty);
it listens on a free loopback port only, with password authentication (scram-sha-256) for
the role ``nerwin``, whose password is random, and holds an empty database ``nerwin``. The
URL is ``postgresql+psycopg2://nerwin:PASSWORD@127.0.0.1:PORT/nerwin`` (also written to
DIR/url). PostgreSQL refuses to run as root: as root, the server runs as the ``postgres``
user (as Debian's packages create it), which gets DIR.

The binaries are looked for in $NERWIN_PG_BINDIR, then Debian's /usr/lib/postgresql/*/bin
(newest first), then ``pg_config --bindir``, then PATH.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

ROLE = "nerwin"
DATABASE = "nerwin"
SERVER_USER = "postgres"  # who runs the server when we are root


class ServerError(Exception):
    """The server could not be started (the message says why, with its log's tail)."""


def find_bindir() -> Path | None:
    """The folder holding initdb, pg_ctl and createdb, or None."""
    need = ("initdb", "pg_ctl", "createdb")
    candidates: list[str] = []
    if os.environ.get("NERWIN_PG_BINDIR"):
        candidates.append(os.environ["NERWIN_PG_BINDIR"])
    debian = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(debian, key=lambda p: [int(x) for x in Path(p).parent.name.split(".")
                                                if x.isdigit()], reverse=True)
    if shutil.which("pg_config"):
        try:
            candidates.append(subprocess.run(["pg_config", "--bindir"], capture_output=True,
                                             text=True, check=True).stdout.strip())
        except (OSError, subprocess.CalledProcessError):
            pass
    if shutil.which("initdb"):
        candidates.append(str(Path(shutil.which("initdb") or "").parent))
    for c in candidates:
        if c and all(os.access(Path(c) / n, os.X_OK) for n in need):
            return Path(c)
    return None


def _as_server_user() -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--"] if os.geteuid() == 0 else []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], root: Path, what: str, env: dict[str, str] | None = None) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    if r.returncode != 0:
        log = root / "server.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise ServerError(f"{what} failed (exit {r.returncode}): {r.stderr.strip()}\n{tail}")


def start(root: Path, bindir: Path | None = None) -> str:
    """Start a server in ``root`` (new or empty); return its URL."""
    bindir = bindir or find_bindir()
    if bindir is None:
        raise ServerError("no PostgreSQL binaries (initdb, pg_ctl) found")
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    password = secrets.token_hex(12)
    (root / "pwfile").write_text(password + "\n")
    os.chmod(root / "pwfile", 0o600)
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise ServerError(f"running as root, and there is no {SERVER_USER!r} user to run "
                              f"the server as (useradd --system {SERVER_USER})") from None
        for p in (root, root / "pwfile"):
            os.chown(p, user.pw_uid, user.pw_gid)
    os.chmod(root, 0o700)
    _run([*_as_server_user(), str(bindir / "initdb"), "-D", str(root / "data"), "-U", ROLE,
          f"--pwfile={root / 'pwfile'}", "--auth=scram-sha-256", "-E", "UTF8",
          "--locale=C"], root, "initdb")
    for attempt in range(5):  # the free port may be taken by someone else meanwhile
        port = _free_port()
        options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   f"-c max_connections=50")
        try:
            _run([*_as_server_user(), str(bindir / "pg_ctl"), "-D", str(root / "data"),
                  "-l", str(root / "server.log"), "-o", options, "-w", "-t", "60", "start"],
                 root, "pg_ctl start")
            break
        except ServerError:
            if attempt == 4:
                raise
    env = {**os.environ, "PGPASSWORD": password}
    _run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", ROLE,
          DATABASE], root, "createdb", env=env)
    url = f"postgresql+psycopg2://{ROLE}:{password}@127.0.0.1:{port}/{DATABASE}"
    (root / "url").write_text(url + "\n")
    (root / "bindir").write_text(str(bindir) + "\n")
    return url


def stop(root: Path) -> None:
    """Stop the server in ``root`` (if running) and delete ``root``; never raises."""
    root = Path(root)
    data = root / "data"
    try:
        bindir = Path((root / "bindir").read_text().strip())
    except OSError:
        bindir = find_bindir()
    if bindir is not None and (data / "postmaster.pid").exists():
        subprocess.run([*_as_server_user(), str(bindir / "pg_ctl"), "-D", str(data), "-m",
                        "immediate", "-w", "-t", "60", "stop"], capture_output=True,
                       timeout=120, check=False)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        sys.exit("usage: pg_server.py start|stop DIR")
    if sys.argv[1] == "start":
        try:
            print(start(Path(sys.argv[2])))
        except ServerError as e:
            sys.exit(f"pg_server: {e}")
    else:
        stop(Path(sys.argv[2]))
