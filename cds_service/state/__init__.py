"""The service's own state in a SQL database (SQLite under data_dir by default, PostgreSQL when the URL says so).

open_database builds the engine and brings the schema up to date with the migrations shipped in migrations/."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_SQLITE_BUSY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Database:
    """The engine and a session factory for one database URL."""

    engine: Engine
    sessions: sessionmaker[Session]


def connect(url: str) -> Database:
    """An engine for url; for SQLite the file's folder is created and WAL mode is switched on."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(url, pool_pre_ping=True)
        return Database(engine, sessionmaker(engine))
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # let SQLAlchemy, not the sqlite3 module, decide where transactions begin (SQLAlchemy's documented recipe)
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets readers and one writer from several gunicorn workers and replicas share the file
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        # take the write lock up front: a deferred transaction that reads first can fail with SQLITE_BUSY
        # instead of waiting when another process writes in between
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return Database(engine, sessionmaker(engine))


def upgrade(database: Database, revision: str = "head") -> None:
    """Apply every migration up to revision (idempotent)."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def open_database(url: str) -> Database:
    """Connect and migrate; pooled connections are then closed so that forked gunicorn workers open their own."""
    database = connect(url)
    upgrade(database)
    database.engine.dispose()
    return database
