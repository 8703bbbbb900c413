"""The feedback report on SQLite and on a real PostgreSQL, from the same seeded cards and feedback: the exact counts
per rule, version and week, each card's last outcome counted, a group card counted for each rule it shows, snoozed
and 'not relevant' told apart by their reason's effect, the review order, and the counting done by GROUP BY in the
database. Then over real HTTP: cards issued and feedback sent to the service show up in GET /admin/feedback, and
in `spasm-cds feedback report`, the same."""
from __future__ import annotations

import csv
import io
import json
from datetime import date

import pytest

from cds_service import create_app
from cds_service.cli import main
from cds_service.feedback_formats import as_csv, as_json, as_text
from cds_service.feedback_report import build_report, epoch, wilson_lower_bound
from cds_service.memory import IssuedCard
from cds_service.pipeline import respond
from cds_service.settings import Settings
from cds_service.state import open_database
from cds_service.state.analytics import count_feedback
from cds_service.state.feedback import FeedbackItem, FeedbackStore
from cds_service.state.suppression import CardMemory, read_secret
from tests.conftest import REPO
from tests.integration.test_feedback import Clock, first_case, request_for
from tests.support.app_server import AppServer
from tests.support.cds_client import accepted, call, card_of, overridden, send_feedback
from tests.support.loopback import http_request

pytestmark = pytest.mark.integration
T0 = 1_800_000_000  # Friday 2027-01-15 08:00 UTC: week of Monday 2027-01-11
DAY = 86_400
TOKEN = "admin-token-for-tests-0123456789abcdef"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    if request.param == "sqlite":
        url = Settings(data_dir=tmp_path / "data").effective_database_url
    else:
        url = request.getfixturevalue("postgres").create_database()
    opened = open_database(url)
    yield opened
    opened.engine.dispose()


def item(card: str, outcome: str, at_s: int, code: str | None = None, accepted: tuple[str, ...] = ()) -> FeedbackItem:
    return FeedbackItem(card, outcome, at_s * 1000, accepted_suggestions=accepted, reason_code=code)


MAGNESIUM = {"rule": "rule-a", "kind": "order-lab:magnesium", "label": "Order serum magnesium"}
REMOVAL = {"rule": "rule-a", "kind": "remove-draft", "label": "Remove the draft order for tizanidine"}
CK = {"rule": "rule-b", "kind": "order-lab:ck", "label": "Order creatine kinase"}


def offers(card: str, *suggestions: dict) -> dict:
    return {f"{card}-{s['kind']}": s for s in suggestions}


def seed(database, knowledge) -> None:
    """Week 1: five cards of rule-a v2 and a group card of rule-a and rule-b (issued before rule versions were
    recorded, so v1); week 2: one more rule-a v2 card, no feedback. Plus feedback on a card never issued. Every
    rule-a card offers magnesium, a1 also a removal; the group card magnesium (rule-a) and CK (rule-b)."""
    now = [T0]
    memory = CardMemory(database, read_secret(database), clock=lambda: now[0])

    def issue(*cards: IssuedCard) -> None:
        memory.record(cards, "svc", "patient-view", f"h{now[0]}", "p1", memory.key("p1"), "ctx",
                      memory.key("p1", "u1"))

    issue(*(IssuedCard(f"a{i}", "rule-a", "fp", {"rule-a": "fp"}, "warning", {"rule-a": 2},
                       offers(f"a{i}", MAGNESIUM, *([REMOVAL] if i == 1 else []))) for i in range(1, 5)),
          IssuedCard("g1", "group:g", "fp", {"rule-a": "fa", "rule-b": "fb"}, "info", {},
                     offers("g1", MAGNESIUM, CK)))
    now[0] = T0 + 8 * DAY
    issue(IssuedCard("a5", "rule-a", "fp", {"rule-a": "fp"}, "warning", {"rule-a": 2}, offers("a5", MAGNESIUM)))
    effects = knowledge.override_effects
    assert effects["snooze-30d"].kind == "snooze" and effects["not-relevant"].kind == "until-data-changes"
    assert "already-addressed" not in effects and "benefit-outweighs-risk" not in effects
    FeedbackStore(database, clock=lambda: now[0]).store("svc", [
        item("a1", "accepted", T0, accepted=("a1-order-lab:magnesium", "a1-remove-draft")),
        item("a2", "overridden", T0, "snooze-30d"),
        item("a3", "overridden", T0, "not-relevant"),
        item("a4", "overridden", T0, "already-addressed"),  # the last counts
        item("a4", "accepted", T0 + 60, accepted=("a4-order-lab:magnesium", "a1-order-lab:magnesium")),
        item("g1", "overridden", T0, "benefit-outweighs-risk"),
        item("never-issued", "accepted", T0, accepted=("never-issued-order-lab:magnesium",))])


