"""Feedback closes the loop, over real HTTP with an injected clock: a snooze hides a card for its days, 'not
relevant' until the triggering data changes, warning cards repeat until acknowledged, info cards show once a day,
order-sign does not repeat order-select's card for the same draft, and suppressions are counted in metrics.
Then 5,000 feedback posts from 16 clients against gunicorn (2 workers, SQLite): exactly 5,000 rows."""
from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from cds_service import create_app
from cds_service.case_runner import build_request, service_for
from cds_service.pipeline import respond
from cds_service.settings import Settings
from cds_service.state import open_database
from cds_service.state.tables import CardIssued, Feedback
from tests.conftest import REPO
from tests.support.app_server import AppServer
from tests.support.cds_client import (
    accepted,
    call,
    card_of,
    feedback_bodies,
    overridden,
    post_concurrently,
    rules_of,
    send_feedback,
    shown_rules,
)
from tests.support.loopback import http_request
from tests.support.service_server import ServiceServer

pytestmark = pytest.mark.integration
T0 = 1_800_000_000.0
DAY = 86_400
PATIENT_VIEW = "spasm-cramps-patient-view"


class Clock:
    """The service's `now`, moved by the test."""

    def __init__(self, at: float = T0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at

    def advance(self, days: float = 0, minutes: float = 0) -> None:
        self.at += days * DAY + minutes * 60


@dataclasses.dataclass
class Served:
    url: str
    clock: Clock
    app: Any


@pytest.fixture
def served(knowledge, tmp_path):
    clock = Clock()
    app = create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path / "data"), knowledge, now=clock)
    with AppServer(app) as server:
        yield Served(server.url, clock, app)
    app.extensions["spasm_cds"].database.engine.dispose()


def first_case(knowledge, wanted: Callable[[Any, Any], bool]):
    """The first case (with its rule) that gives a card and that `wanted(case, rule)` accepts."""
    return next(c for c in knowledge.cases if c.expect == "card" and wanted(c, knowledge.rules[c.rule]))


def request_for(knowledge, case, hook: str | None = None) -> tuple[str, dict]:
    case = dataclasses.replace(case, hook=hook) if hook else case
    service = service_for(knowledge, case)
    return service.id, build_request(knowledge, case, service, date.today())


def suppressed_count(url: str, rule: str, reason: str) -> float:
    _, text = http_request("GET", f"{url}/metrics")
    match = re.search(rf'spasm_cds_cards_suppressed_total\{{reason="{reason}",rule="{rule}"\}} ([0-9.e+]+)',
                      text.decode())
    return float(match.group(1)) if match else 0.0


def shift_lab_dates(body: dict, days: int) -> dict:
    """The same request with every lab result taken `days` earlier: new triggering data, same findings."""
    body = copy.deepcopy(body)
    for value in body["prefetch"].values():
        for entry in (value or {}).get("entry", ()):
            resource = entry["resource"]
            if resource.get("resourceType") == "Observation":
                when = datetime.fromisoformat(resource["effectiveDateTime"].replace("Z", "+00:00"))
                resource["effectiveDateTime"] = (when - timedelta(days=days)).isoformat().replace("+00:00", "Z")
    return body


def test_a_snooze_hides_the_card_for_its_days_then_it_shows_again(served, knowledge):
    case = first_case(knowledge, lambda c, r: c.hook == "patient-view" and r.severity == "warning"
                      and not r.card.group)
    service_id, body = request_for(knowledge, case)
    card = card_of(call(served.url, service_id, body), case.rule)
    before = suppressed_count(served.url, case.rule, "snooze")

    status, answer = send_feedback(served.url, service_id, overridden(card["uuid"], served.clock(), "snooze-30d"))

    assert (status, answer) == (200, b"")
    assert case.rule not in shown_rules(call(served.url, service_id, body))
    assert suppressed_count(served.url, case.rule, "snooze") == before + 1
    served.clock.advance(days=29)
    assert case.rule not in shown_rules(call(served.url, service_id, body))
    served.clock.advance(days=2)
    assert case.rule in shown_rules(call(served.url, service_id, body))


def test_a_warning_repeats_until_acknowledged_then_rests_for_its_window(served, knowledge):
    case = first_case(knowledge, lambda c, r: c.hook == "patient-view" and r.severity == "warning"
                      and not r.card.group)
    service_id, body = request_for(knowledge, case)
    days = knowledge.repeat_windows.days("warning", None, (case.rule,))
    assert days > 0
    card = card_of(call(served.url, service_id, body), case.rule)
    card_of(call(served.url, service_id, body), case.rule)  # shown again: not acknowledged yet

    assert send_feedback(served.url, service_id, overridden(card["uuid"], served.clock(),
                                                            card["overrideReasons"][0]["code"]))[0] == 200

    assert case.rule not in shown_rules(call(served.url, service_id, body))
    served.clock.advance(days=days, minutes=1)
    assert case.rule in shown_rules(call(served.url, service_id, body))


