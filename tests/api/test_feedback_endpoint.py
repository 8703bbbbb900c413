"""POST /cds-services/{id}/feedback in process: a valid body is stored before the 200 (once, however often it is
sent; an unknown card is kept and flagged); anything malformed is a 4xx OperationOutcome with nothing written; the
route answers CORS preflights and, with authentication on, needs a JWT like every /cds-services call."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from cds_service import create_app
from cds_service.render.cards import OVERRIDE_SYSTEM
from cds_service.settings import Settings
from cds_service.state.tables import Feedback, Suppression
from tests.conftest import REPO
from tests.support.assertions import assert_operation_outcome

SERVICE = "spasm-cramps-patient-view"
PATH = f"/cds-services/{SERVICE}/feedback"
WHEN = "2027-01-15T08:00:00Z"
OVERRIDDEN = {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": WHEN,
              "overrideReason": {"reason": {"system": OVERRIDE_SYSTEM, "code": "snooze-30d"}}}
ACCEPTED = {"card": "c-1", "outcome": "accepted", "acceptedSuggestions": [{"id": "s-1"}], "outcomeTimestamp": WHEN}


@pytest.fixture
def client(knowledge, tmp_path):
    app = create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path), knowledge)
    yield app.test_client()
    app.extensions["spasm_cds"].database.engine.dispose()


def rows(client, table=Feedback) -> int:
    with client.application.extensions["spasm_cds"].database.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def with_changes(entry: dict, **changes) -> dict:
    """The entry with fields changed; a change to None removes the field."""
    out = {**entry, **changes}
    return {k: v for k, v in out.items() if v is not None}


MALFORMED = [
    ("not-json", b"{feedback", "application/json", 400),
    ("not-an-object", b"[]", "application/json", 400),
    ("no-feedback-list", json.dumps({}).encode(), "application/json", 400),
    ("empty-feedback-list", json.dumps({"feedback": []}).encode(), "application/json", 400),
    ("feedback-not-a-list", json.dumps({"feedback": OVERRIDDEN}).encode(), "application/json", 400),
    ("unknown-top-level-field", json.dumps({"feedback": [OVERRIDDEN], "cards": []}).encode(), "application/json",
     400),
    ("no-card", json.dumps({"feedback": [with_changes(OVERRIDDEN, card=None)]}).encode(), "application/json", 400),
    ("empty-card", json.dumps({"feedback": [with_changes(OVERRIDDEN, card="")]}).encode(), "application/json", 400),
    ("card-not-a-string", json.dumps({"feedback": [with_changes(OVERRIDDEN, card=7)]}).encode(),
     "application/json", 400),
    ("unknown-outcome", json.dumps({"feedback": [with_changes(OVERRIDDEN, outcome="ignored")]}).encode(),
     "application/json", 400),
    ("no-timestamp", json.dumps({"feedback": [with_changes(OVERRIDDEN, outcomeTimestamp=None)]}).encode(),
     "application/json", 400),
    ("timestamp-without-zone", json.dumps({"feedback": [with_changes(
        OVERRIDDEN, outcomeTimestamp="2027-01-15T08:00:00")]}).encode(), "application/json", 400),
    ("timestamp-month-13", json.dumps({"feedback": [with_changes(
        OVERRIDDEN, outcomeTimestamp="2027-13-15T08:00:00Z")]}).encode(), "application/json", 400),
    ("accepted-without-suggestions", json.dumps({"feedback": [with_changes(ACCEPTED, acceptedSuggestions=None)]})
     .encode(), "application/json", 400),
    ("accepted-with-override-reason", json.dumps({"feedback": [with_changes(
        ACCEPTED, overrideReason=OVERRIDDEN["overrideReason"])]}).encode(), "application/json", 400),
    ("overridden-with-suggestions", json.dumps({"feedback": [with_changes(
        OVERRIDDEN, acceptedSuggestions=[{"id": "s"}])]}).encode(), "application/json", 400),
    ("empty-override-reason", json.dumps({"feedback": [with_changes(OVERRIDDEN, overrideReason={})]}).encode(),
     "application/json", 400),
    ("reason-without-system", json.dumps({"feedback": [with_changes(
        OVERRIDDEN, overrideReason={"reason": {"code": "snooze-30d"}})]}).encode(), "application/json", 400),
    ("every-entry-bad", json.dumps({"feedback": [with_changes(OVERRIDDEN, outcome=None),
                                                 {**ACCEPTED, "unknownField": 1}]}).encode(), "application/json", 400),
    ("too-many-entries", json.dumps({"feedback": [with_changes(OVERRIDDEN, outcomeTimestamp=f"2027-01-15T08:00:"
                                                               f"{i % 60:02d}Z", card=f"c-{i}")
                                                  for i in range(101)]}).encode(), "application/json", 400),
    ("wrong-content-type", json.dumps({"feedback": [OVERRIDDEN]}).encode(), "text/plain", 415),
    ("body-too-large", json.dumps({"feedback": [with_changes(OVERRIDDEN, overrideReason={
        "userComment": "x" * 1_100_000})]}).encode(), "application/json", 413),
]


@pytest.mark.parametrize(("name", "data", "content_type", "status"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_feedback_is_a_4xx_operation_outcome_and_nothing_is_written(client, name, data, content_type,
                                                                              status):
    response = client.post(PATH, data=data, headers={"Content-Type": content_type})

    assert_operation_outcome(response.status_code, response.headers["Content-Type"], response.data, status)
    assert rows(client) == 0 and rows(client, Suppression) == 0


_Y1 = -62_135_596_800_000  # 0001-01-01T00:00:00Z in epoch ms
_Y9999_END = 253_402_300_799_000  # 9999-12-31T23:59:59Z


@pytest.mark.parametrize(("timestamp", "epoch_ms"), [
    ("0001-01-01T00:00:00Z", _Y1),
    ("0001-01-01T00:00:00+14:00", _Y1 - 14 * 3_600_000),  # before year 1 in UTC: datetime cannot say it
    ("0001-01-01T00:00:00+23:59", _Y1 - (23 * 60 + 59) * 60_000),
    ("9999-12-31T23:59:59Z", _Y9999_END),
    ("9999-12-31T23:59:59-23:59", _Y9999_END + (23 * 60 + 59) * 60_000),  # after year 9999 in UTC
    ("9999-12-31T23:59:59.999999999-23:59", _Y9999_END + (23 * 60 + 59) * 60_000 + 999),
    ("2016-12-31T23:59:60Z", 1_483_228_800_000),  # a leap second: the first second of 2017
    ("9999-12-31T23:59:60-23:59", _Y9999_END + (23 * 60 + 59) * 60_000 + 1000),
    ("2027-01-15t08:00:00z", 1_800_000_000_000),
], ids=["year-1", "year-1-east", "year-1-far-east", "year-9999", "year-9999-far-west", "year-9999-nanoseconds",
        "leap-second", "leap-second-at-the-end-of-time", "lower-case"])
def test_timestamps_at_the_ends_of_the_date_range_are_stored_exactly(client, timestamp, epoch_ms):
    response = client.post(PATH, json={"feedback": [with_changes(OVERRIDDEN, outcomeTimestamp=timestamp)]})

    assert (response.status_code, response.data) == (200, b"")
    with client.application.extensions["spasm_cds"].database.engine.connect() as conn:
        assert conn.execute(select(Feedback.outcome_at_ms)).scalar_one() == epoch_ms


@pytest.mark.parametrize("timestamp", [
    "0000-01-01T00:00:00Z", "10000-01-01T00:00:00Z", "2027-02-29T00:00:00Z", "2027-01-15T24:00:00Z",
    "2027-01-15T08:60:00Z", "2027-01-15T08:00:61Z", "2027-01-15T08:00:00+24:00", "2027-01-15T08:00:00+99:99",
    "2027-01-15T08:00:00-00:60", "2027-01-15T08:00:00Z\n", "2027-01-15T08:00:00.Z", "+2027-01-15T08:00:00Z",
    "2027-01-15T08:00:00.1234567890Z", "２０２７-01-15T08:00:00Z", "2027-01-15T08:00:00Z ",  # noqa: RUF001 - full-width digits on purpose
], ids=["year-0", "year-10000", "not-a-leap-year", "hour-24", "minute-60", "second-61", "offset-24h",
        "offset-99", "offset-minute-60", "trailing-newline", "empty-fraction", "signed-year", "ten-fraction-digits",
        "full-width-digits", "trailing-space"])
def test_timestamps_that_are_not_rfc_3339_date_times_are_400_naming_the_field(client, timestamp):
    response = client.post(PATH, json={"feedback": [with_changes(OVERRIDDEN, outcomeTimestamp=timestamp)]})

    doc = assert_operation_outcome(response.status_code, response.headers["Content-Type"], response.data, 400)
    assert doc["issue"][0]["diagnostics"].startswith("feedback/0/outcomeTimestamp")
    assert rows(client) == 0


@pytest.mark.parametrize(("field", "entry"), [
    ("card", with_changes(OVERRIDDEN, card="c-1\u0000")),
    ("overrideReason/userComment", with_changes(OVERRIDDEN, overrideReason={"userComment": "see\u0000note"})),
    ("overrideReason/reason/code", with_changes(OVERRIDDEN, overrideReason={"reason": {
        "system": OVERRIDE_SYSTEM, "code": "snooze-30d\u0000"}})),
    ("overrideReason/reason/system", with_changes(OVERRIDDEN, overrideReason={"reason": {
        "system": "\u0000", "code": "snooze-30d"}})),
    ("acceptedSuggestions/0/id", with_changes(ACCEPTED, acceptedSuggestions=[{"id": "s\u0000"}])),
    ("card", with_changes(OVERRIDDEN, card="c-1\n")),
    ("acceptedSuggestions/0/id", with_changes(ACCEPTED, acceptedSuggestions=[{"id": "s-1\n"}])),
], ids=["nul-card", "nul-comment", "nul-reason-code", "nul-reason-system", "nul-suggestion", "newline-card",
        "newline-suggestion"])
def test_a_nul_or_an_identifier_with_a_control_character_is_400_on_every_database(client, field, entry):
    """PostgreSQL text cannot hold NUL: it is refused here, the same on SQLite, rather than answered 503 'send it
    again' for ever (tests/integration/test_postgres.py sends it to PostgreSQL)."""
    response = client.post(PATH, json={"feedback": [entry]})

    doc = assert_operation_outcome(response.status_code, response.headers["Content-Type"], response.data, 400)
    assert doc["issue"][0]["diagnostics"].startswith(f"feedback/0/{field}: holds a character that cannot be stored")
    assert rows(client) == 0


