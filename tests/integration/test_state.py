"""The service database, on SQLite and on a real PostgreSQL: created and migrated on first start (also by
`spasm-cds db upgrade`); the jti store refuses a second use and prunes; the card memory keys patients with a secret
made once, records issued cards in one batch and recalls them; the feedback store keeps every outcome once and sets
what its override reason asks, for every rule of the card."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from contextlib import closing

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from cds_service.knowledge.model import OverrideEffect
from cds_service.memory import IssuedCard, Recall
from cds_service.settings import Settings
from cds_service.state import HEAD_REVISION, connect, open_database
from cds_service.state.feedback import FeedbackItem, FeedbackStore
from cds_service.state.replay import JtiStore, ReplayMemoryFull
from cds_service.state.suppression import CardMemory, read_secret
from cds_service.state.tables import CardIssued, Feedback, JtiSeen, Suppression
from tests.conftest import REPO

pytestmark = pytest.mark.integration
DAY = 86_400
T0 = 1_800_000_000
SNOOZE = OverrideEffect("snooze", 30)
NOT_RELEVANT = OverrideEffect("until-data-changes")


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(REPO / "cds_service" / "state" / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def sqlite_url(tmp_path) -> str:
    return Settings(data_dir=tmp_path / "data").effective_database_url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    return request.getfixturevalue("postgres").create_database()


@pytest.fixture
def open_db():
    """open_database, with every pooled connection closed at the end so none is left to the garbage collector."""
    opened = []

    def opening(url: str):
        database = open_database(url)
        opened.append(database)
        return database

    yield opening
    for database in opened:
        database.engine.dispose()


def count(database, table) -> int:
    with database.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def memory_at(database, now: list[float], **options) -> CardMemory:
    return CardMemory(database, read_secret(database), clock=lambda: now[0], **options)


def issue(memory: CardMemory, patient: str, *cards: IssuedCard, hook_instance: str = "h1", service: str = "svc",
          context: str = "ctx", user: str = "u1") -> None:
    memory.record(cards, service, "patient-view", hook_instance, patient, memory.key(patient), context,
                  memory.key(patient, user))


def recall_of(memory: CardMemory, patient: str, service_id: str, hook_instance: str, shown_since: int | None,
              select_service: str | None = None, context_key: str = "", select_since: int = 0, *,
              user: str = "u1") -> Recall:
    """What the memory recalls for this patient and clinician."""
    return memory.recall(memory.key(patient), service_id, hook_instance, shown_since, select_service, context_key,
                         select_since, user_key=memory.key(patient, user))


def test_first_start_creates_the_sqlite_file_in_wal_mode(tmp_path, open_db):
    open_db(sqlite_url(tmp_path))
    with closing(sqlite3.connect(tmp_path / "data" / "spasm-cds.sqlite3")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        columns = [row[1] for row in db.execute("PRAGMA table_info(jti_seen)")]
    assert columns == ["issuer", "jti", "expires_at"]


def test_sqlite_commits_durably_only_what_must_survive_a_power_cut(tmp_path, open_db):
    """durable_transaction runs at synchronous=FULL, every other write at NORMAL, on the same pooled connection
    whatever came before (the level is set only when it changes, so a stale remembered level would show here)."""
    database = open_db(sqlite_url(tmp_path))
    database.engine.pool.dispose()
    levels = []
    for durable in (False, True, True, False, False, True):
        opened = database.durable_transaction() if durable else database.engine.begin()
        with opened as conn:
            levels.append(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())
    assert levels == [1, 2, 2, 1, 1, 2]  # 1 NORMAL, 2 FULL


def test_start_migrates_to_the_newest_revision_once(database_url, open_db):
    database = open_db(database_url)
    first_secret = read_secret(database)
    open_db(database_url)  # a second start changes nothing
    with database.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [(head_revision(),)]
        tables = set(inspect(conn).get_table_names())
    assert {"jti_seen", "card_issued", "feedback", "suppression", "service_secret"} <= tables
    assert read_secret(database) == first_secret and len(first_secret) == 64


def test_db_upgrade_command_migrates_the_configured_database(database_url, tmp_path, open_db):
    env = {"PATH": "/usr/bin:/bin", "SPASM_CDS_DATA_DIR": str(tmp_path / "data")}
    if database_url.startswith("postgresql"):
        env["SPASM_CDS_DATABASE_URL"] = database_url
    result = subprocess.run([sys.executable, "-m", "cds_service", "db", "upgrade"], cwd=REPO, capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "newest revision" in result.stdout
    password = make_url(database_url).password
    assert not password or password not in result.stdout
    with open_db(database_url).engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [(head_revision(),)]


def test_a_jti_is_accepted_once_until_its_token_expires(database_url, open_db):
    now = [1_000_000.0]
    store = JtiStore(open_db(database_url), clock=lambda: now[0])
    assert store.first_use("https://iss.example", "j1", expires_at=1_000_300)
    assert not store.first_use("https://iss.example", "j1", expires_at=1_000_300)
    assert store.first_use("https://other.example", "j1", expires_at=1_000_300)
    now[0] = 1_000_301
    assert store.first_use("https://iss.example", "j1", expires_at=1_000_900)  # the old token could not be used


def test_expired_jtis_are_pruned(database_url, open_db):
    now = [1_000_000.0]
    database = open_db(database_url)
    store = JtiStore(database, clock=lambda: now[0])
    for i in range(5):
        assert store.first_use("https://iss.example", f"old-{i}", expires_at=1_000_010)
    now[0] += 3600
    assert store.first_use("https://iss.example", "new", expires_at=int(now[0]) + 300)
    assert count(database, JtiSeen) == 1


def test_ids_the_database_cannot_take_are_kept_per_worker_and_written_through_when_it_can(tmp_path, open_db):
    now = [1_000_000.0]
    url = sqlite_url(tmp_path)
    database = open_db(url)
    worker_a, worker_b = (JtiStore(open_db(url), clock=lambda: now[0]) for _ in range(2))
    with closing(sqlite3.connect(make_url(url).database, isolation_level=None)) as holder:
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock past hook_lock_wait_s
        assert worker_a.first_use("https://iss.example", "j1", expires_at=1_000_300)
        assert not worker_a.first_use("https://iss.example", "j1", expires_at=1_000_300)  # refused by its worker
        assert worker_b.first_use("https://iss.example", "j1", expires_at=1_000_300)  # the residual risk
        holder.execute("ROLLBACK")
    assert count(database, JtiSeen) == 0 and worker_a.kept() == worker_b.kept() == 1
    now[0] += 2  # past the retry interval
    assert worker_a.first_use("https://iss.example", "j2", expires_at=1_000_300)
    assert worker_b.first_use("https://iss.example", "j3", expires_at=1_000_300)  # j1 is already there: a conflict
    assert count(database, JtiSeen) == 3 and worker_a.kept() == worker_b.kept() == 0
    assert not JtiStore(database, clock=lambda: now[0]).first_use("https://iss.example", "j1", expires_at=1_000_300)


def test_a_full_in_process_memory_takes_no_new_id_until_some_expire(open_db):
    now = [1_000_000.0]
    unreachable = connect("postgresql://spasm:none@127.0.0.1:1/spasm", timeout_s=1)
    store = JtiStore(unreachable, clock=lambda: now[0], max_kept=2)
    assert store.first_use("https://iss.example", "j1", expires_at=1_000_100)
    assert store.first_use("https://iss.example", "j2", expires_at=1_000_300)
    with pytest.raises(ReplayMemoryFull):
        store.first_use("https://iss.example", "j3", expires_at=1_000_300)
    assert not store.first_use("https://iss.example", "j2", expires_at=1_000_300)
    now[0] = 1_000_101  # j1 has expired
    assert store.first_use("https://iss.example", "j3", expires_at=1_000_300)
    unreachable.engine.dispose()


def test_patient_keys_are_keyed_hashes_and_raw_ids_are_stored_only_when_configured(database_url, open_db):
    database = open_db(database_url)
    now = [T0]
    hashed, raw = memory_at(database, now), memory_at(database, now, store_patient_ids=True)
    issue(hashed, "patient-7", IssuedCard("c1", "rule-a", "fp", {"rule-a": "fp"}, "info"))
    issue(raw, "patient-8", IssuedCard("c2", "rule-a", "fp", {"rule-a": "fp"}, "info"))
    with database.engine.connect() as conn:
        rows = dict(conn.execute(select(CardIssued.card_uuid, CardIssued.patient_id)).all())
        keys = conn.execute(select(CardIssued.patient_key)).scalars().all()
    assert rows == {"c1": None, "c2": "patient-8"}
    assert "patient-7" not in keys and hashed.key("patient-7") in keys and len(set(keys)) == 2
    other = CardMemory(database, b"another secret")
    assert other.key("patient-7") != hashed.key("patient-7")


def test_issued_cards_are_recalled_by_patient_and_by_hook_context(database_url, open_db):
    database = open_db(database_url)
    now = [T0]
    memory = memory_at(database, now)
    card = IssuedCard("c1", "rule-a", "fp-1", {"rule-a": "fp-1"}, "info")
    issue(memory, "p1", card, IssuedCard("c2", "group:g", "fp-g", {"rule-b": "fp-b", "rule-c": "fp-c"}, "info"),
          context="ctx-1")
    issue(memory, "p1", card)  # the same card uuid again (a retried call) is kept once
    assert count(database, CardIssued) == 2
    now[0] += 60
    recall = recall_of(memory, "p1", "svc", "h2", shown_since=T0)
    assert recall.last_shown == {("rule-a", "fp-1"): T0, ("group:g", "fp-g"): T0}
    assert recall_of(memory, "p1", "svc", "h1", shown_since=T0).last_shown == {}  # its own call
    assert recall_of(memory, "p1", "other-svc", "h2", shown_since=T0).last_shown == {}
    assert recall_of(memory, "p2", "svc", "h2", shown_since=T0).last_shown == {}
    at_select = recall_of(memory, "p1", "sign", "h3", None, "svc", "ctx-1", select_since=T0)
    assert at_select.shown_at_select == {("rule-a", "fp-1"), ("group:g", "fp-g")}
    assert recall_of(memory, "p1", "sign", "h3", None, "svc", "ctx-2", T0).shown_at_select == set()
    assert recall_of(memory, "p1", "sign", "h3", None, "svc", "ctx-1", T0 + 1).shown_at_select == set()


def feedback(card: str, outcome: str = "overridden", at_s: int = T0, effect=None, code: str | None = None):
    return FeedbackItem(card=card, outcome=outcome, outcome_at_ms=at_s * 1000,
                        accepted_suggestions=("s1",) if outcome == "accepted" else (),
                        reason_system="urn:spasm-cds:override-reason" if code else None, reason_code=code,
                        effect=effect)


def test_feedback_is_stored_once_and_unknown_cards_are_kept_and_flagged(database_url, open_db):
    database = open_db(database_url)
    now = [T0 + 10]
    memory, store = memory_at(database, now), FeedbackStore(database, clock=lambda: now[0])
    issue(memory, "p1", IssuedCard("c1", "rule-a", "fp", {"rule-a": "fp"}, "warning"))
    result = store.store("svc", [feedback("c1", "accepted"), feedback("no-such-card", code="snooze-30d")])
    assert (result.stored, result.repeated, result.unknown_cards) == (2, 0, 1)
    again = store.store("svc", [feedback("c1", "accepted")])
    assert (again.stored, again.repeated) == (0, 1)
    store.store("svc", [feedback("c1", "accepted", at_s=T0 + 5)])  # another moment is another outcome
    with database.engine.connect() as conn:
        rows = conn.execute(select(Feedback.card_uuid, Feedback.card_known, Feedback.accepted_suggestions)
                            .order_by(Feedback.id)).all()
    assert rows == [("c1", True, ["s1"]), ("no-such-card", False, None), ("c1", True, ["s1"])]
    assert store.store("other-svc", [feedback("c1")]).unknown_cards == 1  # a card of another service


def test_the_same_feedback_sent_to_two_services_is_two_records(database_url, open_db):
    """Feedback sent first to the wrong service must not make the right service's copy a repeat (revision 0004)."""
    database = open_db(database_url)
    now = [T0 + 10]
    memory, store = memory_at(database, now), FeedbackStore(database, clock=lambda: now[0])
    issue(memory, "p1", IssuedCard("c1", "rule-a", "fp", {"rule-a": "fp"}, "warning"), service="right")

    wrong = store.store("wrong", [feedback("c1", code="snooze-30d", effect=SNOOZE)])
    right = store.store("right", [feedback("c1", code="snooze-30d", effect=SNOOZE)])
    again = store.store("right", [feedback("c1", code="snooze-30d", effect=SNOOZE)])

    assert (wrong.stored, wrong.unknown_cards) == (1, 1)
    assert (right.stored, right.repeated, right.unknown_cards) == (1, 0, 0)
    assert (again.stored, again.repeated) == (0, 1)
    with database.engine.connect() as conn:
        rows = conn.execute(select(Feedback.service_id, Feedback.card_known).order_by(Feedback.id)).all()
    assert rows == [("wrong", False), ("right", True)]
    assert count(database, Suppression) == 2  # the right service's copy acknowledged the card and snoozed its rule


