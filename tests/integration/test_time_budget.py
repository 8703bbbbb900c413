"""The time budget: FHIR fetches still running when it is spent are given up; the call answers with the cards its
data allows and says what was missing, instead of waiting for a slow server."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cds_service import create_app
from cds_service.settings import Settings
from tests.conftest import REPO

pytestmark = pytest.mark.integration
SLOW_S = 2.0


class _SlowFhir(BaseHTTPRequestHandler):
    """Answers every search with an empty searchset, but only after SLOW_S seconds."""

    def do_GET(self):
        time.sleep(self.server.delay_s)
        body = json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_fhir():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowFhir)
    server.daemon_threads = True
    server.delay_s = SLOW_S
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def cramp_call(knowledge, fhir_base: str) -> dict:
    # cramps, and hypothyroidism: a reason for the electrolyte work-up
    conditions = [{"resourceType": "Condition", "id": f"c{i}", "subject": {"reference": "Patient/p1"},
                   "code": {"coding": [{"system": knowledge.systems["icd10cm"][0],
                                        "code": knowledge.concepts[cid].codes["icd10cm"][0]}]}}
                  for i, cid in enumerate(("muscle-cramp", "hypothyroidism"))]
    return {"hook": "patient-view", "hookInstance": "0d3c8c3e-2b7e-4a55-9f5b-5d1f6a1e9c01", "fhirServer": fhir_base,
            "context": {"userId": "Practitioner/u1", "patientId": "p1"},
            "prefetch": {"conditions": {"resourceType": "Bundle", "type": "searchset",
                                        "entry": [{"resource": c} for c in conditions]}}}


@pytest.mark.parametrize(("deadline_s", "expect_notice"), [(0.5, True), (SLOW_S + 3, False)],
                         ids=["budget-spent-before-the-server-answers", "budget-longer-than-the-server"])
def test_fetches_past_the_budget_are_unknown_and_the_card_says_so(knowledge, slow_fhir, deadline_s, expect_notice):
    settings = Settings(knowledge_dir=REPO, deadline_s=deadline_s, fhir_read_timeout_s=SLOW_S + 5)
    client = create_app(settings, knowledge).test_client()
    base = f"http://127.0.0.1:{slow_fhir.server_address[1]}/fhir"
    response = client.post("/cds-services/spasm-cramps-patient-view", json=cramp_call(knowledge, base))
    assert response.status_code == 200
    notices = [c for c in response.get_json()["cards"] if "missingData" in c["extension"]["org.spasm-cds"]]
    assert bool(notices) is expect_notice
    if expect_notice:
        assert "lab results" in notices[0]["summary"]
        # without labs the work-up card cannot claim that tests are missing
        rules = {r for c in response.get_json()["cards"] for r in c["extension"]["org.spasm-cds"].get("rules", ())}
        assert "missing-electrolytes" not in rules
    else:
        rules = {r for c in response.get_json()["cards"] for r in c["extension"]["org.spasm-cds"].get("rules", ())}
        assert "missing-electrolytes" in rules