def test_an_info_card_shows_once_per_window_but_again_to_a_retried_call(served, knowledge):
    case = first_case(knowledge, lambda c, r: c.hook == "patient-view" and r.severity == "info")
    service_id, body = request_for(knowledge, case)
    card = card_of(call(served.url, service_id, body, hook_instance="first-call"), case.rule)
    days = knowledge.repeat_windows.days("info", card["extension"]["org.spasm-cds"].get("group"), tuple(rules_of(card)))

    assert case.rule not in shown_rules(call(served.url, service_id, body))
    assert case.rule in shown_rules(call(served.url, service_id, body, hook_instance="first-call"))
    served.clock.advance(days=days, minutes=1)
    assert case.rule in shown_rules(call(served.url, service_id, body))


def test_not_relevant_hides_the_card_until_its_triggering_data_changes(served, knowledge):
    case = first_case(knowledge, lambda c, r: c.hook == "patient-view" and not r.card.group
                      and any(k.kind == "lab" for k in r.include))
    service_id, body = request_for(knowledge, case)
    card = card_of(call(served.url, service_id, body), case.rule)

    assert send_feedback(served.url, service_id, overridden(card["uuid"], served.clock(), "not-relevant",
                                                            "seen by nephrology"))[0] == 200

    assert case.rule not in shown_rules(call(served.url, service_id, body))
    served.clock.advance(days=60)
    assert case.rule not in shown_rules(call(served.url, service_id, body))
    assert case.rule in shown_rules(call(served.url, service_id, shift_lab_dates(body, 1)))


def test_a_snooze_on_a_group_card_snoozes_every_rule_the_card_shows(served, knowledge):
    def grouped(case) -> list[str]:
        service = service_for(knowledge, case)
        cards = respond(build_request(knowledge, case, service, date.today()), service, knowledge, Settings(),
                        date.today())["cards"]
        return max((rules_of(c) for c in cards if "group" in c["extension"]["org.spasm-cds"]), key=len, default=[])

    case = next(c for c in knowledge.cases if c.expect == "card" and c.hook == "patient-view"
                and len(grouped(c)) >= 2)
    service_id, body = request_for(knowledge, case)
    group_card = max((c for c in call(served.url, service_id, body) if "group" in c["extension"]["org.spasm-cds"]),
                     key=lambda c: len(rules_of(c)))

    assert send_feedback(served.url, service_id, overridden(group_card["uuid"], served.clock(), "snooze-30d"))[0] == 200

    served.clock.advance(days=2)  # past the info window: only the snooze holds them back
    assert shown_rules(call(served.url, service_id, body)).isdisjoint(rules_of(group_card))
    served.clock.advance(days=29)
    assert set(rules_of(group_card)) <= shown_rules(call(served.url, service_id, body))


def test_order_sign_does_not_repeat_the_card_order_select_showed_for_the_same_draft(served, knowledge):
    case = first_case(knowledge, lambda c, r: c.hook == "order-select" and "order-sign" in r.hooks
                      and r.severity != "critical")
    select_id, select_body = request_for(knowledge, case)
    sign_id, sign_body = request_for(knowledge, case, hook="order-sign")
    minutes = knowledge.services[sign_id].skip_shown_at[1]
    card_of(call(served.url, select_id, select_body), case.rule)
    before = suppressed_count(served.url, case.rule, "shown-at-order-select")

    assert case.rule not in shown_rules(call(served.url, sign_id, sign_body))

    assert suppressed_count(served.url, case.rule, "shown-at-order-select") == before + 1
    changed = copy.deepcopy(sign_body)
    changed["context"]["draftOrders"]["entry"][0]["resource"]["note"] = [{"text": "dose changed"}]
    assert case.rule in shown_rules(call(served.url, sign_id, changed))
    other_user = copy.deepcopy(sign_body)
    other_user["context"]["userId"] = "Practitioner/another-prescriber"
    assert case.rule in shown_rules(call(served.url, sign_id, other_user))
    served.clock.advance(minutes=minutes + 1)
    assert case.rule in shown_rules(call(served.url, sign_id, sign_body))


