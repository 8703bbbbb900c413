"""The patient-view body the real CDS Hooks Sandbox sent (shared capture), replayed against the service under
gunicorn with Alfreda Wyman's Synthea bundle loaded into a real sekmet-fhir: the service fetches what it needs."""
from __future__ import annotations

import copy
import json
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest

import tests.conftest
from cds_service.knowledge.model import Knowledge
from cds_service.render.cards import EXTENSION_KEY
from cds_service.schemas import validator
from tests.support.cds_schema import schema_errors
from tests.support.fhir_server import FhirServer, http_request
from tests.support.synthea import cramp_condition, ordered_code

SHARED = Path(tests.conftest.SHARED)
CAPTURE = SHARED / "cds-sandbox-captures" / "patient-view-request.json"
ALFREDA = sorted((SHARED / "synthea" / "bundles").glob("Alfreda_Wyman_*.json"))
SERVICE_ID = "spasm-cramps-patient-view"
WORKUP_RULE = "missing-electrolytes"

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not CAPTURE.is_file() or len(ALFREDA) != 1,
                                 reason=f"the sandbox capture or Alfreda Wyman's bundle is not in {SHARED}")]



def captured_body() -> dict[str, Any]:
    """A fresh copy of the request body the sandbox sent."""
    return copy.deepcopy(json.loads(CAPTURE.read_text(encoding="utf-8"))["body"])


def captured_headers() -> dict[str, str]:
    """The request headers the sandbox sent (its JWT was not kept in the capture)."""
    return dict(json.loads(CAPTURE.read_text(encoding="utf-8"))["request_headers"])


def load_alfreda(fhir_server: FhirServer) -> str:
    """Load a fresh copy of Alfreda Wyman's bundle; return her new Patient id."""
    bundle = json.loads(ALFREDA[0].read_text(encoding="utf-8"))
    return FhirServer.patient_id(fhir_server.load_transaction(bundle))


def last_result_day(knowledge: Knowledge, lab_concept: str) -> str:
    """The day (YYYY-MM-DD) of Alfreda Wyman's newest Observation coded with one of the lab concept's LOINC codes."""
    codes = set(knowledge.concepts[lab_concept].codes["loinc"])
    bundle = json.loads(ALFREDA[0].read_text(encoding="utf-8"))
    days = [e["resource"]["effectiveDateTime"][:10] for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Observation"
            and any(c.get("code") in codes for c in e["resource"]["code"].get("coding", ()))]
    return max(days)


def add_cramp(fhir_server: FhirServer, knowledge: Knowledge, patient_id: str, recorded: date) -> str:
    """POST a transaction with one active muscle-cramp Condition for the patient; return its Condition/id."""
    full_url = f"urn:uuid:{uuid.uuid4()}"
    condition = cramp_condition(knowledge, patient_id, recorded)
    condition.pop("id")
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"fullUrl": full_url, "resource": condition,
                         "request": {"method": "POST", "url": "Condition"}}]}
    return fhir_server.load_transaction(bundle)[full_url]


def replay(service_url: str, fhir_base: str, patient_id: str) -> tuple[int, dict[str, Any]]:
    """Send the captured body with fhirServer and context.patientId swapped in; everything else as captured."""
    body = captured_body()
    body["fhirServer"] = fhir_base
    body["context"]["patientId"] = patient_id
    status, raw = http_request("POST", f"{service_url}/cds-services/{SERVICE_ID}", json.dumps(body).encode(),
                               captured_headers())
    return status, json.loads(raw) if raw else {}


def test_captured_sandbox_request_is_a_valid_cds_request() -> None:
    body = captured_body()

    assert schema_errors("CdsRequest", body) == []
    assert [e.message for e in validator("hook-request").iter_errors(body)] == []
    # The capture's prefetch keys are the sandbox demo service's, none of ours: the replay is fetch mode.
    assert body["hook"] == "patient-view" and body["prefetch"]


def test_replayed_sandbox_request_for_alfreda_without_a_cramp_gets_no_cards(fhir_server: FhirServer,
                                                                            service_server: Any) -> None:
    patient_id = load_alfreda(fhir_server)

    status, response = replay(service_server.url, fhir_server.base_url, patient_id)

    assert status == 200, response
    assert schema_errors("CdsResponse", response) == []
    assert response["cards"] == []


def test_replayed_sandbox_request_for_alfreda_with_a_cramp_offers_the_electrolyte_work_up(
        fhir_server: FhirServer, service_server: Any, knowledge: Knowledge, today: date) -> None:
    patient_id = load_alfreda(fhir_server)
    condition = add_cramp(fhir_server, knowledge, patient_id, today)

    status, response = replay(service_server.url, fhir_server.base_url, patient_id)

    assert status == 200, response
    assert schema_errors("CdsResponse", response) == []
    assert fhir_server.get_json(condition)["subject"]["reference"] == f"Patient/{patient_id}"
    (card,) = [c for c in response["cards"] if c.get("extension", {}).get(EXTENSION_KEY, {}).get("rules", [])
                if WORKUP_RULE in c["extension"][EXTENSION_KEY]["rules"]]
    requests = [ServiceRequest.model_validate(action["resource"])
                for suggestion in card["suggestions"] for action in suggestion["actions"]]
    assert requests and all(r.subject.reference == f"Patient/{patient_id}" for r in requests)
    # Her last results are from 2020, more than a year before any day this test runs: every work-up lab is missing.
    missing = next(c for c in knowledge.rules[WORKUP_RULE].include if c.kind == "missing-lab").concepts
    assert [ordered_code(r) for r in requests] == [knowledge.concepts[c].lab_spec.order_loinc for c in missing]
    # ... yet the service did fetch her labs from the FHIR server: the card names the day of her last potassium.
    assert f"(last {last_result_day(knowledge, 'potassium')})" in card["detail"]
