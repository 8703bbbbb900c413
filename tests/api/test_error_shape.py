"""Every way a call can fail that we know of gives the one error shape: a FHIR OperationOutcome, never HTML,
never a traceback, never a 5xx. FHIR faults come from small real HTTP servers on loopback."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.assertions import assert_operation_outcome
from tests.support.fhir_server import free_port

SERVICE = "/cds-services/spasm-cramps-patient-view"


def body(**changes) -> dict:
    doc = {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
           "context": {"userId": "Practitioner/1", "patientId": "p1"}}
    doc.update(changes)
    return doc


class _FaultyFhir(BaseHTTPRequestHandler):
    """Answers every GET with the fault named by the server's `fault` attribute."""

    def do_GET(self):
        fault = self.server.fault
        if fault == "http-500":
            payload, status, kind = b'{"resourceType":"OperationOutcome"}', 500, "application/fhir+json"
        elif fault == "garbage":
            payload, status, kind = b"<html>not fhir</html>", 200, "text/html"
        else:  # "redirect" to a host that must never be contacted
            payload, status, kind = b"", 302, "text/plain"
        self.send_response(status)
        if fault == "redirect":
            self.send_header("Location", "http://192.0.2.1/fhir/Condition")
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture(params=["http-500", "garbage", "redirect"])
def faulty_fhir(request):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FaultyFhir)
    server.fault = request.param
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/fhir"
    server.shutdown()
    server.server_close()


FAILURES = [
    ("invalid-json", "POST", SERVICE, b"{not json", "application/json", 400),
    ("json-not-an-object", "POST", SERVICE, b"[1, 2]", "application/json", 400),
    ("missing-context", "POST", SERVICE, json.dumps({"hook": "patient-view", "hookInstance": "x"}).encode(),
     "application/json", 400),
    ("missing-patient-id", "POST", SERVICE, json.dumps(body(context={"userId": "Practitioner/1"})).encode(),
     "application/json", 400),
    ("wrong-hook-for-service", "POST", SERVICE, json.dumps(body(hook="order-sign")).encode(),
     "application/json", 400),
    ("token-without-fhir-server", "POST", SERVICE, json.dumps(body(fhirAuthorization={
        "access_token": "t", "token_type": "Bearer", "expires_in": 60, "scope": "s", "subject": "c"})).encode(),
     "application/json", 400),
    ("prefetch-value-not-a-resource", "POST", SERVICE, json.dumps(body(prefetch={"conditions": 7})).encode(),
     "application/json", 400),
    ("unknown-service", "POST", "/cds-services/no-such-service", json.dumps(body()).encode(), "application/json", 404),
    ("unknown-path", "GET", "/nowhere", b"", None, 404),
    ("get-on-a-service", "GET", SERVICE, b"", None, 405),
    ("wrong-content-type", "POST", SERVICE, json.dumps(body()).encode(), "text/plain", 415),
    ("no-content-type", "POST", SERVICE, json.dumps(body()).encode(), None, 415),
    ("body-too-large", "POST", SERVICE, b'{"x": "' + b"a" * 1_100_000 + b'"}', "application/json", 413),
    ("required-data-absent-and-no-fhir-server", "POST", SERVICE, json.dumps(body()).encode(), "application/json", 412),
    ("required-data-operation-outcome-and-no-fhir-server", "POST", SERVICE, json.dumps(body(prefetch={
        "conditions": {"resourceType": "OperationOutcome", "issue": []}})).encode(), "application/json", 412),
    ("feedback-invalid-json", "POST", f"{SERVICE}/feedback", b"{not json", "application/json", 400),
    ("feedback-not-valid", "POST", f"{SERVICE}/feedback", json.dumps({"feedback": [{"card": "c"}]}).encode(),
     "application/json", 400),
    ("feedback-unknown-service", "POST", "/cds-services/no-such-service/feedback", json.dumps({"feedback": [
        {"card": "c", "outcome": "overridden", "outcomeTimestamp": "2027-01-15T08:00:00Z"}]}).encode(),
     "application/json", 404),
    ("feedback-get", "GET", f"{SERVICE}/feedback", b"", None, 405),
    ("feedback-wrong-content-type", "POST", f"{SERVICE}/feedback", b"{}", "text/plain", 415),
]


@pytest.mark.parametrize(("name", "method", "path", "data", "content_type", "status"), FAILURES,
                         ids=[f[0] for f in FAILURES])
def test_failure_is_an_operation_outcome(client, name, method, path, data, content_type, status):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.open(path, method=method, data=data, headers=headers)
    assert_operation_outcome(response.status_code, response.headers["Content-Type"], response.data, status)


def test_fhir_server_down_is_412(client):
    closed = f"http://127.0.0.1:{free_port()}/fhir"
    response = client.post(SERVICE, json=body(fhirServer=closed))
    doc = assert_operation_outcome(response.status_code, response.headers["Content-Type"], response.data, 412)
    assert "conditions" in doc["issue"][0]["diagnostics"]


def test_fhir_fault_is_412_never_5xx(client, faulty_fhir):
    response = client.post(SERVICE, json=body(fhirServer=faulty_fhir))
    assert_operation_outcome(response.status_code, response.headers["Content-Type"], response.data, 412)


def test_optional_data_fault_degrades_instead_of_failing(client, knowledge, faulty_fhir):
    """Conditions prefetched (with a cramp), everything else left to a faulty FHIR server: 200, and the cards
    that need the missing data are replaced by a notice that says so."""
    concept = knowledge.concepts["muscle-cramp"]
    condition = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
                 "code": {"coding": [{"system": knowledge.systems["icd10cm"][0], "code": concept.codes["icd10cm"][0]}]}}
    prefetch = {"conditions": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": condition}]}}
    response = client.post(SERVICE, json=body(fhirServer=faulty_fhir, prefetch=prefetch))
    assert response.status_code == 200
    cards = response.get_json()["cards"]
    assert len(cards) == 1
    notice = cards[0]
    assert notice["indicator"] == "info"
    assert "could not be retrieved" in notice["summary"]
    assert "lab results" in notice["summary"]


def test_diagnostics_never_echo_request_values(client):
    secret_patient = "PATIENT-SECRET-123"
    response = client.post(SERVICE, json=body(context={"userId": "Practitioner/1", "patientId": secret_patient,
                                                       "extra": {"nested": "x"}}, fhirServer="not a url"))
    assert response.status_code == 400
    assert secret_patient.encode() not in response.data and b"not a url" not in response.data