def report_of(database, knowledge, min_feedback: int = 1, by: str = "week", **window):
    since, until = window.get("since"), window.get("until")
    counts = count_feedback(database, epoch(since) if since else None, epoch(until) if until else None, by)
    return build_report(counts, knowledge.override_effects, {}, by, since, until, min_feedback)


def rule(report: dict, rule_id: str, version: int) -> dict:
    return next(r for r in report["rules"] if (r["rule"], r["version"]) == (rule_id, version))


def test_the_report_counts_each_rule_version_and_week_exactly(database, knowledge):
    seed(database, knowledge)

    report = as_json(report_of(database, knowledge))

    a2 = rule(report, "rule-a", 2)
    assert {k: a2[k] for k in ("issued", "with_feedback", "accepted", "overridden", "snoozed", "not_relevant")} == \
        {"issued": 5, "with_feedback": 4, "accepted": 2, "overridden": 2, "snoozed": 1, "not_relevant": 1}
    assert a2["override_reasons"] == {"not-relevant": 1, "snooze-30d": 1}
    assert (a2["acceptance_rate"], a2["override_rate"]) == (0.5, 0.5)
    assert [(p["period"], p["issued"], p["with_feedback"]) for p in a2["periods"]] == \
        [("2027-01-11", 4, 4), ("2027-01-18", 1, 0)]
    for rule_id in ("rule-a", "rule-b"):  # the group card, once for each rule it shows, at version 1
        assert {k: rule(report, rule_id, 1)[k] for k in ("issued", "accepted", "overridden", "override_reasons")} \
            == {"issued": 1, "accepted": 0, "overridden": 1, "override_reasons": {"benefit-outweighs-risk": 1}}
    assert report["totals"]["feedback_records"] == 6  # a4's two outcomes both received
    assert report["totals"]["unknown_card_feedback"] == 1
    assert [(p["period"], p["issued"]) for p in report["periods"]] == [("2027-01-11", 6), ("2027-01-18", 1)]


def test_each_suggestion_is_counted_per_rule_offered_and_accepted(database, knowledge):
    """Offered: the cards that carried it; accepted: those whose accepted feedback named its uuid (a uuid of
    another card, or of a card never issued, counts nowhere). A group card's suggestion counts for its own rule."""
    seed(database, knowledge)

    report = as_json(report_of(database, knowledge))

    assert rule(report, "rule-a", 2)["suggestions"] == [
        {"label": "Order serum magnesium", "kind": "order-lab:magnesium", "offered": 5, "accepted": 2,
         "acceptance_rate": 0.4},
        {"label": "Remove the draft order for tizanidine", "kind": "remove-draft", "offered": 1, "accepted": 1,
         "acceptance_rate": 1.0}]
    assert rule(report, "rule-a", 1)["suggestions"] == [
        {"label": "Order serum magnesium", "kind": "order-lab:magnesium", "offered": 1, "accepted": 0,
         "acceptance_rate": 0.0}]
    assert [(s["label"], s["offered"], s["accepted"]) for s in rule(report, "rule-b", 1)["suggestions"]] == \
        [("Order creatine kinase", 1, 0)]
    first_week = as_json(report_of(database, knowledge, until=date(2027, 1, 16)))
    assert rule(first_week, "rule-a", 2)["suggestions"][0]["offered"] == 4
    text = as_text(report_of(database, knowledge))
    assert "suggestion 'Order serum magnesium': offered 5, accepted 2/5 (40%)" in text
    rows = [r for r in csv.DictReader(io.StringIO(as_csv(report_of(database, knowledge)))) if r["suggestion"]]
    assert [(r["rule"], r["version"], r["suggestion"], r["suggestion_offered"], r["suggestion_accepted"],
             r["suggestion_acceptance_rate"]) for r in rows if r["rule"] == "rule-a"] == [
        ("rule-a", "1", "Order serum magnesium", "1", "0", "0.0000"),  # the rules in review order
        ("rule-a", "2", "Order serum magnesium", "5", "2", "0.4000"),
        ("rule-a", "2", "Remove the draft order for tizanidine", "1", "1", "1.0000")]


