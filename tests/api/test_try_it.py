"""The try-it page in process: / lists the demo patients; each demo gives the cards demos.yaml says on its hook (the
no-cramp one none); a pasted Bundle works and bad input is a message on the page (4xx, nothing echoed unescaped);
a suggestion or a dismissal is stored as an EHR's feedback; SPASM_CDS_TRY_IT=off (and, unless set, auth on) is 404."""
from __future__ import annotations

import copy
import html
import json
import logging
import re
from datetime import date, timedelta
from html.parser import HTMLParser

import pytest
from sqlalchemy import select

from cds_service import create_app
from cds_service.demo import PATIENT_PREFIX, demo_bundle, load_demos, shift_dates
from cds_service.settings import Settings
from cds_service.state.tables import Feedback, Suppression
from tests.conftest import REPO
from tests.support.assertions import assert_operation_outcome

DEMOS = load_demos().patients


class Forms(HTMLParser):
    """The page's forms: action, hidden and text inputs, and submit buttons (name, value, text)."""

    def __init__(self, page: str):
        super().__init__()
        self.forms: list[dict] = []
        self._button: dict | None = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "fields": {}, "buttons": [], "id": a.get("id")})
        elif tag == "input" and self.forms and a.get("type") in ("hidden", "text"):
            self.forms[-1]["fields"][a["name"]] = a.get("value", "")
        elif tag == "button" and self.forms and "form" not in a:
            self._button = {"name": a.get("name"), "value": a.get("value"), "text": ""}
            self.forms[-1]["buttons"].append(self._button)

    def handle_data(self, data):
        if self._button is not None:
            self._button["text"] += data

    def handle_endtag(self, tag):
        if tag == "button":
            self._button = None

    def card_forms(self) -> list[dict]:
        return [f for f in self.forms if "/try-it/feedback" in f["action"]]


@pytest.fixture
def app(knowledge, tmp_path):
    app = create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path), knowledge)
    yield app
    app.extensions["spasm_cds"].database.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


def summaries(page: str) -> list[str]:
    return [html.unescape(s) for s in re.findall(r'<h3 class="card-summary">(.*?)</h3>', page)]