def test_a_critical_card_not_acted_on_at_order_select_is_shown_again_at_order_sign(served, knowledge):
    case = first_case(knowledge, lambda c, r: c.hook == "order-select" and "order-sign" in r.hooks
                      and r.severity == "critical")
    select_id, select_body = request_for(knowledge, case)
    sign_id, sign_body = request_for(knowledge, case, hook="order-sign")
    card = card_of(call(served.url, select_id, select_body), case.rule)
    assert card["indicator"] == "critical"

    assert case.rule in shown_rules(call(served.url, sign_id, sign_body))  # nobody acted on it

    again = card_of(call(served.url, select_id, select_body), case.rule)
    reason = next(r["code"] for r in again["overrideReasons"] if r["code"] not in knowledge.override_effects)
    assert send_feedback(served.url, select_id, overridden(again["uuid"], served.clock(), reason))[0] == 200
    assert case.rule not in shown_rules(call(served.url, sign_id, sign_body))  # acted on at selection


def test_a_card_one_clinician_acknowledged_is_still_shown_to_another(served, knowledge):
    case = first_case(knowledge, lambda c, r: c.hook == "patient-view" and r.severity in ("warning", "critical")
                      and not r.card.group)
    service_id, body = request_for(knowledge, case)
    card = card_of(call(served.url, service_id, body), case.rule)
    # a reason without an effect: it acknowledges the card (a snooze or 'not relevant' is the patient's)
    reason = next(r["code"] for r in card["overrideReasons"] if r["code"] not in knowledge.override_effects)
    assert send_feedback(served.url, service_id, overridden(card["uuid"], served.clock(), reason))[0] == 200
    assert case.rule not in shown_rules(call(served.url, service_id, body))
    colleague = copy.deepcopy(body)
    colleague["context"]["userId"] = "Practitioner/colleague"
    assert case.rule in shown_rules(call(served.url, service_id, colleague))


def test_an_info_card_is_shown_once_per_window_to_each_clinician(served, knowledge):
    case = first_case(knowledge, lambda c, r: c.hook == "patient-view" and r.severity == "info")
    service_id, body = request_for(knowledge, case)
    assert case.rule in shown_rules(call(served.url, service_id, body))
    assert case.rule not in shown_rules(call(served.url, service_id, body))
    colleague = copy.deepcopy(body)
    colleague["context"]["userId"] = "Practitioner/colleague"
    assert case.rule in shown_rules(call(served.url, service_id, colleague))


def test_with_deduplication_off_every_call_shows_every_card_but_snoozes_still_hold(knowledge, tmp_path):
    clock = Clock()
    app = create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path, deduplicate="off"), knowledge, now=clock)
    case = first_case(knowledge, lambda c, r: c.hook == "patient-view" and r.severity == "warning"
                      and not r.card.group)
    service_id, body = request_for(knowledge, case)
    with AppServer(app) as server:
        card = card_of(call(server.url, service_id, body), case.rule)
        assert send_feedback(server.url, service_id, accepted(card["uuid"], clock()))[0] == 200
        assert case.rule in shown_rules(call(server.url, service_id, body))
        assert send_feedback(server.url, service_id, overridden(card["uuid"], clock() + 1, "snooze-30d"))[0] == 200
        assert case.rule not in shown_rules(call(server.url, service_id, body))
    app.extensions["spasm_cds"].database.engine.dispose()


def test_issued_cards_are_recorded_with_a_keyed_patient_and_no_raw_id(served, knowledge):
    case = first_case(knowledge, lambda c, r: c.hook == "patient-view")
    service_id, body = request_for(knowledge, case)
    body["context"]["patientId"] = "raw-patient-id-4711"
    cards = call(served.url, service_id, body)
    database = served.app.extensions["spasm_cds"].database
    with database.engine.connect() as conn:
        rows = conn.execute(select(CardIssued)).all()
    assert sorted(r.card_uuid for r in rows) == sorted(c["uuid"] for c in cards)
    assert all(r.patient_id is None and "4711" not in r.patient_key and len(r.patient_key) == 64 for r in rows)
    assert {r.service_id for r in rows} == {service_id}


def test_5000_feedback_posts_from_16_clients_on_gunicorn_with_sqlite_are_all_stored(knowledge, tmp_path):
    case = first_case(knowledge, lambda c, r: c.hook == "patient-view" and r.severity == "warning")
    service_id, body = request_for(knowledge, case)
    env = {"SPASM_CDS_DATA_DIR": str(tmp_path / "data")}
    with ServiceServer(extra_env=env, workers=2) as server:
        card = card_of(call(server.url, service_id, body), case.rule)
        statuses, seconds = post_concurrently(server.url, service_id, feedback_bodies(5000, card["uuid"], T0))
        assert "Traceback" not in server.log_text()
    database = open_database(Settings(data_dir=tmp_path / "data").effective_database_url)
    with database.engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(Feedback)).scalar_one()
        known = conn.execute(select(func.count()).select_from(Feedback).where(Feedback.card_known)).scalar_one()
    database.engine.dispose()
    print(f"\nSQLite: 5000 feedback posts from 16 clients in {seconds:.1f} s; {rows} rows")
    assert statuses == {200: 5000}
    assert rows == 5000 and known == 1250