def migrate(database, action: str, revision: str) -> None:
    """alembic upgrade or downgrade to revision, as state.upgrade runs it."""
    config = Config()
    config.set_main_option("script_location", str(REPO / "cds_service" / "state" / "migrations"))
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def test_revision_0004_keeps_every_feedback_row_and_makes_it_unique_per_service(database_url, open_db):
    database = connect(database_url)
    try:
        migrate(database, "upgrade", "0003")
        row = {"card_uuid": "c1", "card_known": False, "outcome": "overridden", "outcome_at_ms": T0 * 1000,
               "received_at": T0}
        with database.engine.begin() as conn:
            conn.execute(Feedback.__table__.insert(), [{**row, "service_id": "a"},
                                                       {**row, "service_id": "a", "outcome_at_ms": 1}])
            # 0003: one row per card, outcome and moment, whichever service
            with pytest.raises(IntegrityError), conn.begin_nested():
                conn.execute(Feedback.__table__.insert(), {**row, "service_id": "b"})

        migrate(database, "upgrade", "head")

        with database.engine.begin() as conn:
            conn.execute(Feedback.__table__.insert(), {**row, "service_id": "b"})
            with pytest.raises(IntegrityError), conn.begin_nested():
                conn.execute(Feedback.__table__.insert(), {**row, "service_id": "b"})
        with database.engine.connect() as conn:
            kept = conn.execute(select(Feedback.service_id, Feedback.outcome_at_ms).order_by(Feedback.id)).all()
            unique = {tuple(u["column_names"]) for u in inspect(conn).get_unique_constraints("feedback")}
        assert kept == [("a", T0 * 1000), ("a", 1), ("b", T0 * 1000)]
        assert unique == {("service_id", "card_uuid", "outcome", "outcome_at_ms")}

        with pytest.raises(IntegrityError):  # the same outcome at two services cannot go back to 0003's constraint
            migrate(database, "downgrade", "0003")
        with database.engine.begin() as conn:
            conn.execute(Feedback.__table__.delete().where(Feedback.service_id == "b"))
        migrate(database, "downgrade", "0003")
        with database.engine.connect() as conn:
            unique = {tuple(u["column_names"]) for u in inspect(conn).get_unique_constraints("feedback")}
            assert conn.execute(select(func.count()).select_from(Feedback)).scalar_one() == 2
        assert unique == {("card_uuid", "outcome", "outcome_at_ms")}
    finally:
        database.engine.dispose()


