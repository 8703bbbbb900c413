"""Data cut short is unknown, never complete (issue 14): lab results sent as one page with a `next` link the service
cannot follow, or fetched with paging stopped at SPASM_CDS_FHIR_MAX_PAGES, never make a test look missing. What did
arrive is still used (a drug or result on page 1 is real) and the notice says the lab results were only partly
received. Over real HTTP under gunicorn; fetch mode against the real FHIR server."""
from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from datetime import date

import pytest

from cds_service.demo import demo_bundle, hook_request, load_demos
from cds_service.render.cards import EXTENSION_KEY
from cds_service.tools.demo_fhir import as_transaction
from tests.support.cds_client import call
from tests.support.service_server import ServiceServer

pytestmark = pytest.mark.integration
SERVICE = "spasm-cramps-patient-view"
LATER_PAGE = ("Magnesium", "Calcium")  # their results travel on page 2


@pytest.fixture(scope="module")
def contributors(knowledge) -> dict:
    """The demo patient with a cramp, a statin and a thiazide, and recent K, Mg, Ca, CK and TSH results: complete
    data gives the contributors card and no work-up card."""
    demo = next(d for d in load_demos().patients if d.id == "contributors")
    return hook_request(demo_bundle(demo, date.today()), knowledge, "patient-view", None, str(uuid.uuid4()))[1]


def first_page(body: dict, next_link: bool) -> dict:
    """The call with only page 1 of its lab results (Mg and Ca left for page 2), with or without a next link, and
    no fhirServer to fetch from."""
    body = copy.deepcopy(body)
    body.pop("fhirServer", None)
    labs = body["prefetch"]["labResults"]
    labs["entry"] = [e for e in labs["entry"]
                     if not any(word in e["resource"]["code"]["coding"][0].get("display", "") for word in LATER_PAGE)]
    assert len(labs["entry"]) == 3
    if next_link:
        labs["link"] = [{"relation": "self", "url": "https://ehr.example/fhir/Observation?page=1"},
                        {"relation": "next", "url": "https://ehr.example/fhir/Observation?page=2"}]
    return body


def summaries(cards: list[dict]) -> list[str]:
    return [c["summary"] for c in cards]


def work_up(cards: list[dict]) -> list[dict]:
    return [c for c in cards if "work-up" in c["summary"].lower()]


def notice(cards: list[dict]) -> dict | None:
    return next((c for c in cards if c["summary"].startswith("Checks incomplete")), None)


def test_complete_data_gives_no_work_up_card(service_server, contributors):
    cards = call(service_server.url, SERVICE, contributors)
    assert any("Possible cramp contributors" in s for s in summaries(cards))
    assert not work_up(cards) and notice(cards) is None


def test_page_one_alone_without_a_next_link_is_taken_as_complete(service_server, contributors):
    """The control: with no sign of a page 2, magnesium and calcium are missing and the work-up proposes them."""
    cards = call(service_server.url, SERVICE, first_page(contributors, next_link=False))
    (card,) = work_up(cards)
    assert "magnesium" in card["summary"] and "calcium" in card["summary"]


def test_a_page_with_a_next_link_and_no_fhir_server_is_incomplete_not_missing(service_server, contributors):
    cards = call(service_server.url, SERVICE, first_page(contributors, next_link=True))
    assert not work_up(cards)  # nothing proposed as missing: it may be on page 2
    assert any("Possible cramp contributors" in s for s in summaries(cards))  # the drugs still count
    found = notice(cards)
    assert found is not None and "lab results (only part received)" in found["summary"]
    assert found["extension"][EXTENSION_KEY]["incompleteData"] == ["observations"]


@pytest.fixture(scope="module")
def one_page_service() -> Iterator[ServiceServer]:
    with ServiceServer(workers=1, extra_env={"SPASM_CDS_FHIR_MAX_PAGES": "1", "SPASM_CDS_DEDUPLICATE": "off"}) as s:
        yield s


