"""Alembic's environment: migrate the connection state.upgrade hands in, or the URL given on the command line."""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from cds_service.state.tables import Base

config = context.config


def _run(connection) -> None:
    # batch mode lets later migrations alter SQLite tables (SQLite has little ALTER TABLE)
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("alembic: neither a connection nor sqlalchemy.url was given")
    with create_engine(url).begin() as own:
        _run(own)