def test_a_snooze_on_a_group_card_snoozes_every_rule_on_it_and_acknowledges_the_card(database_url, open_db):
    database = open_db(database_url)
    now = [T0]
    memory, store = memory_at(database, now), FeedbackStore(database, clock=lambda: now[0])
    issue(memory, "p1", IssuedCard("c1", "group:g", "fp-g", {"rule-b": "fp-b", "rule-c": "fp-c"}, "info"))
    store.store("svc", [feedback("c1", effect=SNOOZE, code="snooze-30d")])
    recall = recall_of(memory, "p1", "svc", "h2", None)
    assert recall.snoozed("rule-b", T0) and recall.snoozed("rule-c", T0 + 30 * DAY - 1)
    assert not recall.snoozed("rule-b", T0 + 30 * DAY) and not recall.snoozed("rule-x", T0)
    assert recall.acknowledged_since("group:g", "fp-g", T0) and not recall.acknowledged_since("group:g", "new", T0)
    assert not recall_of(memory, "p2", "svc", "h2", None).snoozed("rule-b", T0)


def test_one_recall_reads_suppressions_repeats_and_the_order_select_context_at_once(database_url, open_db):
    """recall is one UNION ALL statement: with all three parts asked for, each row lands in its own field."""
    database = open_db(database_url)
    now = [T0]
    memory, store = memory_at(database, now), FeedbackStore(database, clock=lambda: now[0])
    issue(memory, "p1", IssuedCard("c1", "rule-a", "fp-1", {"rule-a": "fp-1"}, "warning"), service="select",
          context="ctx-1")
    issue(memory, "p1", IssuedCard("c2", "group:g", "fp-g", {"rule-b": "fp-b"}, "info"), service="sign",
          hook_instance="h0", context="ctx-1")
    store.store("sign", [feedback("c2", effect=SNOOZE, code="snooze-30d")])
    now[0] += 60
    recall = recall_of(memory, "p1", "sign", "h9", T0, "select", "ctx-1", T0)
    assert recall.last_shown == {("group:g", "fp-g"): T0}
    assert recall.shown_at_select == {("rule-a", "fp-1")}
    assert recall.snoozed("rule-b", now[0]) and not recall.snoozed("rule-a", now[0])
    assert recall.acknowledged_since("group:g", "fp-g", T0)