def test_review_first_ranks_by_the_wilson_bound_and_leaves_out_rules_with_too_little_feedback(database, knowledge):
    seed(database, knowledge)

    everything = as_json(report_of(database, knowledge, min_feedback=1))["review_first"]["rules"]
    enough = as_json(report_of(database, knowledge, min_feedback=4))

    # 1 of 1 overridden has a lower bound of 0.21, above 2 of 4 (0.15); ties go to the rule name
    assert [(r["rank"], r["rule"], r["version"]) for r in everything] == \
        [(1, "rule-a", 1), (2, "rule-b", 1), (3, "rule-a", 2)]
    assert everything[0]["score"] == round(wilson_lower_bound(1, 1), 4) == 0.2065
    assert everything[2]["score"] == round(wilson_lower_bound(2, 4), 4)
    assert [(r["rule"], r["version"]) for r in enough["review_first"]["rules"]] == [("rule-a", 2)]
    assert rule(enough, "rule-b", 1)["review_rank"] is None
    assert "fewer than 4 cards with feedback are not ranked" in enough["review_first"]["explanation"]


def test_the_window_keeps_only_cards_issued_in_it(database, knowledge):
    seed(database, knowledge)

    second_week = as_json(report_of(database, knowledge, since=date(2027, 1, 16)))
    first_week = as_json(report_of(database, knowledge, until=date(2027, 1, 16)))

    assert [(r["rule"], r["version"], r["issued"], r["with_feedback"]) for r in second_week["rules"]] == \
        [("rule-a", 2, 1, 0)]
    assert rule(first_week, "rule-a", 2)["issued"] == 4 and rule(first_week, "rule-a", 2)["accepted"] == 2


@pytest.mark.parametrize(("by", "periods"), [
    ("week", [("2026-12-28", 2), ("2027-01-04", 1), ("2027-02-01", 1)]),  # a week across the new year: its Monday
    ("month", [("2026-12", 1), ("2027-01", 2), ("2027-02", 1)]),
])
def test_the_database_puts_cards_in_utc_weeks_from_monday_and_in_calendar_months(database, knowledge, by, periods):
    moments = [epoch(date(2026, 12, 31)) + 3600,  # Thursday
               epoch(date(2027, 1, 4)) - 1,  # Sunday 23:59:59 UTC: the same week
               epoch(date(2027, 1, 4)),  # Monday 00:00 UTC: the next
               epoch(date(2027, 2, 1))]
    for i, moment in enumerate(moments):
        memory = CardMemory(database, read_secret(database), clock=lambda moment=moment: moment)
        memory.record([IssuedCard(f"c{i}", "rule-a", "fp", {"rule-a": "fp"}, "info")], "svc", "patient-view",
                      f"h{i}", "p", memory.key("p"), "ctx", memory.key("p", "u"))

    report = as_json(report_of(database, knowledge, by=by))

    assert [(p["period"], p["issued"]) for p in report["periods"]] == periods


def test_counting_is_done_in_the_database_a_row_per_rule_and_day(database, knowledge):
    memory = CardMemory(database, read_secret(database), clock=lambda: T0)
    cards = [IssuedCard(f"c{i}", "rule-a", "fp", {"rule-a": "fp"}, "warning", {"rule-a": 1}) for i in range(300)]
    memory.record(cards, "svc", "patient-view", "h", "p", memory.key("p"), "ctx", memory.key("p", "u"))
    FeedbackStore(database, clock=lambda: T0).store("svc", [item(f"c{i}", "accepted", T0) for i in range(120)])

    counts = count_feedback(database)

    assert [(c.rule, c.cards) for c in counts.issued] == [("rule-a", 300)]
    assert [(c.outcome, c.cards) for c in counts.outcomes] == [("accepted", 120)]


def test_csv_has_a_row_per_rule_version_and_period_and_one_for_all_periods(database, knowledge):
    seed(database, knowledge)

    rows = list(csv.DictReader(io.StringIO(as_csv(report_of(database, knowledge)))))

    a2 = {r["period"]: r for r in rows if (r["rule"], r["version"]) == ("rule-a", "2") and not r["suggestion"]}
    assert sorted(a2) == ["2027-01-11", "2027-01-18", "all"]
    assert (a2["all"]["issued"], a2["all"]["snoozed"], a2["all"]["override_reasons"]) == \
        ("5", "1", "not-relevant=1;snooze-30d=1")


@pytest.fixture(params=["sqlite", "postgresql"])
def served(request, knowledge, tmp_path):
    if request.param == "sqlite":
        url = Settings(data_dir=tmp_path / "data").effective_database_url
    else:
        url = request.getfixturevalue("postgres").create_database()
    clock = Clock(float(T0))
    app = create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path / "data", database_url=url, admin_token=TOKEN),
                     knowledge, now=clock)
    with AppServer(app) as server:
        yield server.url, url, clock
    app.extensions["spasm_cds"].database.engine.dispose()


