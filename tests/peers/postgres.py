"""A throwaway PostgreSQL cluster on loopback, for the snapshot store's PostgreSQL tests.

``start_postgres()`` runs ``initdb`` into a fresh ``mkdtemp`` under /tmp (not pytest's tmp_path:
its parent is 0700 to root and the server runs as ``postgres``), starts the ``postgres`` server
in the foreground on a free port of 127.0.0.1 (TCP on loopback only, ``trust`` auth, a private
Unix-socket directory) and creates the database ``peer``. ``peer.url`` is the SQLAlchemy URL
``postgresql+psycopg://postgres@127.0.0.1:<port>/peer``; ``peer.new_database(name)`` creates
another, empty database and returns its URL; ``peer.stop()`` runs ``pg_ctl stop -m fast`` and
removes the whole temp dir.

* Binaries: the newest ``/usr/lib/postgresql/*/bin`` (Debian: not on PATH), else PATH.
* As root the server tools run as the ``postgres`` user (``initdb`` and ``pg_ctl`` refuse root);
  as anyone else they run as that user. The database superuser is ``postgres`` either way.
* The cluster is made for speed, not durability: ``fsync=off``, ``synchronous_commit=off``,
  ``full_page_writes=off``. Encoding UTF8 with the C locale: ``ORDER BY`` on text is byte order
  (the same as SQLite's default BINARY collation), whatever the machine's locale.
* A crashed or killed pytest leaves no server behind: the server is this process's child with
  ``PR_SET_PDEATHSIG=SIGINT`` (Linux sends a fast shutdown when the thread that started it dies),
  and the next ``start_postgres`` removes temp dirs whose pytest is gone (stopping a server still
  running there). The server log is ``<base_dir>/postgres.log``; start-up errors quote it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.peers.loopback import free_port
from tests.peers.process import signal_on_parent_death

HOST = "127.0.0.1"
SUPERUSER = "postgres"
OS_USER = "postgres"  # who runs the server when the tests run as root
DEFAULT_DATABASE = "peer"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
OWNER_FILE = "pytest.pid"  # in the base dir: the pid of the process that started the cluster
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresError(RuntimeError):
    """initdb or the server failed; the message carries their output / the server log."""


def find_bin_dir() -> Path | None:
    """The newest Debian ``/usr/lib/postgresql/<major>/bin`` with initdb, else initdb's dir on PATH."""
    candidates = [Path(path).parent for path in glob.glob("/usr/lib/postgresql/*/bin/initdb")]

    def major(bin_dir: Path) -> tuple[int, str]:
        version = bin_dir.parent.name
        return (int(version) if version.isdigit() else -1, version)

    if candidates:
        return max(candidates, key=major)
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _server_user() -> pwd.struct_passwd | None:
    """The account the server runs as: ``postgres`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam(OS_USER)


def postgres_available() -> bool:
    """initdb, postgres and pg_ctl are installed (and, as root, the ``postgres`` account exists)."""
    bin_dir = find_bin_dir()
    if bin_dir is None or not all((bin_dir / name).exists() for name in ("initdb", "postgres", "pg_ctl")):
        return False
    try:
        _server_user()
    except KeyError:
        return False
    return True


def _fast_shutdown_with_parent() -> None:
    """In the forked child, after subprocess switched to the server user (a credential change
    clears the death signal, so it must be set afterwards): SIGINT (= fast shutdown) the server
    when the starting thread dies."""
    signal_on_parent_death(signal.SIGINT)


def _as_server_user(user: pwd.struct_passwd | None) -> dict[str, Any]:
    """subprocess keyword arguments that run a command as the server user."""
    if user is None:
        return {}
    env = {**os.environ, "HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [], "env": env}


def _run(command: Sequence[str], user: pwd.struct_passwd | None, what: str, timeout: float = 120) -> None:
    done = subprocess.run(list(command), capture_output=True, text=True, check=False, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd="/", **_as_server_user(user))
    if done.returncode != 0:
        raise PostgresError(f"{what} failed ({done.returncode}): {' '.join(command)}\n{done.stdout}{done.stderr}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int | None:
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None


def _server_running(data_dir: Path) -> bool:
    """A live process still serves ``data_dir``: the pid in postmaster.pid is alive and its
    command line names this data dir (not a recycled pid)."""
    server = _read_pid(data_dir / "postmaster.pid")
    if server is None or not _pid_alive(server):
        return False
    try:
        cmdline = Path(f"/proc/{server}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return os.fsencode(str(data_dir)) in cmdline


def sweep_stale(prefix: str, bin_dir: Path | None = None) -> list[Path]:
    """Remove ``/tmp/<prefix>-*`` cluster dirs whose pytest process is gone, stopping a server
    still running in one (immediate shutdown). Best effort; returns the dirs removed."""
    removed: list[Path] = []
    for base in Path(tempfile.gettempdir()).glob(f"{prefix}-*"):
        owner = _read_pid(base / OWNER_FILE)
        if owner is None or _pid_alive(owner) or not base.is_dir():
            continue
        data_dir = base / "data"
        if _server_running(data_dir):
            if bin_dir is not None:
                with contextlib.suppress(PostgresError, subprocess.TimeoutExpired, KeyError):
                    _run([str(bin_dir / "pg_ctl"), "stop", "-D", str(data_dir), "-m", "immediate", "-w"],
                         _server_user(), "pg_ctl stop (stale cluster)", timeout=STOP_TIMEOUT)
            if _server_running(data_dir):
                continue  # still running: leave it rather than pull its files away
        shutil.rmtree(base, ignore_errors=True)
        removed.append(base)
    return removed


def _admin_connect(port: int, dbname: str = "postgres", timeout: int = 5) -> Any:
    import psycopg  # the driver is a requirement; imported late so postgres_available() needs no driver

    return psycopg.connect(host=HOST, port=port, user=SUPERUSER, dbname=dbname, connect_timeout=timeout,
                           autocommit=True)


@dataclass(frozen=True)
class PostgresPeer:
    host: str
    port: int
    database: str
    user: str
    base_dir: Path  # mkdtemp under /tmp: data/, sock/, postgres.log, pytest.pid; removed by stop()
    data_dir: Path
    socket_dir: Path
    bin_dir: Path
    version: str  # e.g. "15.18 (Debian 15.18-0+deb12u1)"
    initdb_seconds: float
    start_seconds: float  # server launch until a connection worked
    process: subprocess.Popen[bytes] = field(repr=False, compare=False)
    server_user: pwd.struct_passwd | None = field(repr=False, compare=False)

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def connect(self, database: str | None = None) -> Any:
        """A raw psycopg connection (autocommit) as the superuser, for admin statements."""
        return _admin_connect(self.port, database or self.database)

    def new_database(self, name: str) -> str:
        """CREATE DATABASE ``name`` (lower-case identifier, <= 63 chars) and return its URL."""
        from psycopg import sql

        if not _NAME.fullmatch(name):
            raise ValueError(f"not a plain lower-case identifier: {name!r}")
        with self.connect("postgres") as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE ``name`` if it exists, disconnecting anyone still on it (WITH (FORCE))."""
        from psycopg import sql

        with self.connect("postgres") as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """``pg_ctl stop -m fast``, wait for the server, remove ``base_dir`` (idempotent)."""
        if self.process.poll() is None:
            try:
                _run([str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w",
                      "-t", str(int(STOP_TIMEOUT))], self.server_user, "pg_ctl stop", timeout=STOP_TIMEOUT + 5)
            except (PostgresError, subprocess.TimeoutExpired):
                if self.process.poll() is None:
                    self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> PostgresPeer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _wait_ready(process: subprocess.Popen[bytes], port: int, log_file: Path) -> str | None:
    """The server version once a real connection to ``postgres`` works; None if the server exited."""
    import psycopg

    deadline = time.monotonic() + READY_TIMEOUT
    last_error = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None
        try:
            with _admin_connect(port, timeout=2) as conn:
                row = conn.execute("SHOW server_version").fetchone()
                return str(row[0])
        except psycopg.OperationalError as error:  # refused / "the database system is starting up"
            last_error = str(error).strip()
        time.sleep(0.02)
    process.kill()
    process.wait(timeout=10)
    raise PostgresError(f"postgres did not accept connections within {READY_TIMEOUT:.0f} s (last error: "
                        f"{last_error}); server log:\n{log_file.read_text(errors='replace')}")


