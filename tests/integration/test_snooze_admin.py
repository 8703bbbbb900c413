"""Snooze administration on SQLite and on a real PostgreSQL: a snooze set through the real feedback endpoint hides
the card; `spasm-cds snooze list` finds it by patient (keyed as the service keys it, the id never printed);
`snooze clear` brings the card back on the next hook call, writes an audit row and one INFO line without patient
data; clears by rule and by id; selectors that name nothing are refused. Revision 0006 upgrades a 0005 database
that holds data."""
from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import func, insert, inspect, select

from cds_service import create_app
from cds_service.cli import main
from cds_service.knowledge.model import OverrideEffect
from cds_service.settings import Settings
from cds_service.state import connect, open_database
from cds_service.state.feedback import FeedbackItem, FeedbackStore
from cds_service.state.snooze_admin import SnoozeAdmin
from cds_service.state.suppression import keyed, read_secret
from cds_service.state.tables import CardIssued, Feedback, Suppression
from tests.conftest import REPO
from tests.integration.test_feedback import Clock, first_case, request_for
from tests.integration.test_state import migrate
from tests.support.app_server import AppServer
from tests.support.cds_client import call, card_of, overridden, send_feedback, shown_rules

pytestmark = pytest.mark.integration
T0 = 1_800_000_000
DAY = 86_400
PATIENT = "patient-id-5309"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return Settings(data_dir=tmp_path / "data").effective_database_url
    return request.getfixturevalue("postgres").create_database()


@pytest.fixture
def served(database_url, knowledge, tmp_path, monkeypatch):
    monkeypatch.setenv("SPASM_CDS_DATABASE_URL", database_url)  # what the CLI reads
    clock = Clock(float(T0))
    app = create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path / "data", database_url=database_url),
                     knowledge, now=clock)
    with AppServer(app) as server:
        yield server.url, clock, app.extensions["spasm_cds"].database
    app.extensions["spasm_cds"].database.engine.dispose()


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


@pytest.fixture
def snooze_log():
    handler, logger = Lines(), logging.getLogger("cds_service.snooze")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


def snoozed_card(served, knowledge, reason: str = "snooze-30d"):
    url, clock, _ = served
    case = first_case(knowledge, lambda c, r: c.hook == "patient-view" and r.severity == "warning"
                      and not r.card.group and any(k.kind == "lab" for k in r.include))
    service_id, body = request_for(knowledge, case)
    body["context"]["patientId"] = PATIENT
    card = card_of(call(url, service_id, body), case.rule)
    assert send_feedback(url, service_id, overridden(card["uuid"], clock(), reason))[0] == 200
    # past the warning's repeat window, so that only the snooze (or 'not relevant') holds the card back
    clock.advance(days=knowledge.repeat_windows.days("warning", None, (case.rule,)) + 1)
    assert case.rule not in shown_rules(call(url, service_id, body))
    return case.rule, service_id, body


