"""PHI in logs: every rule case (prefetch mode, and a sample in fetch mode), a few Synthea patients, and failing calls
are sent to the real service logging at INFO; no patient name, patient or user id, or lab value appears in anything
it logged."""
from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cds_service.case_runner import build_request, build_resources, service_for
from tests.integration.test_http_cases import post, transaction_for
from tests.support.synthea import BUNDLE_DIR, all_prefetched, cramp_condition, prefetch_request, synthea_chart

pytestmark = pytest.mark.integration
SERVICE_ID = "spasm-cramps-patient-view"
SYNTHEA_PATIENTS = 4
FETCH_MODE_EVERY = 5  # fetch mode exercises the same code paths whatever the case, so a sample of cases is enough


def marked(value: Any, name: str) -> Any:
    """A copy in which every reference to a Patient carries the patient's name as display (as EHRs often send), and
    every Quantity value gets a distinctive fraction, so that a leaked value cannot pass for a count."""
    if isinstance(value, dict):
        out = {k: marked(v, name) for k, v in value.items()}
        if isinstance(out.get("reference"), str) and out["reference"].startswith("Patient/"):
            out["display"] = name
        quantity = out.get("valueQuantity")
        if isinstance(quantity, dict) and isinstance(quantity.get("value"), (int, float)):
            quantity["value"] = round(quantity["value"] + 0.0137, 4)
        return out
    if isinstance(value, list):
        return [marked(v, name) for v in value]
    return value


def lab_values(resources: Iterator[dict[str, Any]]) -> set[str]:
    """The Observations' values as they would be printed (all have a fraction once marked)."""
    out = set()
    for r in resources:
        value = (r.get("valueQuantity") or {}).get("value") if r.get("resourceType") == "Observation" else None
        if isinstance(value, float):
            out.update({str(value), f"{value:g}"})
    return out


def resources_of(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for value in (body.get("prefetch") or {}).values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            yield from (e["resource"] for e in value.get("entry") or ())
        elif isinstance(value, dict):
            yield value


def logged_messages(text: str) -> list[str]:
    """The message (and any traceback) of every JSON log line the service wrote."""
    out = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "message" in entry:
            out.append(entry["message"] + "\n" + entry.get("exception", ""))
    return out


def found_in(messages: list[str], secrets: set[str]) -> list[str]:
    hits = []
    for secret in secrets:
        pattern = re.compile(r"(?<![\w.])" + re.escape(secret) + r"(?![\w]|\.\d)")
        hits += [f"{secret!r} in {m[:200]!r}" for m in messages if pattern.search(m)]
    return hits


def test_no_name_id_or_value_is_logged_at_info(service_server, fhir_server, knowledge, today):
    start = len(service_server.log_text())
    secrets: set[str] = set()
    sent = 0
    for i, case in enumerate(knowledge.cases):
        service = service_for(knowledge, case)
        patient_id, user_id = f"pt-{uuid.uuid4().hex[:16]}", f"usr-{uuid.uuid4().hex[:16]}"
        name = f"Quenby Zarathustra{i}"
        body = marked(build_request(knowledge, case, service, today, patient_id=patient_id), name)
        body["context"]["userId"] = f"Practitioner/{user_id}"
        secrets |= {patient_id, user_id, name, "Zarathustra"} | lab_values(resources_of(body))
        status, _ = post(f"{service_server.url}/cds-services/{service.id}", body)
        assert status == 200
        sent += 1
        if i % FETCH_MODE_EVERY:
            continue
        # fetch mode: the same chart served by a real FHIR server, so the service's own queries run too
        resources = build_resources(knowledge, case, "case-patient", today)
        ids = fhir_server.load_transaction(transaction_for(marked(resources, name)))
        served_id = next(v for v in ids.values() if v.startswith("Patient/")).split("/", 1)[1]
        fetch_body = build_request(knowledge, case, service, today, patient_id=served_id, mode="fetch",
                                   fhir_server=fhir_server.base_url)
        secrets.add(served_id)
        status, _ = post(f"{service_server.url}/cds-services/{service.id}", fetch_body)
        assert status == 200
        sent += 1

    service = knowledge.services[SERVICE_ID]
    for path in sorted(BUNDLE_DIR.glob("*.json"))[:SYNTHEA_PATIENTS]:
        chart = synthea_chart(path.name)
        patient = chart.resources["patient"][0]
        given, family = patient["name"][0]["given"][0], patient["name"][0]["family"]
        extra = [cramp_condition(knowledge, chart.patient_id, chart.last_encounter or today)]
        body = marked(prefetch_request(chart, service, extra=extra), f"{given} {family}")
        secrets |= {chart.patient_id, given, family} | lab_values(all_prefetched(body))
        status, _ = post(f"{service_server.url}/cds-services/{SERVICE_ID}", body)
        assert status == 200
        sent += 1

    failing = copy.deepcopy(body)
    failing["context"]["patientId"] = "Quenby Zarathustra"  # not a valid id: a 400 that must not echo it
    status, _ = post(f"{service_server.url}/cds-services/{SERVICE_ID}", failing)
    assert status == 400
    unfetchable = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
                   "context": {"userId": "Practitioner/usr-unfetchable", "patientId": "pt-unfetchable-412"},
                   "fhirServer": "http://127.0.0.2:9/fhir"}
    secrets |= {"usr-unfetchable", "pt-unfetchable-412"}
    status, _ = post(f"{service_server.url}/cds-services/{SERVICE_ID}", unfetchable)
    assert status == 412

    messages = logged_messages(service_server.log_text()[start:])
    assert len(messages) >= sent, "the service should log a line per call at INFO"
    assert found_in(messages, secrets) == []


def test_the_check_would_see_a_leak():
    messages = ["service x: 1 card(s) for pt-abc", "K 3.1 mmol/L", "gunicorn 23.0.0", "rule b12 checked"]
    assert sorted(found_in(messages, {"pt-abc", "3.1", "3.0", "12"})) == [
        "'3.1' in 'K 3.1 mmol/L'", "'pt-abc' in 'service x: 1 card(s) for pt-abc'"]
