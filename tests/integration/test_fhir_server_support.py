"""FhirServer against a real sekmet-fhir: transactions load, and patient and status searches filter."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.fhir_server import FhirServer

pytestmark = pytest.mark.integration

TEST_CODES = "http://example.org/spasm-cds-test"


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirServer]:
    with FhirServer() as server:
        yield server


def transaction(*resources: dict) -> dict:
    """Wrap resources (each carrying its urn:uuid under "fullUrl") in a POST-everything transaction Bundle."""
    entries = []
    for resource in resources:
        body = {key: value for key, value in resource.items() if key != "fullUrl"}
        request = {"method": "POST", "url": body["resourceType"]}
        entries.append({"fullUrl": resource["fullUrl"], "resource": body, "request": request})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def new_patient() -> dict:
    return {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resourceType": "Patient", "gender": "female"}


def medication_request(patient: dict, status: str) -> dict:
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resourceType": "MedicationRequest",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": TEST_CODES, "code": "med-a"}]},
        "subject": {"reference": patient["fullUrl"]},
    }


def test_observation_search_by_patient_returns_the_loaded_observation(fhir: FhirServer) -> None:
    patient = new_patient()
    observation: dict[str, Any] = {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": TEST_CODES, "code": "lab-a"}]},
        "subject": {"reference": patient["fullUrl"]},
        "effectiveDateTime": "2021-03-01T08:00:00Z",
        "valueQuantity": {"value": 3.2, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
    }

    ids = fhir.load_transaction(transaction(patient, observation))
    patient_id = fhir.patient_id(ids)
    found = fhir.get_json(f"Observation?patient={patient_id}")

    assert ids[patient["fullUrl"]] == f"Patient/{patient_id}"
    assert found["total"] == 1
    (entry,) = found["entry"]
    assert f"Observation/{entry['resource']['id']}" == ids[observation["fullUrl"]]
    assert entry["resource"]["subject"] == {"reference": f"Patient/{patient_id}"}
    assert entry["resource"]["valueQuantity"]["value"] == 3.2
    assert entry["resource"]["valueQuantity"]["code"] == "mmol/L"


def test_status_search_leaves_out_a_stopped_medication_request(fhir: FhirServer) -> None:
    patient = new_patient()
    active, on_hold, stopped = (medication_request(patient, s) for s in ("active", "on-hold", "stopped"))

    ids = fhir.load_transaction(transaction(patient, active, on_hold, stopped))
    found = fhir.get_json(f"MedicationRequest?patient={fhir.patient_id(ids)}&status=active,on-hold")

    returned = {f"MedicationRequest/{entry['resource']['id']}" for entry in found["entry"]}
    assert returned == {ids[active["fullUrl"]], ids[on_hold["fullUrl"]]}
    assert ids[stopped["fullUrl"]] not in returned