def test_a_comment_may_hold_line_breaks_and_tabs(client):
    comment = "line one\r\nline two\tand a tab"
    response = client.post(PATH, json={"feedback": [with_changes(OVERRIDDEN, overrideReason={"userComment": comment})]})

    assert response.status_code == 200
    with client.application.extensions["spasm_cds"].database.engine.connect() as conn:
        assert conn.execute(select(Feedback.user_comment)).scalar_one() == comment


def test_diagnostics_name_the_field_not_its_value(client):
    comment = "patient Jane Example, MRN 123"
    body = {"feedback": [with_changes(OVERRIDDEN, outcome="dismissed", overrideReason={"userComment": comment})]}
    response = client.post(PATH, json=body)
    doc = assert_operation_outcome(response.status_code, response.headers["Content-Type"], response.data, 400)
    assert "feedback/0/outcome" in doc["issue"][0]["diagnostics"]
    assert comment.encode() not in response.data and b"dismissed" not in response.data


def test_feedback_to_an_unknown_service_is_404(client):
    response = client.post("/cds-services/no-such-service/feedback", json={"feedback": [OVERRIDDEN]})
    assert_operation_outcome(response.status_code, response.headers["Content-Type"], response.data, 404)


def test_a_valid_body_is_stored_once_and_an_unknown_card_is_flagged(client):
    body = {"feedback": [OVERRIDDEN, ACCEPTED, with_changes(OVERRIDDEN, overrideReason={"userComment": "later"},
                                                            outcomeTimestamp="2027-01-15T09:00:00.250+01:00")]}
    first = client.post(PATH, json=body)
    again = client.post(PATH, json=body)

    assert (first.status_code, first.data, first.mimetype) == (200, b"", "text/plain")  # as openapi.json says
    assert (again.status_code, again.data) == (200, b"")
    with client.application.extensions["spasm_cds"].database.engine.connect() as conn:
        stored = conn.execute(select(Feedback.outcome, Feedback.card_known, Feedback.reason_code,
                                     Feedback.user_comment, Feedback.outcome_at_ms).order_by(Feedback.id)).all()
    at = 1_800_000_000_000  # 2027-01-15T08:00:00Z
    assert sorted(stored, key=repr) == sorted([("overridden", False, "snooze-30d", None, at),
                                               ("accepted", False, None, None, at),
                                               ("overridden", False, None, "later", at + 250)], key=repr)
    assert rows(client, Suppression) == 0  # an unknown card has no patient or rule to act on