def test_not_relevant_holds_each_rule_back_while_its_data_is_unchanged(database_url, open_db):
    database = open_db(database_url)
    now = [T0]
    memory, store = memory_at(database, now), FeedbackStore(database, clock=lambda: now[0])
    issue(memory, "p1", IssuedCard("c1", "group:g", "fp-g", {"rule-b": "fp-b", "rule-c": "fp-c"}, "info"))
    store.store("svc", [feedback("c1", effect=NOT_RELEVANT, code="not-relevant")])
    recall = recall_of(memory, "p1", "svc", "h2", None)
    assert recall.not_relevant("rule-b", "fp-b") and recall.not_relevant("rule-c", "fp-c")
    assert not recall.not_relevant("rule-b", "fp-b-changed")


def test_the_latest_outcome_wins_and_a_timestamp_ahead_of_the_clock_does_not_stretch_a_snooze(database_url, open_db):
    database = open_db(database_url)
    now = [T0]
    memory, store = memory_at(database, now), FeedbackStore(database, clock=lambda: now[0])
    issue(memory, "p1", IssuedCard("c1", "rule-a", "fp", {"rule-a": "fp"}, "warning"))
    store.store("svc", [feedback("c1", at_s=T0 + 365 * DAY, effect=SNOOZE, code="snooze-30d")])
    with database.engine.connect() as conn:
        until = conn.execute(select(Suppression.until_at).where(Suppression.kind == "snooze")).scalar_one()
    assert until == T0 + 30 * DAY
    now[0] = T0 + 10 * DAY
    store.store("svc", [feedback("c1", at_s=T0 + 10 * DAY, effect=SNOOZE, code="snooze-30d")])
    store.store("svc", [feedback("c1", at_s=T0 + 5 * DAY, effect=SNOOZE, code="snooze-30d")])  # late, older
    with database.engine.connect() as conn:
        until = conn.execute(select(Suppression.until_at).where(Suppression.kind == "snooze")).scalar_one()
    assert until == T0 + 40 * DAY