def test_feedback_sent_over_http_shows_in_the_admin_report_and_the_cli_report(served, knowledge, monkeypatch,
                                                                              capsys):
    url, database_url, clock = served
    case = first_case(knowledge, lambda c, r: c.hook == "patient-view" and r.severity == "warning"
                      and not r.card.group)
    service_id, body = request_for(knowledge, case)
    first = card_of(call(url, service_id, body), case.rule)
    body["context"]["patientId"] = "another-patient"
    second = card_of(call(url, service_id, body), case.rule)
    assert send_feedback(url, service_id, accepted(first["uuid"], clock()))[0] == 200
    assert send_feedback(url, service_id, overridden(second["uuid"], clock(), "snooze-30d"))[0] == 200

    status, answer = http_request("GET", f"{url}/admin/feedback?format=json",
                                  headers={"Authorization": f"Bearer {TOKEN}"})
    monkeypatch.setenv("SPASM_CDS_DATABASE_URL", database_url)
    assert main(["feedback", "report", "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)

    assert status == 200
    served_report = json.loads(answer)
    mine = rule(served_report, case.rule, knowledge.rules[case.rule].version)
    assert (mine["issued"], mine["accepted"], mine["overridden"], mine["snoozed"]) == (2, 1, 1, 1)
    assert mine["title"] == knowledge.rules[case.rule].title
    assert printed["rules"] == served_report["rules"] and printed["totals"] == served_report["totals"]
    assert "another-patient" not in answer.decode()


def test_a_suggestion_accepted_over_http_is_counted_for_the_rule_that_offered_it(served, knowledge):
    """Real cards: the suggestions the service offered are recorded with the card, and the uuid a feedback accepts
    is counted against the suggestion's label and rule; the other suggestion of the card is offered, not accepted."""
    url, _, clock = served
    case = first_case(knowledge, lambda c, r: not r.card.group and len(r.card.suggest_labs) >= 2
                      and not r.card.suggest_remove_draft)
    service_id, body = request_for(knowledge, case)
    first = card_of(call(url, service_id, body), case.rule)
    body["context"]["patientId"] = "another-patient"
    second = card_of(call(url, service_id, body), case.rule)
    chosen, other = first["suggestions"][0], first["suggestions"][1]
    assert chosen["uuid"] != second["suggestions"][0]["uuid"]  # a suggestion's uuid is its card's
    assert send_feedback(url, service_id, accepted(first["uuid"], clock(), chosen["uuid"]))[0] == 200
    assert send_feedback(url, service_id, accepted(second["uuid"], clock(), other["uuid"]))[0] == 200  # not its own

    status, answer = http_request("GET", f"{url}/admin/feedback?format=json",
                                  headers={"Authorization": f"Bearer {TOKEN}"})

    assert status == 200
    mine = rule(json.loads(answer), case.rule, knowledge.rules[case.rule].version)
    counted = {s["label"]: (s["offered"], s["accepted"], s["kind"]) for s in mine["suggestions"]}
    assert counted[chosen["label"]][:2] == (2, 1) and counted[other["label"]][:2] == (2, 0)
    assert len(counted) == len(first["suggestions"])
    assert all(kind.startswith("order-lab:") for _, _, kind in counted.values())
    assert "another-patient" not in answer.decode()


def test_a_group_cards_suggestions_are_counted_once_each_under_a_rule_the_card_shows(served, knowledge):
    """A group card shows several rules and carries their suggestions: each suggestion is counted once, under the
    rule that asked for it (one of the card's rules), not once for every rule on the card."""
    url, _, clock = served
    def offers_two(case, rule) -> bool:  # judged offline, without the service's memory
        if rule.card.group is None:
            return False
        service_id, body = request_for(knowledge, case)
        cards = respond(body, knowledge.services[service_id], knowledge, Settings.from_env({}), date.today())
        return len(card_of(cards["cards"], case.rule).get("suggestions", [])) >= 2

    case = first_case(knowledge, offers_two)
    service_id, body = request_for(knowledge, case)
    card = card_of(call(url, service_id, body), case.rule)
    assert len(card["suggestions"]) >= 2, card["suggestions"]
    taken = card["suggestions"][-1]
    assert send_feedback(url, service_id, accepted(card["uuid"], clock(), taken["uuid"]))[0] == 200

    status, answer = http_request("GET", f"{url}/admin/feedback?format=json",
                                  headers={"Authorization": f"Bearer {TOKEN}"})

    assert status == 200
    counted = [(r["rule"], s["label"], s["offered"], s["accepted"]) for r in json.loads(answer)["rules"]
               for s in r["suggestions"]]
    assert sorted(label for _, label, _, _ in counted) == sorted(s["label"] for s in card["suggestions"])
    assert {rule_id for rule_id, _, _, _ in counted} <= set(card["extension"]["org.spasm-cds"]["rules"])
    assert [(label, offered, took) for _, label, offered, took in counted if took] == [(taken["label"], 1, 1)]
    assert all(offered == 1 for _, _, offered, _ in counted)