def test_snooze_clear_for_a_patient_brings_the_card_back_and_is_audited(served, knowledge, capsys, snooze_log):
    url, _clock, database = served
    rule, service_id, body = snoozed_card(served, knowledge)

    assert main(["snooze", "list", "--patient", PATIENT, "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(["snooze", "clear", "--patient", PATIENT, "--reason", "patient asked for review", "--by", "alice"]) \
        == 0
    said = capsys.readouterr().out

    assert [(h["rule"], h["kind"], h["active"]) for h in listed] == [(rule, "snooze", True)]
    assert "cleared 1 suppression(s); audit entry 1" in said
    assert rule in shown_rules(call(url, service_id, body))
    [entry] = SnoozeAdmin(database).audit()
    assert (entry.actor, entry.reason, entry.cleared_count) == ("alice", "patient asked for review", 1)
    assert [(c["card_key"], c["kind"], c["patient_key"]) for c in entry.cleared] == \
        [(rule, "snooze", listed[0]["patient_key"])]
    assert entry.selector == {"patient_key": listed[0]["patient_key"], "kinds": ["snooze", "until-data-changes"]}
    assert snooze_log == ["INFO snooze clear: audit 1, 1 suppression(s) cleared by alice"]
    assert PATIENT not in json.dumps(listed) + said + json.dumps(entry.cleared)


def test_snooze_clear_by_rule_lifts_not_relevant_for_every_patient_of_that_rule_only(served, knowledge, capsys):
    url, _clock, database = served
    rule, service_id, body = snoozed_card(served, knowledge, reason="not-relevant")
    admin = SnoozeAdmin(database)
    with database.durable_transaction() as conn:  # another rule's snooze, which must stay
        conn.execute(Suppression.__table__.insert(), {"patient_key": "f" * 64, "card_key": "another-rule",
                                                      "kind": "snooze", "until_at": T0 + 90 * DAY, "set_at": T0,
                                                      "card_uuid": "x"})

    assert main(["snooze", "clear", "--rule", rule, "--reason", "rule rewritten"]) == 0

    assert rule in shown_rules(call(url, service_id, body))
    assert [(h.card_key, h.kind) for h in admin.find()] == [("another-rule", "snooze")]
    assert admin.audit()[0].selector["rule"] == rule and admin.audit()[0].cleared_count == 1
    assert "cleared 1 suppression(s)" in capsys.readouterr().out


def test_snooze_show_and_clear_by_id_and_selectors_that_name_nothing(served, knowledge, capsys):
    url, _clock, database = served
    rule, service_id, body = snoozed_card(served, knowledge)
    [held] = SnoozeAdmin(database).find(rule=rule)
    capsys.readouterr()

    assert main(["snooze", "show", held.id]) == 0
    shown = capsys.readouterr().out
    assert main(["snooze", "show", f"{held.patient_key[:8]}/no-such-rule/snooze"]) == 2
    assert "no suppression" in capsys.readouterr().err
    assert main(["snooze", "show", "zz/x/snooze"]) == 2
    assert main(["snooze", "clear", "--reason", "nothing named"]) == 2
    assert "say what to clear" in capsys.readouterr().err
    assert main(["snooze", "clear", "--id", held.id, "--rule", rule, "--reason", "both"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["snooze", "clear", "--id", held.id, "--reason", "by id"]) == 0

    assert f"patient key  {held.patient_key}" in shown and "snooze-30d" in shown
    assert rule in shown_rules(call(url, service_id, body))
    assert [e.selector for e in SnoozeAdmin(database).audit()] == [{"id": held.id}]


def test_revision_0006_upgrades_a_0005_database_that_holds_data(database_url):
    database = connect(database_url)
    try:
        migrate(database, "upgrade", "0005")
        secret = read_secret(database)
        with database.engine.begin() as conn:  # the card as a 0005 service recorded it (no later column)
            conn.execute(insert(CardIssued).values(
                card_uuid="c1", service_id="svc", hook="patient-view", hook_instance="h", card_key="rule-a",
                fingerprint="fp", rules={"rule-a": "fp"}, rule_versions={"rule-a": 2}, indicator="warning",
                patient_key=keyed(secret, "p"), context_key="ctx", user_key=keyed(secret, "p", "u"),
                issued_at=T0))
        FeedbackStore(database, clock=lambda: T0).store("svc", [FeedbackItem(
            "c1", "overridden", T0 * 1000, reason_code="snooze-30d", effect=OverrideEffect("snooze", 30))])
        with database.engine.connect() as conn:
            assert "suppression_audit" not in inspect(conn).get_table_names()

        migrate(database, "upgrade", "head")

        with database.engine.connect() as conn:
            assert "suppression_audit" in inspect(conn).get_table_names()
            kept = [conn.execute(select(func.count()).select_from(t)).scalar_one()
                    for t in (CardIssued, Feedback, Suppression)]
        assert kept == [1, 1, 2]  # the card, its feedback, its snooze and acknowledgement
        admin = SnoozeAdmin(database)
        assert admin.clear("bob", "after upgrade", rule="rule-a").cleared_count == 1
        migrate(database, "downgrade", "0005")
        with database.engine.connect() as conn:
            assert "suppression_audit" not in inspect(conn).get_table_names()
    finally:
        database.engine.dispose()


def test_open_database_makes_the_audit_table(tmp_path):
    database = open_database(Settings(data_dir=tmp_path).effective_database_url)
    try:
        assert SnoozeAdmin(database).audit() == []
    finally:
        database.engine.dispose()