def start_postgres(workdir_hint: str = "pgpeer") -> PostgresPeer:
    """initdb a fresh cluster in ``/tmp/<workdir_hint>-XXXX``, start it on a free loopback port,
    create the database ``peer`` and return the running peer. Raises PostgresError on failure
    (the temp dir is removed then)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", workdir_hint):
        raise ValueError(f"workdir_hint must be a plain file name: {workdir_hint!r}")
    bin_dir = find_bin_dir()
    if bin_dir is None or not postgres_available():
        raise PostgresError("PostgreSQL server binaries (initdb, postgres, pg_ctl) not found under "
                            "/usr/lib/postgresql/*/bin or on PATH (Debian package postgresql; ./test.sh installs it)")
    try:
        user = _server_user()
    except KeyError as error:
        raise PostgresError(f"running as root but there is no {OS_USER!r} account to run the server") from error
    sweep_stale(workdir_hint, bin_dir)

    base_dir = Path(tempfile.mkdtemp(prefix=f"{workdir_hint}-", dir=tempfile.gettempdir()))
    try:
        return _start_in(base_dir, bin_dir, user)
    except BaseException:
        shutil.rmtree(base_dir, ignore_errors=True)
        raise


def _start_in(base_dir: Path, bin_dir: Path, user: pwd.struct_passwd | None) -> PostgresPeer:
    (base_dir / OWNER_FILE).write_text(f"{os.getpid()}\n")
    data_dir, socket_dir, log_file = base_dir / "data", base_dir / "sock", base_dir / "postgres.log"
    socket_dir.mkdir()
    log_file.touch()
    if user is not None:
        for path in (base_dir, socket_dir, log_file):
            os.chown(path, user.pw_uid, user.pw_gid)

    started = time.monotonic()
    _run([str(bin_dir / "initdb"), "-D", str(data_dir), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
          "--no-locale", "--no-sync", "--no-instructions"], user, "initdb")
    initdb_seconds = time.monotonic() - started

    output = ""
    for _attempt in range(3):  # a free port can be taken between picking and binding: retry
        port = free_port()
        command = [
            str(bin_dir / "postgres"), "-D", str(data_dir), "-p", str(port), "-k", str(socket_dir),
            "-c", f"listen_addresses={HOST}", "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "logging_collector=off",
            "-c", "log_min_messages=warning",
        ]
        started = time.monotonic()
        with log_file.open("ab") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       cwd="/", start_new_session=True,  # no Ctrl-C from the terminal
                                       preexec_fn=_fast_shutdown_with_parent, **_as_server_user(user))
        version = _wait_ready(process, port, log_file)
        if version is not None:
            start_seconds = time.monotonic() - started
            peer = PostgresPeer(
                host=HOST, port=port, database=DEFAULT_DATABASE, user=SUPERUSER, base_dir=base_dir,
                data_dir=data_dir, socket_dir=socket_dir, bin_dir=bin_dir, version=version,
                initdb_seconds=initdb_seconds, start_seconds=start_seconds, process=process, server_user=user,
            )
            try:
                peer.new_database(DEFAULT_DATABASE)
            except BaseException:
                peer.stop()
                raise
            return peer
        output = log_file.read_text(errors="replace")
        if "Address already in use" not in output:
            break
    raise PostgresError(f"postgres exited with {process.returncode} during start-up; server log:\n{output}")
