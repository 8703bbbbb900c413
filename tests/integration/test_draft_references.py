"""A draft order that names its drug by a reference the service must read from the EHR's FHIR server, over real
HTTP on both sides: when the read fails (404, down, slow, 500, not JSON, off the allow-list, past the time budget)
the call still answers 200, gives no interaction card, and the notice says the order was not checked."""
from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cds_service import create_app
from cds_service.case_runner import build_request, build_resources, service_for
from cds_service.render.cards import EXTENSION_KEY
from cds_service.settings import Settings
from tests.conftest import REPO
from tests.integration.test_fhir_faults import FaultyFhir
from tests.integration.test_http_cases import load_case, post
from tests.support.app_server import AppServer
from tests.support.loopback import ServedInThread, free_port

pytestmark = pytest.mark.integration
RULE = "tizanidine-strong-cyp1a2-inhibitor"
ON_THE_EHR_RECORD = "tizanidine-by-reference-to-the-ehr-record-on-ciprofloxacin"
READ_TIMEOUT_S = 0.3
HOLD_S = 0.5  # how long the timed server takes over each request


@pytest.fixture
def fhir() -> Iterator[FaultyFhir]:
    with FaultyFhir() as server:
        yield server


@pytest.fixture
def elsewhere() -> Iterator[FaultyFhir]:
    """A server on 127.0.0.2, off the default allow-list."""
    with FaultyFhir(host="127.0.0.2") as server:
        yield server


def serve(knowledge, tmp_path, **settings) -> AppServer:
    values = {"fhir_connect_timeout_s": 0.5, "fhir_read_timeout_s": READ_TIMEOUT_S, **settings}
    return AppServer(create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path, **values), knowledge))


def call_with_medication_on_server(knowledge, today, fhir_server: str | None) -> tuple[str, dict]:
    """The case whose draft names the EHR's Medication record, with that Medication left out of the prefetch, so
    the service can only have it by reading it from fhirServer (everything else is prefetched)."""
    (case,) = [c for c in knowledge.cases if c.rule == RULE and c.name == ON_THE_EHR_RECORD]
    service = service_for(knowledge, case)
    body = build_request(knowledge, case, service, today, fhir_server=fhir_server)
    for value in body["prefetch"].values():
        if value.get("resourceType") == "Bundle":
            value["entry"] = [e for e in value["entry"] if e["resource"]["resourceType"] != "Medication"]
    return service.id, body


def rules_of(response: dict) -> set[str]:
    return {r for c in response["cards"] for r in c["extension"][EXTENSION_KEY].get("rules", ())}


def order_notice(response: dict) -> dict:
    (notice,) = [c for c in response["cards"] if "uncheckedOrders" in c["extension"][EXTENSION_KEY]]
    return notice


def medication_reads(server: FaultyFhir) -> list[str]:
    return [p for p in server.seen if "/Medication/" in p]


@pytest.mark.parametrize("fault", ["not-found", "down", "slow", "http-500", "garbage"])
def test_a_failed_read_of_the_drafts_medication_gives_the_notice_and_no_interaction_card(
        knowledge, today, tmp_path, fhir, fault):
    base = f"http://127.0.0.1:{free_port()}/fhir" if fault == "down" else fhir.base(fault)
    service_id, body = call_with_medication_on_server(knowledge, today, base)
    with serve(knowledge, tmp_path) as app:
        status, response = post(f"{app.url}/cds-services/{service_id}", body)
    assert status == 200, response
    assert RULE not in rules_of(response)
    notice = order_notice(response)
    assert notice["indicator"] == "info"
    assert notice["extension"][EXTENSION_KEY]["uncheckedOrders"] == ["draft-0"]
    assert len(notice["summary"]) <= knowledge.max_summary_chars
    if fault != "down":
        assert medication_reads(fhir) == [f"/{fault}/Medication/draft-medication-0"]
    assert not fhir.release.is_set()  # answered within the read timeout, not when the slow server let go


def test_a_read_past_the_time_budget_is_given_up_and_the_order_reported_unchecked(knowledge, today, tmp_path, fhir):
    service_id, body = call_with_medication_on_server(knowledge, today, fhir.base("slow"))
    with serve(knowledge, tmp_path, deadline_s=0.5, fhir_read_timeout_s=10.0) as app:
        started = time.monotonic()
        status, response = post(f"{app.url}/cds-services/{service_id}", body)
        elapsed = time.monotonic() - started
    assert status == 200, response
    assert elapsed < 5.0  # the budget, not the 10 s read timeout, bounded the wait
    assert RULE not in rules_of(response)
    assert order_notice(response)["extension"][EXTENSION_KEY]["uncheckedOrders"] == ["draft-0"]


