"""The order-select body the real CDS Hooks Sandbox sent (shared capture; its draft has no medication code),
replayed against the service under gunicorn with Alfreda Wyman loaded into a real sekmet-fhir: 200, no error."""
from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from cds_service.schemas import validator
from tests.conftest import SHARED
from tests.integration.test_sandbox_capture import load_alfreda
from tests.support.cds_schema import schema_errors
from tests.support.fhir_server import FhirServer, http_request

CAPTURE = SHARED / "cds-sandbox-captures" / "order-select-request.json"
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not CAPTURE.is_file(), reason=f"no sandbox capture in {SHARED}")]


def captured() -> dict[str, Any]:
    return copy.deepcopy(json.loads(CAPTURE.read_text(encoding="utf-8")))


def test_captured_order_select_request_is_valid() -> None:
    body = captured()["body"]
    assert schema_errors("CdsRequest", body) == []
    assert [e.message for e in validator("hook-request").iter_errors(body)] == []
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    assert "medicationCodeableConcept" not in draft  # the Sandbox bug the service must survive


@pytest.mark.parametrize("service_id", ["spasm-order-select"])
def test_replayed_order_select_with_an_uncoded_draft_answers_200_without_cards(
        service_id: str, fhir_server: FhirServer, service_server: Any) -> None:
    patient_id = load_alfreda(fhir_server)
    capture = captured()
    body = capture["body"]
    body["fhirServer"] = fhir_server.base_url
    body["context"]["patientId"] = patient_id
    status, raw = http_request("POST", f"{service_server.url}/cds-services/{service_id}", json.dumps(body).encode(),
                               dict(capture["request_headers"]))
    response = json.loads(raw)
    assert status == 200, response
    assert schema_errors("CdsResponse", response) == []
    assert response["cards"] == []
    assert "a draft order has no medication code" in service_server.log_text()


def test_order_select_request_to_the_patient_view_service_is_400(client) -> None:
    response = client.post("/cds-services/spasm-cramps-patient-view", json=captured()["body"])
    assert response.status_code == 400
    assert response.get_json()["resourceType"] == "OperationOutcome"