def text(page: str) -> str:
    """The page as a reader sees it: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def alert(page: str) -> str:
    found = re.search(r'role="alert"><strong>Could not run:</strong> (.*?)</div>', page, re.S)
    return html.unescape(found.group(1)) if found else ""


def feedback_rows(client) -> list:
    with client.application.extensions["spasm_cds"].database.engine.connect() as conn:
        return conn.execute(select(Feedback.card_uuid, Feedback.card_known, Feedback.outcome,
                                   Feedback.accepted_suggestions, Feedback.reason_code)).all()


def test_the_page_lists_every_demo_patient_and_says_the_data_is_synthetic(client):
    response = client.get("/")
    page = response.get_data(as_text=True)

    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "Synthetic demo data, not for clinical use" in page
    for demo in DEMOS:
        assert demo.label in html.unescape(page) and demo.shows in html.unescape(page)
    assert [f["fields"]["run"] for f in Forms(page).forms if f["id"]] == [d.id for d in DEMOS]


@pytest.mark.parametrize("demo", DEMOS, ids=[d.id for d in DEMOS])
def test_each_demo_patient_gives_its_cards_on_its_hook(client, demo):
    response = client.post("/try-it", data={"run": demo.id})
    page = response.get_data(as_text=True)
    shown = summaries(page)

    assert response.status_code == 200, alert(page)
    assert len(shown) == len(demo.cards), shown
    for expected, summary in zip(demo.cards, shown, strict=True):
        assert expected in summary
    if not demo.cards:
        assert "No cards: the service stays silent for this patient." in page
    response_json = json.loads(html.unescape(re.search(r'<pre id="response-json">(.*?)</pre>', page, re.S).group(1)))
    assert [c["summary"] for c in response_json["cards"]] == shown


def test_the_cards_are_shown_as_an_ehr_shows_them(client):
    demo = next(d for d in DEMOS if d.hook == "patient-view" and d.cards)
    page = client.post("/try-it", data={"run": demo.id}).get_data(as_text=True)
    card = json.loads(html.unescape(re.search(r'<pre id="response-json">(.*?)</pre>', page, re.S).group(1)))["cards"][0]

    label = {"info": "Info", "warning": "Warning", "critical": "Critical"}[card["indicator"]]
    assert f'<article class="card {card["indicator"]}" aria-label="{label} card">' in page
    assert f'<span class="badge">{label}</span>' in page  # the indicator in words, not only in colour
    assert card["source"]["label"] in html.unescape(page)
    assert f'href="http://localhost/knowledge/{card["extension"]["org.spasm-cds"]["rules"][0]}"' in page
    for reason in card["overrideReasons"]:
        assert f'<option value="{reason["code"]}">{reason["display"]}</option>' in html.unescape(page)
    assert "<strong>" in page.split('<div class="detail">', 1)[1].split("</div>", 1)[0]  # markdown rendered


def test_the_request_shown_is_the_cds_hooks_request_and_dates_look_current(client, today):
    demo = next(d for d in DEMOS if d.hook == "patient-view" and d.cards)
    page = client.post("/try-it", data={"run": demo.id}).get_data(as_text=True)
    body = json.loads(html.unescape(re.search(r'<pre id="request-json">(.*?)</pre>', page, re.S).group(1)))

    assert body["hook"] == "patient-view" and body["context"]["patientId"].startswith(PATIENT_PREFIX)
    dates = re.findall(r'"(\d{4}-\d{2}-\d{2})', json.dumps(body["prefetch"]))
    assert max(date.fromisoformat(d) for d in dates) == today - timedelta(days=2)


def test_shift_dates_moves_every_date_by_the_same_days():
    document = {"a": "2020-01-10", "b": [{"c": "2020-01-01T08:30:00Z"}, "not a date", 7], "birthDate": "1950-06-30"}

    shifted = shift_dates(document, date(2026, 3, 20))

    moved = date(2026, 3, 20) - date(2020, 1, 10)
    assert shifted == {"a": "2026-03-20", "b": [{"c": "2026-03-11T08:30:00Z"}, "not a date", 7],
                       "birthDate": (date(1950, 6, 30) + moved).isoformat()}
    assert document["a"] == "2020-01-10"


def test_an_order_hook_chosen_by_hand_uses_the_chosen_drug(client):
    demo = next(d for d in DEMOS if d.order)
    page = client.post("/try-it", data={"patient": demo.id, "hook": "order-sign", "order": demo.order}) \
        .get_data(as_text=True)
    missing = client.post("/try-it", data={"patient": demo.id, "hook": "order-sign", "order": ""})

    assert demo.cards[0] in summaries(page)[0]
    assert '"hook": "order-sign"' in html.unescape(page) and '"draftOrders"' in html.unescape(page)
    assert missing.status_code == 400 and "need a drug to order" in alert(missing.get_data(as_text=True))


def test_an_rxnorm_code_given_by_hand_becomes_the_draft_order(client):
    order = next(o for o in load_demos().orders if o.rxnorm)
    page = client.post("/try-it", data={"patient": DEMOS[0].id, "hook": "order-select", "rxnorm": order.rxnorm}) \
        .get_data(as_text=True)
    bad = client.post("/try-it", data={"patient": DEMOS[0].id, "hook": "order-select", "rxnorm": "12; DROP"})

    request_json = json.loads(html.unescape(re.search(r'<pre id="request-json">(.*?)</pre>', page, re.S).group(1)))
    draft = request_json["context"]["draftOrders"]["entry"][0]["resource"]
    assert draft["medicationCodeableConcept"]["coding"][0]["code"] == order.rxnorm
    assert request_json["context"]["selections"] == [f"MedicationRequest/{draft['id']}"]
    assert bad.status_code == 400 and "digits only" in alert(bad.get_data(as_text=True))


def test_a_pasted_bundle_runs_with_its_patient_id_prefixed(client, today):
    demo = next(d for d in DEMOS if d.hook == "patient-view" and d.cards)
    bundle = demo_bundle(demo, today)
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["id"] = "pasted-42"

    response = client.post("/try-it", data={"patient": "paste", "hook": "patient-view", "bundle": json.dumps(bundle)})
    page = response.get_data(as_text=True)

    assert response.status_code == 200, alert(page)
    assert demo.cards[0] in summaries(page)[0]
    assert f'"patientId": "{PATIENT_PREFIX}pasted-42"' in html.unescape(page)


def broken_bundles() -> list[tuple[str, str, str]]:
    bundle = demo_bundle(next(d for d in DEMOS if d.cards), date(2026, 1, 1))
    odd = copy.deepcopy(bundle)
    for entry in odd["entry"]:
        entry["resource"]["medicationReference"] = "not an object"
        if entry["resource"]["resourceType"] == "Observation":
            entry["resource"]["effectiveDateTime"] = 20260101
    request = {"hook": "patient-view", "hookInstance": "x", "context": {}}
    return [
        ("not-json", "{not json", "not valid JSON: Expecting property name enclosed in double quotes at line 1"),
        ("empty", "   ", "paste a FHIR R4 Bundle"),
        ("not-a-bundle", "[1, 2]", "not a FHIR Bundle"),
        ("no-patient", json.dumps({"resourceType": "Bundle", "type": "collection", "entry": []}), "0 Patient(s)"),
        ("a-cds-hooks-request", json.dumps(request), "that is a CDS Hooks request"),
        ("odd-field-types", json.dumps(odd), "could not be read as FHIR R4"),
        ("nested-too-deeply", "[" * 100_000 + "]" * 100_000, "nests too deeply"),
    ]


@pytest.mark.parametrize(("text", "message"), [b[1:] for b in broken_bundles()], ids=[b[0] for b in broken_bundles()])
def test_bad_pasted_input_is_a_message_on_the_page_not_a_traceback(client, text, message):
    response = client.post("/try-it", data={"patient": "paste", "hook": "patient-view", "bundle": text})
    page = response.get_data(as_text=True)

    assert response.status_code == 400 and response.mimetype == "text/html"
    assert message in alert(page)
    assert "Traceback" not in page and "internal error" not in page


def test_a_pasted_bundle_over_the_body_limit_is_a_message_on_the_page(client, app):
    limit = app.extensions["spasm_cds"].settings.max_body_bytes
    response = client.post("/try-it", data={"patient": "paste", "hook": "patient-view", "bundle": "x" * limit})

    assert response.status_code == 413 and response.mimetype == "text/html"
    assert "larger than" in alert(response.get_data(as_text=True))


def test_pasted_text_is_echoed_escaped(client):
    attack = '</textarea><script>alert(1)</script>'
    page = client.post("/try-it", data={"patient": "paste", "hook": "patient-view", "bundle": attack}) \
        .get_data(as_text=True)

    assert "<script>alert(1)" not in page
    assert html.escape(attack) in page


def test_a_suggestion_click_is_stored_as_an_ehr_feedback_on_a_card_the_service_issued(client):
    demo = next(d for d in DEMOS if d.cards and d.hook == "patient-view" and "work-up" in d.cards[0].lower())
    forms = Forms(client.post("/try-it", data={"run": demo.id}).get_data(as_text=True)).card_forms()
    form = next(f for f in forms if any(b["name"] == "accept" for b in f["buttons"]))
    button = next(b for b in form["buttons"] if b["name"] == "accept")

    response = client.post("/try-it/feedback", data={**form["fields"], "accept": button["value"]})
    page = response.get_data(as_text=True)

    assert response.status_code == 200, alert(page)
    assert f"Feedback recorded: accepted “{button['text'].strip()}”" in text(page)
    assert feedback_rows(client) == [(form["fields"]["card"], True, "accepted", [button["value"]], None)]
    assert '"outcome": "accepted"' in text(page) and '"outcomeTimestamp"' in text(page)


def test_a_dismissal_with_a_snooze_is_stored_and_the_card_is_then_held_back(client):
    demo = next(d for d in DEMOS if d.cards and d.hook == "patient-view")
    forms = Forms(client.post("/try-it", data={"run": demo.id}).get_data(as_text=True)).card_forms()
    form = next(f for f in forms if any(b["text"].strip() == "Dismiss card" for b in f["buttons"]))

    response = client.post("/try-it/feedback", data={**form["fields"], "reason": "snooze-30d", "comment": "later"})
    again = client.post("/try-it", data={"run": demo.id}).get_data(as_text=True)

    assert response.status_code == 200
    assert "snoozed for this patient for 30 days" in text(response.get_data(as_text=True))
    assert feedback_rows(client) == [(form["fields"]["card"], True, "overridden", None, "snooze-30d")]
    with client.application.extensions["spasm_cds"].database.engine.connect() as conn:
        assert conn.execute(select(Suppression.kind).where(Suppression.kind == "snooze")).first() is not None
    assert demo.cards[0] not in " ".join(summaries(again))


@pytest.mark.parametrize("change", [{"token": "0" * 64}, {"card": "some-other-card"}, {"reason": "made-up"}],
                         ids=["forged-token", "other-card", "reason-not-offered"])
def test_feedback_the_page_did_not_offer_is_refused_and_nothing_is_stored(client, change):
    demo = next(d for d in DEMOS if d.cards)
    form = Forms(client.post("/try-it", data={"run": demo.id}).get_data(as_text=True)).card_forms()[-1]

    response = client.post("/try-it/feedback", data={**form["fields"], **change})

    assert response.status_code == 400 and alert(response.get_data(as_text=True))
    assert feedback_rows(client) == []


@pytest.mark.parametrize("overrides", [{"try_it": "off"}, {"auth": "on", "public_url": "http://localhost"},
                                       {"auth": "on", "try_it": "", "public_url": "http://localhost"}],
                         ids=["off", "auth-on-unset", "auth-on-empty"])
@pytest.mark.parametrize(("method", "path"), [("GET", "/"), ("POST", "/try-it"), ("POST", "/try-it/feedback")])
def test_the_page_is_404_when_off_and_by_default_with_auth_on(knowledge, tmp_path, overrides, method, path):
    app = create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path, **overrides), knowledge)
    response = app.test_client().open(path, method=method, data={"run": DEMOS[0].id})

    assert_operation_outcome(response.status_code, response.headers["Content-Type"], response.data, 404)
    app.extensions["spasm_cds"].database.engine.dispose()


def test_with_auth_on_the_page_is_served_only_when_asked_for_and_a_warning_is_logged(knowledge, tmp_path, caplog):
    logger = logging.getLogger("cds_service")  # the service's logger does not propagate to caplog's
    logger.addHandler(caplog.handler)
    try:
        app = create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path, auth="on", try_it="on",
                                  public_url="http://localhost"), knowledge)
    finally:
        logger.removeHandler(caplog.handler)

    assert app.test_client().get("/").status_code == 200
    assert app.test_client().get("/cds-services").status_code == 401
    assert "try-it page at / is on while SPASM_CDS_AUTH=on" in caplog.text
    app.extensions["spasm_cds"].database.engine.dispose()


def test_a_bad_setting_stops_start_up(knowledge, tmp_path):
    with pytest.raises(ValueError, match="SPASM_CDS_TRY_IT"):
        create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path, try_it="maybe"), knowledge)