def test_a_server_off_the_allow_list_is_never_asked_and_the_order_reported_unchecked(
        knowledge, today, tmp_path, elsewhere):
    service_id, body = call_with_medication_on_server(knowledge, today, elsewhere.base("fhir"))
    with serve(knowledge, tmp_path) as app:
        status, response = post(f"{app.url}/cds-services/{service_id}", body)
    assert status == 200, response
    assert RULE not in rules_of(response)
    assert order_notice(response)
    assert elsewhere.seen == []


def test_a_reference_to_another_origin_is_never_read(knowledge, today, tmp_path, fhir, elsewhere):
    service_id, body = call_with_medication_on_server(knowledge, today, fhir.base("fhir"))
    (draft,) = [e["resource"] for e in body["context"]["draftOrders"]["entry"]]
    draft["medicationReference"]["reference"] = f"{elsewhere.base('fhir')}/Medication/draft-medication-0"
    with serve(knowledge, tmp_path) as app:
        status, response = post(f"{app.url}/cds-services/{service_id}", body)
    assert status == 200, response
    assert order_notice(response)
    assert elsewhere.seen == []


def test_without_a_fhir_server_the_order_is_reported_unchecked(knowledge, today, tmp_path):
    service_id, body = call_with_medication_on_server(knowledge, today, None)
    with serve(knowledge, tmp_path) as app:
        status, response = post(f"{app.url}/cds-services/{service_id}", body)
    assert status == 200, response
    assert RULE not in rules_of(response)
    assert order_notice(response)


def test_the_same_call_gives_the_interaction_card_when_the_server_holds_the_medication(
        knowledge, today, tmp_path, fhir_server):
    # the positive control for the tests above: only the server's answer differs
    service_id, body = call_with_medication_on_server(knowledge, today, fhir_server.base_url)
    (case,) = [c for c in knowledge.cases if c.rule == RULE and c.name == ON_THE_EHR_RECORD]
    medication = next(r for r in build_resources(knowledge, case, "case-patient", today)["medication-requests"]
                      if r["resourceType"] == "Medication")
    placed = load_case(fhir_server, {"medication-requests": [medication]})
    (draft,) = [e["resource"] for e in body["context"]["draftOrders"]["entry"]]
    draft["medicationReference"]["reference"] = placed[f"Medication/{medication['id']}"]
    with serve(knowledge, tmp_path) as app:
        status, response = post(f"{app.url}/cds-services/{service_id}", body)
    assert status == 200, response
    assert RULE in rules_of(response)
    assert not [c for c in response["cards"] if "missingData" in c["extension"][EXTENSION_KEY]]


class _Timed(BaseHTTPRequestHandler):
    """Answers every GET 404 after HOLD_S, and records when each request was being served."""

    def do_GET(self):
        started = time.monotonic()
        time.sleep(HOLD_S)
        self.server.served.append((self.path, started, time.monotonic()))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


class TimedFhir(ServedInThread):
    def __enter__(self) -> TimedFhir:
        self._serve(ThreadingHTTPServer(("127.0.0.1", 0), _Timed))
        self._server.daemon_threads = True
        self._server.served = []
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}/fhir"
        return self

    @property
    def served(self) -> list[tuple[str, float, float]]:
        return self._server.served


def test_the_drafts_medication_is_read_while_the_chart_is_fetched(knowledge, today, tmp_path):
    with TimedFhir() as fhir:
        service_id, body = call_with_medication_on_server(knowledge, today, fhir.base)
        del body["prefetch"]  # the chart too must be fetched
        with serve(knowledge, tmp_path, fhir_read_timeout_s=HOLD_S + 2) as app:
            status, response = post(f"{app.url}/cds-services/{service_id}", body)
        served = list(fhir.served)
    assert status == 200, response
    (read,) = [(start, end) for path, start, end in served if "/Medication/" in path]
    searches = [(start, end) for path, start, end in served if "/Medication/" not in path]
    assert searches
    assert any(start < read[1] and read[0] < end for start, end in searches), served
    assert order_notice(response)