def test_concurrent_feedback_from_many_threads_is_all_stored(database_url, open_db):
    database = open_db(database_url)
    now = [T0]
    memory, store = memory_at(database, now), FeedbackStore(database, clock=lambda: now[0])
    issue(memory, "p1", IssuedCard("c1", "rule-a", "fp", {"rule-a": "fp"}, "warning"))
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def send(thread: int) -> None:
        start.wait()
        try:
            for i in range(25):
                # every thread also sends item 0 of thread 0: exactly one of those is kept
                store.store("svc", [feedback("c1", at_s=T0 + thread * 100 + i, effect=SNOOZE, code="snooze-30d"),
                                    feedback("c1", at_s=T0)])
        except BaseException as exc:  # collected: an assertion in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert count(database, Feedback) == 8 * 25  # T0 itself is thread 0's first item
    assert count(database, Suppression) == 2  # one snooze and one acknowledgement of rule-a for p1


def test_old_records_and_lapsed_snoozes_are_pruned_but_not_relevant_is_kept(database_url, open_db):
    database = open_db(database_url)
    now = [T0]
    memory = memory_at(database, now, retention_days=90)
    store = FeedbackStore(database, clock=lambda: now[0])
    issue(memory, "p1", IssuedCard("c1", "rule-a", "fp", {"rule-a": "fp"}, "warning"))
    store.store("svc", [feedback("c1", effect=SNOOZE, code="snooze-30d")])
    issue(memory, "p1", IssuedCard("c2", "rule-b", "fp", {"rule-b": "fp"}, "info"))
    store.store("svc", [feedback("c2", effect=NOT_RELEVANT, code="not-relevant")])
    now[0] = T0 + 91 * DAY
    fresh = memory_at(database, now, retention_days=90)  # a new process prunes on its first write
    issue(fresh, "p2", IssuedCard("c3", "rule-a", "fp", {"rule-a": "fp"}, "info"), hook_instance="h9")
    with database.engine.connect() as conn:
        assert conn.execute(select(CardIssued.card_uuid)).scalars().all() == ["c3"]
        assert conn.execute(select(Suppression.kind)).scalars().all() == ["until-data-changes"]
    assert count(database, Feedback) == 2  # feedback itself is kept


