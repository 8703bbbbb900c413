"""Each rule case end to end over real HTTP: the service under gunicorn, in prefetch mode and in fetch mode,
where the case's resources are loaded into a real sekmet-fhir and the request carries no prefetch."""
from __future__ import annotations

import json
import urllib.request
import uuid

import pytest

from cds_service.case_runner import build_request, build_resources, judge, service_for
from cds_service.knowledge.loader import load_knowledge
from tests.conftest import REPO
from tests.support.fhir_server import free_port

pytestmark = pytest.mark.integration
_KNOWLEDGE = load_knowledge(REPO)


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def transaction_for(resources: dict[str, list[dict]]) -> dict:
    """A transaction Bundle of the case's resources, with urn:uuid references the server rewrites."""
    full_urls = {}
    entries = []
    for kind_resources in resources.values():
        for r in kind_resources:
            full_urls[f"{r['resourceType']}/{r['id']}"] = f"urn:uuid:{uuid.uuid4()}"
    for kind_resources in resources.values():
        for r in kind_resources:
            text = json.dumps(r)
            for ref, full_url in full_urls.items():
                text = text.replace(f'"reference": "{ref}"', f'"reference": "{full_url}"')
            resource = json.loads(text)
            resource.pop("id")
            entries.append({"fullUrl": full_urls[f"{r['resourceType']}/{r['id']}"], "resource": resource,
                            "request": {"method": "POST", "url": r["resourceType"]}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def load_case(fhir_server, resources: dict[str, list[dict]]) -> dict[str, str]:
    """Load the case's resources into the FHIR server; map each case `Type/id` to the `Type/id` it was given."""
    bundle = transaction_for(resources)
    ids = fhir_server.load_transaction(bundle)
    ours = [f"{r['resourceType']}/{r['id']}" for kind_resources in resources.values() for r in kind_resources]
    return {ref: ids[entry["fullUrl"]] for ref, entry in zip(ours, bundle["entry"], strict=True)}


@pytest.mark.parametrize("case", _KNOWLEDGE.cases, ids=lambda c: f"{c.rule}::{c.name}")
def test_case_prefetch_mode_over_http(case, service_server, today):
    service = service_for(_KNOWLEDGE, case)
    body = build_request(_KNOWLEDGE, case, service, today)
    status, response = post(f"{service_server.url}/cds-services/{service.id}", body)
    assert status == 200, response
    result = judge(_KNOWLEDGE, case, response)
    assert result.problem is None, result.problem


@pytest.mark.parametrize("case", _KNOWLEDGE.cases, ids=lambda c: f"{c.rule}::{c.name}")
def test_case_fetch_mode_over_http(case, service_server, fhir_server, today):
    service = service_for(_KNOWLEDGE, case)
    resources = build_resources(_KNOWLEDGE, case, "case-patient", today)
    unavailable = set(case.chart.get("unavailable") or ())
    if unavailable:
        # The EHR sent the other keys but not these, and its FHIR server is down (a closed loopback port):
        # the service must try to fetch them, fail, and treat them as unknown.
        body = build_request(_KNOWLEDGE, case, service, today, fhir_server=f"http://127.0.0.1:{free_port()}/fhir")
        for key in unavailable:
            body["prefetch"].pop(key)
        status, response = post(f"{service_server.url}/cds-services/{service.id}", body)
        assert status == 200, response
        assert judge(_KNOWLEDGE, case, response).problem is None
        return
    placed = load_case(fhir_server, resources)
    patient_id = placed["Patient/case-patient"].split("/", 1)[1]
    body = build_request(_KNOWLEDGE, case, service, today, patient_id=patient_id, mode="fetch",
                         fhir_server=fhir_server.base_url, placed=placed)
    status, response = post(f"{service_server.url}/cds-services/{service.id}", body)
    assert status == 200, response
    result = judge(_KNOWLEDGE, case, response)
    assert result.problem is None, result.problem
    for suggestion in (result.card or {}).get("suggestions", ()):
        for action in suggestion["actions"]:
            if action["type"] == "create":
                assert action["resource"]["subject"]["reference"] == f"Patient/{patient_id}"
