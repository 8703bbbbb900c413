"""The service database: created on first start with WAL mode and migrated (also by `spasm-cds db upgrade`); the
jti store refuses a second use, forgets ids once their token has expired, and prunes expired rows."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing

from sqlalchemy import func, select

from cds_service.settings import Settings
from cds_service.state import open_database
from cds_service.state.replay import JtiStore
from cds_service.state.tables import JtiSeen
from tests.conftest import REPO


def sqlite_url(tmp_path) -> str:
    return Settings(data_dir=tmp_path / "data").effective_database_url


def test_first_start_creates_the_file_in_wal_mode_at_the_newest_revision(tmp_path):
    open_database(sqlite_url(tmp_path))
    open_database(sqlite_url(tmp_path))  # a second start changes nothing
    with closing(sqlite3.connect(tmp_path / "data" / "spasm-cds.sqlite3")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
        columns = [row[1] for row in db.execute("PRAGMA table_info(jti_seen)")]
    assert columns == ["issuer", "jti", "expires_at"]


def test_db_upgrade_command_migrates_the_configured_database(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cds_service", "db", "upgrade"], cwd=REPO, capture_output=True,
                            text=True, timeout=120, env={"SPASM_CDS_DATA_DIR": str(tmp_path / "data"),
                                                         "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "newest revision" in result.stdout
    with closing(sqlite3.connect(tmp_path / "data" / "spasm-cds.sqlite3")) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]


def test_a_jti_is_accepted_once_until_its_token_expires(tmp_path):
    now = [1_000_000.0]
    store = JtiStore(open_database(sqlite_url(tmp_path)), clock=lambda: now[0])
    assert store.first_use("https://iss.example", "j1", expires_at=1_000_300)
    assert not store.first_use("https://iss.example", "j1", expires_at=1_000_300)
    assert store.first_use("https://other.example", "j1", expires_at=1_000_300)
    now[0] = 1_000_301
    assert store.first_use("https://iss.example", "j1", expires_at=1_000_900)  # the old token could not be used


def test_expired_rows_are_pruned(tmp_path):
    now = [1_000_000.0]
    database = open_database(sqlite_url(tmp_path))
    store = JtiStore(database, clock=lambda: now[0])
    for i in range(5):
        assert store.first_use("https://iss.example", f"old-{i}", expires_at=1_000_010)
    now[0] += 3600
    assert store.first_use("https://iss.example", "new", expires_at=int(now[0]) + 300)
    with database.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(JtiSeen)).scalar_one() == 1