def test_repeats_and_acknowledgements_are_the_clinicians_but_snoozes_are_the_patients(database_url, open_db):
    """A second clinician sees the card the first one saw and acknowledged; a snooze 'for this patient' holds for
    everyone."""
    database = open_db(database_url)
    now = [T0]
    memory, store = memory_at(database, now), FeedbackStore(database, clock=lambda: now[0])
    issue(memory, "p1", IssuedCard("c1", "rule-a", "fp-1", {"rule-a": "fp-1"}, "critical"), user="dr-a")
    issue(memory, "p1", IssuedCard("c2", "rule-b", "fp-2", {"rule-b": "fp-2"}, "info"), user="dr-a")
    store.store("svc", [feedback("c1", "accepted"), feedback("c2", effect=SNOOZE, code="snooze-30d")])
    now[0] += 60
    first = recall_of(memory, "p1", "svc", "h2", T0, user="dr-a")
    second = recall_of(memory, "p1", "svc", "h2", T0, user="dr-b")
    assert first.acknowledged_since("rule-a", "fp-1", T0) and first.last_shown[("rule-b", "fp-2")] == T0
    assert not second.acknowledged_since("rule-a", "fp-1", T0) and second.last_shown == {}
    assert first.snoozed("rule-b", now[0]) and second.snoozed("rule-b", now[0])