def test_the_sandboxs_override_without_display_is_accepted(client):
    """The CDS Hooks Sandbox sends the reason's system and code only."""
    response = client.post(PATH, json={"feedback": [OVERRIDDEN]})
    assert response.status_code == 200


def test_the_feedback_route_answers_a_cors_preflight(client):
    response = client.options(PATH, headers={"Origin": "http://127.0.0.1:8080",
                                             "Access-Control-Request-Method": "POST",
                                             "Access-Control-Request-Headers": "authorization,content-type"})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


def test_with_authentication_on_feedback_needs_a_jwt(knowledge, tmp_path):
    settings = Settings(knowledge_dir=REPO, data_dir=tmp_path, auth="on", public_url="http://localhost")
    app = create_app(settings, knowledge)
    response = app.test_client().post(PATH, json={"feedback": [OVERRIDDEN]})
    assert (response.status_code, response.data) == (401, b"")
    app.extensions["spasm_cds"].database.engine.dispose()


def test_a_malformed_entry_is_left_out_and_named_and_the_good_ones_are_kept(client):
    """Issue 14: one bad entry (an unknown field, a bad timestamp) no longer throws away a clinician's other
    outcomes: they are stored, and the 200 carries an OperationOutcome naming each entry left out by index."""
    good = with_changes(OVERRIDDEN, card="c-kept")
    body = {"feedback": [{**ACCEPTED, "card": "c-unknown-field", "vendorField": "vendor-private-value"}, good,
                         with_changes(OVERRIDDEN, card="c-bad-time", outcomeTimestamp="2027-02-30T08:00:00Z")]}
    before = rows(client)
    response = client.post(PATH, json=body)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    issues = response.get_json()["issue"]
    assert [i["severity"] for i in issues] == ["error", "error"]
    assert issues[0]["diagnostics"].startswith("not stored: feedback/0")
    assert "feedback/2/outcomeTimestamp" in issues[1]["diagnostics"]
    assert "vendor-private-value" not in issues[0]["diagnostics"]  # fields are named, never their values
    assert rows(client) == before + 1