@pytest.fixture(scope="module")
def long_chart(fhir_server, knowledge) -> dict:
    """The contributors patient on the real FHIR server (ids made unique) with 100 newer normal potassium results,
    so that the service's lab query (newest first, 100 a page) finds Mg and Ca only on page 2. The call that
    fetches it."""
    demo = next(d for d in load_demos().patients if d.id == "contributors")
    bundle = demo_bundle(demo, date.today())
    suffix = uuid.uuid4().hex[:8]
    for entry in bundle["entry"]:  # references go by fullUrl, so ids may change freely
        entry["resource"]["id"] = f"{entry['resource']['id']}-{suffix}"
    patient = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    potassium = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
                     and "Potassium" in e["resource"]["code"]["coding"][0].get("display", ""))
    for minute in range(100):
        extra = copy.deepcopy(potassium)
        extra["fullUrl"] = f"urn:uuid:{uuid.uuid4()}"
        when = f"{date.today().isoformat()}T{minute // 60:02d}:{minute % 60:02d}:00Z"
        extra["resource"].update(id=f"k{minute}-{suffix}", effectiveDateTime=when,
                                 valueQuantity={**extra["resource"]["valueQuantity"], "value": 4.2})
        extra["resource"].pop("interpretation", None)
        bundle["entry"].append(extra)
    fhir_server.load_transaction(as_transaction(bundle))
    body = hook_request(demo_bundle(demo, date.today()), knowledge, "patient-view", None, str(uuid.uuid4()))[1]
    body = {k: v for k, v in body.items() if k != "prefetch"}
    body["context"] = {**body["context"], "patientId": patient["resource"]["id"]}
    return {**body, "fhirServer": fhir_server.base_url}


def test_fetch_mode_paging_stopped_at_its_cap_is_incomplete(one_page_service, service_server, long_chart):
    # all pages read (the session service, up to 5 pages): complete, no work-up, no notice
    cards = call(service_server.url, SERVICE, long_chart)
    assert not work_up(cards) and notice(cards) is None
    # one page read of two: Mg and Ca not proposed as missing, and the notice says the results are partial
    cards = call(one_page_service.url, SERVICE, long_chart)
    assert not work_up(cards)
    found = notice(cards)
    assert found is not None and "lab results (only part received)" in found["summary"]


def by_reference(body: dict, medication_id: str) -> tuple[dict, dict]:
    """The call with its atorvastatin order naming the drug by a reference to a Medication the prefetch does not
    include (an EHR that ignores _include), and that Medication."""
    body = copy.deepcopy(body)
    body.pop("fhirServer", None)
    order = next(e["resource"] for e in body["prefetch"]["medicationRequests"]["entry"]
                 if "atorvastatin" in e["resource"]["medicationCodeableConcept"]["text"])
    medication = {"resourceType": "Medication", "id": medication_id, "code": order.pop("medicationCodeableConcept")}
    order["medicationReference"] = {"reference": f"Medication/{medication_id}"}
    return body, medication


def contributor_card(cards: list[dict]) -> dict:
    return next(c for c in cards if c["summary"].startswith("Possible cramp contributors"))


def test_a_medication_the_ehr_did_not_include_is_read_from_the_fhir_server(service_server, fhir_server,
                                                                           contributors):
    body, medication = by_reference(contributors, f"atorva-{uuid.uuid4().hex[:8]}")
    fhir_server.load_transaction({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": medication, "request": {"method": "PUT", "url": f"Medication/{medication['id']}"}}]})
    cards = call(service_server.url, SERVICE, {**body, "fhirServer": fhir_server.base_url})
    assert "atorvastatin" in contributor_card(cards)["summary"]
    assert notice(cards) is None


def test_a_medication_that_cannot_be_read_makes_the_orders_incomplete(service_server, contributors):
    body, _ = by_reference(contributors, "not-sent-anywhere")
    cards = call(service_server.url, SERVICE, body)
    summary = contributor_card(cards)["summary"]
    assert "hydrochlorothiazide" in summary and "atorvastatin" not in summary  # what is known still counts
    found = notice(cards)
    assert found is not None and "medication orders (only part received)" in found["summary"]
