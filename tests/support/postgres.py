"""A real PostgreSQL for integration tests: Debian's server (installed with apt-get when missing, as CI must), one
throwaway cluster in a temp dir on a free 127.0.0.1 port, run as a non-root user, stopped and removed at the end."""
from __future__ import annotations

import fcntl
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.support.loopback import free_port

INSTALL_TIMEOUT_S = 600.0
START_TIMEOUT_S = 60
SUPERUSER = "spasm"
_LOCK = Path(tempfile.gettempdir()) / "spasm-cds-postgres-install.lock"


def _bin_dir() -> Path | None:
    """The newest installed server's bin folder (Debian keeps each major version under /usr/lib/postgresql)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def ensure_postgres() -> Path:
    """The bin folder of a PostgreSQL server, installing Debian's `postgresql` first if there is none (root only).

    Raises RuntimeError when it is missing and cannot be installed."""
    found = _bin_dir()
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("PostgreSQL is not installed and only root can install it: apt-get install postgresql")
    with open(_LOCK, "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if _bin_dir() is None:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            install = ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]
            for command in (["apt-get", "update"], install):
                done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, env=env,
                                      stdin=subprocess.DEVNULL)
                if done.returncode != 0:
                    raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}"
                                       f"{done.stderr[-2000:]}")
    found = _bin_dir()
    if found is None:
        raise RuntimeError("apt-get installed postgresql but no initdb was found under /usr/lib/postgresql")
    return found


def _server_user() -> str | None:
    """Who runs the server: the current user, or (as root, which PostgreSQL refuses) Debian's `postgres`."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
                       check=True, capture_output=True, timeout=30)
    return "postgres"


class PostgresCluster:
    """One cluster for the duration of a `with` block; `url(db)` is a SQLAlchemy URL, `create_database()` a fresh
    database; stop() and start() take it down and up again on the same port (database-down tests)."""

    def __init__(self) -> None:
        self.port = 0
        self._password = secrets.token_hex(12)
        self._workdir: Path | None = None
        self._count = 0

    def __enter__(self) -> PostgresCluster:
        bin_dir = ensure_postgres()
        self._pg_ctl = str(bin_dir / "pg_ctl")
        self._user = _server_user()
        self._workdir = Path(tempfile.mkdtemp(prefix="spasm-cds-pg-"))
        self._data = self._workdir / "data"
        password_file = self._workdir / "password"
        password_file.write_text(self._password)
        if self._user:
            entry = pwd.getpwnam(self._user)
            for path in (self._workdir, password_file):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.port = free_port()
        try:
            self._run([str(bin_dir / "initdb"), "-D", str(self._data), "-U", SUPERUSER, "-A", "scram-sha-256",
                       f"--pwfile={password_file}", "-E", "UTF8", "--no-sync", "--no-instructions"])
            with open(self._data / "postgresql.conf", "a") as conf:
                conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = ''\n"
                           "max_connections = 200\n")
            self.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._workdir is None:
            return
        if (self._data / "postmaster.pid").exists():
            self._run([self._pg_ctl, "stop", "-D", str(self._data), "-m", "immediate", "-w"], check=False)
        shutil.rmtree(self._workdir, ignore_errors=True)
        self._workdir = None

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        assert self._workdir is not None, "set up first"
        self._run([self._pg_ctl, "start", "-D", str(self._data), "-l", str(self._workdir / "server.log"), "-w",
                   "-t", str(START_TIMEOUT_S)])

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are cut, as when a database host goes away)."""
        self._run([self._pg_ctl, "stop", "-D", str(self._data), "-m", "fast", "-w"])

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL for one database of this cluster."""
        return f"postgresql+psycopg://{SUPERUSER}:{self._password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; returns its URL."""
        self._count += 1
        name = f"spasm_{os.getpid()}_{self._count}_{int(time.time() * 1000) % 100_000}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, password=self._password,
                             dbname="postgres", autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _run(self, command: list[str], check: bool = True) -> None:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                              cwd=self._workdir, user=self._user,
                              group=pwd.getpwnam(self._user).pw_gid if self._user else None,
                              extra_groups=[] if self._user else None)
        if check and done.returncode != 0:
            log = (self._workdir / "server.log") if self._workdir else None
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}"
                               f"{done.stderr[-2000:]}\n{tail}")