def test_after_a_database_failure_the_memory_is_not_tried_again_for_a_second(database_url, open_db):
    """An unreachable database costs each call its timeout; after a failure, calls within the next second are
    answered at once without the memory (MemoryUnavailable), and the memory is tried again after it."""
    from cds_service.errors import MemoryUnavailable
    database = open_db(database_url)
    tick = [100.0]
    memory = CardMemory(database, read_secret(database), monotonic=lambda: tick[0])
    card = IssuedCard("uuid-backoff", "rule-a", "fp", {"rule-a": "fp"}, "warning")
    with database.engine.begin() as conn:  # the database fails every statement on the memory's table
        conn.execute(text("ALTER TABLE card_issued RENAME TO card_issued_away"))
    with pytest.raises(MemoryUnavailable) as failed:
        recall_of(memory, "p1", "svc", "h2", 0)
    assert not failed.value.busy
    with database.engine.begin() as conn:  # the database is fine again at once, but not yet tried
        conn.execute(text("ALTER TABLE card_issued_away RENAME TO card_issued"))
    tick[0] += 0.5
    for attempt in (lambda: recall_of(memory, "p1", "svc", "h2", 0), lambda: issue(memory, "p1", card)):
        with pytest.raises(MemoryUnavailable, match="not tried"):
            attempt()
    assert count(database, CardIssued) == 0
    tick[0] += 0.6
    issue(memory, "p1", card)
    assert count(database, CardIssued) == 1
    assert recall_of(memory, "p1", "svc", "h2", 0).last_shown == {("rule-a", "fp"): memory.now()}


def test_cards_issued_keep_the_version_of_each_rule(database_url, open_db):
    """Revision 0005: the rule versions a card was issued under are stored with it (NULL for rows from before)."""
    database = open_db(database_url)
    memory = memory_at(database, [1_000_000.0])
    issue(memory, "p1", IssuedCard("uuid-v2", "rule-a", "fp", {"rule-a": "fp", "rule-b": "fp2"}, "warning",
                                   {"rule-a": 2, "rule-b": 1}))
    issue(memory, "p1", IssuedCard("uuid-unversioned", "rule-c", "fp", {"rule-c": "fp"}, "info"))
    with database.engine.connect() as conn:
        rows = dict(conn.execute(select(CardIssued.card_uuid, CardIssued.rule_versions)).all())
    assert rows == {"uuid-v2": {"rule-a": 2, "rule-b": 1}, "uuid-unversioned": None}


def test_cards_issued_keep_the_suggestions_they_offered_and_0007_migrates_both_ways(database_url, open_db):
    """Revision 0007: each suggestion a card offered is stored with it (uuid -> rule, kind, label; NULL when it
    offered none, and for rows from before); downgrading drops the column and keeps the cards."""
    database = open_db(database_url)
    memory = memory_at(database, [1_000_000.0])
    offered = {"s-1": {"rule": "rule-a", "kind": "order-lab:magnesium", "label": "Order serum magnesium"},
               "s-2": {"rule": "rule-b", "kind": "remove-draft", "label": "Remove the draft order for X"}}
    issue(memory, "p1", IssuedCard("uuid-offers", "group:g", "fp", {"rule-a": "fp", "rule-b": "fp2"}, "warning",
                                   {"rule-a": 1, "rule-b": 1}, offered))
    issue(memory, "p1", IssuedCard("uuid-offers-none", "rule-c", "fp", {"rule-c": "fp"}, "info"))
    with database.engine.connect() as conn:
        rows = dict(conn.execute(select(CardIssued.card_uuid, CardIssued.suggestions)).all())
    assert rows == {"uuid-offers": offered, "uuid-offers-none": None}
    migrate(database, "downgrade", "0006")
    columns = {c["name"] for c in inspect(database.engine).get_columns("card_issued")}
    assert "suggestions" not in columns and "rule_versions" in columns
    migrate(database, "upgrade", "0007")
    with database.engine.connect() as conn:
        rows = dict(conn.execute(select(CardIssued.card_uuid, CardIssued.suggestions)).all())
    assert rows == {"uuid-offers": None, "uuid-offers-none": None}


def test_the_head_revision_the_service_checks_for_is_alembics():
    assert head_revision() == HEAD_REVISION


def test_a_database_at_the_head_revision_is_opened_without_loading_alembic(tmp_path):
    url = sqlite_url(tmp_path)
    open_database(url)  # migrates a new database
    probe = ("import sys; from cds_service.state import current_revision, open_database; "
             f"db = open_database({url!r}); print(current_revision(db), 'alembic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == [head_revision(), "False"]
