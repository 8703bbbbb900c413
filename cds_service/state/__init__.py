"""The service's own state in a SQL database (SQLite under data_dir by default, PostgreSQL when the URL says so).

open_database builds the engine and brings the schema up to date with the migrations shipped in migrations/."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
HEAD_REVISION = "0007"  # the newest migration; tests/integration/test_state.py holds it equal to alembic's head
_SQLITE_BUSY_TIMEOUT_S = 10.0
_MIGRATION_LOCK = 72_610_001  # any constant: serialises replicas that start at once on one PostgreSQL
_READ_ONLY = "spasm_read_only"
_DURABLE = "spasm_durable"
_LOCK_WAIT_MS = "spasm_lock_wait_ms"


@dataclass(frozen=True)
class Database:
    """The engine and a session factory for one database URL."""

    engine: Engine
    sessions: sessionmaker[Session]
    hook_lock_wait_s: float = 0.2

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for single-statement reads; on SQLite it takes no lock and opens no transaction (each
        statement reads one WAL snapshot), which saves a BEGIN and a ROLLBACK per read."""
        with self.engine.connect() as conn:
            conn.execution_options(**{_READ_ONLY: True})
            yield conn

    @contextmanager
    def durable_transaction(self) -> Iterator[Connection]:
        """A write transaction that is on disk when it commits (SQLite: synchronous=FULL for it), for what the
        service has promised to keep, such as feedback answered 200."""
        with self.engine.connect() as conn:
            conn.execution_options(**{_DURABLE: True})
            with conn.begin():
                yield conn

    @contextmanager
    def brief_transaction(self) -> Iterator[Connection]:
        """A write transaction for the hook path: on SQLite it waits at most hook_lock_wait_s for the write lock
        (another writer, such as a feedback burst, must not stall a hook call), then raises OperationalError with
        SQLITE_BUSY (see is_busy)."""
        with self.engine.connect() as conn:
            conn.execution_options(**{_LOCK_WAIT_MS: max(0, round(self.hook_lock_wait_s * 1000))})
            with conn.begin():
                yield conn

    def ping(self) -> bool:
        """True when the database answers a trivial query (readiness); raises SQLAlchemyError otherwise."""
        with self.reading() as conn:
            return conn.exec_driver_sql("SELECT 1").scalar() == 1

    def insert(self, table):
        """This dialect's INSERT for table, which has on_conflict_do_nothing and on_conflict_do_update."""
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)


def is_busy(exc: BaseException) -> bool:
    """Whether a database error means 'another writer holds the lock' (SQLite SQLITE_BUSY or SQLITE_LOCKED,
    PostgreSQL lock_not_available), as opposed to a database that is down or broken."""
    orig = getattr(exc, "orig", exc)
    return getattr(orig, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) \
        or getattr(orig, "sqlstate", None) == "55P03"


def connect(url: str, timeout_s: float = 3.0, hook_lock_wait_s: float = 0.2) -> Database:
    """An engine for url; for SQLite the file's folder is created and WAL mode is switched on. `postgresql://`
    URLs use psycopg 3; timeout_s bounds PostgreSQL connects and statements. hook_lock_wait_s bounds
    brief_transaction's wait for SQLite's write lock."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        # a server that stops answering (host down, packets dropped) breaks the connection after timeout_s of
        # unacknowledged data (tcp_user_timeout) or of silence on an idle one (keepalives), not after the
        # kernel's 15 minutes of retransmissions
        engine = create_engine(parsed, pool_pre_ping=True, connect_args={
            "connect_timeout": max(1, round(timeout_s)),
            "options": f"-c statement_timeout={int(timeout_s * 1000)}",
            "tcp_user_timeout": int(timeout_s * 1000), "keepalives": 1, "keepalives_idle": max(1, round(timeout_s)),
            "keepalives_interval": 1, "keepalives_count": 3})
        return Database(engine, sessionmaker(engine), hook_lock_wait_s)
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(parsed, pool_pre_ping=True)
        return Database(engine, sessionmaker(engine), hook_lock_wait_s)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # let SQLAlchemy, not the sqlite3 module, decide where transactions begin (SQLAlchemy's documented recipe)
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets readers and one writer from several gunicorn workers and replicas share the file
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        _record.info["busy_timeout_ms"] = round(_SQLITE_BUSY_TIMEOUT_S * 1000)  # set by the timeout above

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        options = connection.get_execution_options()
        if options.get(_READ_ONLY):
            return  # no BEGIN: each read is one statement, which SQLite runs on one WAL snapshot by itself
        # NORMAL survives a crash of the service but may lose the last commits in a power cut; FULL (about 0.4 ms
        # more per commit here) is kept for durable_transaction. The level cannot change inside a transaction, and is
        # set only when it differs from the connection's current one (one statement less on most hook calls).
        level = "FULL" if options.get(_DURABLE) else "NORMAL"
        info = connection.connection.info  # the pooled DBAPI connection's own dict: it lives as long as the connection
        if info.get("synchronous") != level:
            connection.exec_driver_sql(f"PRAGMA synchronous={level}")
            info["synchronous"] = level
        # the wait for the write lock: short on the hook path (brief_transaction), the full timeout elsewhere
        wait_ms = options.get(_LOCK_WAIT_MS, round(_SQLITE_BUSY_TIMEOUT_S * 1000))
        if info.get("busy_timeout_ms") != wait_ms:
            connection.exec_driver_sql(f"PRAGMA busy_timeout={int(wait_ms)}")
            info["busy_timeout_ms"] = wait_ms
        # take the write lock up front: a deferred transaction that reads first can fail with SQLITE_BUSY
        # instead of waiting when another process writes in between
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return Database(engine, sessionmaker(engine), hook_lock_wait_s)


def upgrade(database: Database, revision: str = "head") -> None:
    """Apply every migration up to revision (idempotent)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with database.engine.begin() as connection:
        if database.dialect == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def open_database(url: str, timeout_s: float = 3.0, hook_lock_wait_s: float = 0.2) -> Database:
    """Connect and migrate; pooled connections are then closed so that forked gunicorn workers open their own."""
    database = connect(url, timeout_s, hook_lock_wait_s)
    if current_revision(database) != HEAD_REVISION:  # alembic (~11 MiB in every process) is loaded only to migrate
        upgrade(database)
    database.engine.dispose()
    return database


def current_revision(database: Database) -> str | None:
    """The migration the database is at (alembic's version table), None when it has none (or cannot be read: the
    migration then meets the fault and raises it)."""
    try:
        with database.reading() as conn:
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    except SQLAlchemyError:
        return None


class Every:
    """A thread-safe 'is it time again?' for periodic housekeeping such as pruning expired rows."""

    def __init__(self, interval_s: float):
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._next = 0.0

    def due(self, now: float) -> bool:
        """True at most once per interval (the first call is due)."""
        with self._lock:
            if now < self._next:
                return False
            self._next = now + self._interval_s
            return True
