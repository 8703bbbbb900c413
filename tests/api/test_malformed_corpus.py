"""The malformed-request corpus, in process: every request is a 4xx OperationOutcome, never a 5xx; and junk inside
well-formed requests' prefetched resources never gives a 5xx either."""
from __future__ import annotations

import pytest

from tests.support.assertions import assert_operation_outcome
from tests.support.malformed import JUNK_IN_RESOURCES, MALFORMED, SERVICE, junk_request, valid_body


def test_the_corpus_is_large_and_its_base_request_is_valid(client):
    assert len(MALFORMED) >= 200
    response = client.post(SERVICE, json=valid_body())
    assert response.status_code == 200, response.data


@pytest.mark.parametrize("item", MALFORMED, ids=[m.name for m in MALFORMED])
def test_malformed_request_is_a_4xx_operation_outcome(client, item):
    headers = {"Content-Type": item.content_type} if item.content_type else {}
    response = client.open(item.path, method=item.method, data=item.body, headers=headers)
    assert 400 <= response.status_code < 500, (response.status_code, response.data[:300])
    assert_operation_outcome(response.status_code, response.content_type, response.data, response.status_code)


@pytest.fixture(scope="module")
def cramp(knowledge) -> dict:
    concept = knowledge.concepts["muscle-cramp"]
    return {"resourceType": "Condition", "id": "cramp", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": knowledge.systems["icd10cm"][0], "code": concept.codes["icd10cm"][0]}]}}


@pytest.mark.parametrize("junk", JUNK_IN_RESOURCES, ids=[j.name for j in JUNK_IN_RESOURCES])
def test_junk_inside_prefetched_resources_is_never_a_5xx(client, cramp, junk):
    response = client.post(SERVICE, json=junk_request(junk, cramp))
    assert response.status_code < 500, response.data[:300]
    if response.status_code != 200:
        assert_operation_outcome(response.status_code, response.content_type, response.data, response.status_code)


@pytest.mark.parametrize("quantity", [{"code": {"a": 1}}, {"code": ["mmol/L"]}, {"unit": {"a": 1}, "code": None}],
                         ids=["ucum-code-object", "ucum-code-list", "unit-object"])
def test_a_known_result_whose_unit_is_not_a_string_is_never_a_5xx(client, cramp, knowledge, quantity):
    potassium = knowledge.concepts["potassium"]
    result = {"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/p1"},
              "code": {"coding": [{"system": knowledge.systems["loinc"][0], "code": potassium.codes["loinc"][0]}]},
              "effectiveDateTime": "2026-01-01",
              "valueQuantity": {"value": 3.1, "system": knowledge.systems["ucum"][0], **quantity}}
    body = valid_body()
    body["prefetch"]["conditions"]["entry"] = [{"resource": cramp}]
    body["prefetch"]["labResults"] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": result}]}

    response = client.post(SERVICE, json=body)

    assert response.status_code == 200, response.data[:300]


def _json_bodies():
    import orjson
    for item in MALFORMED:
        try:
            body = orjson.loads(item.body)
        except (orjson.JSONDecodeError, TypeError):
            continue
        if isinstance(body, dict):
            yield item.name, body


@pytest.mark.parametrize(("name", "body"), list(_json_bodies()), ids=lambda v: v if isinstance(v, str) else "")
def test_fast_and_reference_schema_validators_agree(name, body):
    """hook_request lets a body through on jsonschema-rs's word alone: it must never pass what python-jsonschema,
    the reference, rejects (nor the other way round, or good calls would pay for the slow path)."""
    from cds_service.schemas import fast_validator, validator

    assert fast_validator("hook-request").is_valid(body) == validator("hook-request").is_valid(body), name


@pytest.mark.parametrize("unit", ["10*99999999.mol/L", "10*999.mol/L", "10^-999.mmol/L", "m" * 5000,
                                  "mmol/L" + " " * 10000, "{" * 300 + "mmol/L"],
                         ids=["huge-power-of-ten", "power-of-ten-overflow", "huge-negative-power", "long-unit",
                              "long-padding", "deep-braces"])
def test_a_pathological_unit_is_never_a_5xx_and_never_hangs(client, cramp, knowledge, unit):
    """A unit that once hung the UCUM parser (10*99999999) or raised a 500 (10*999): the result is present with an
    unknown value. The thread's join bound only guards against a hang; latency is measured in bench/."""
    import threading

    potassium = knowledge.concepts["potassium"]
    result = {"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/p1"},
              "code": {"coding": [{"system": knowledge.systems["loinc"][0], "code": potassium.codes["loinc"][0]}]},
              "effectiveDateTime": "2026-01-01",
              "valueQuantity": {"value": 3.1, "unit": unit, "system": knowledge.systems["ucum"][0], "code": unit}}
    body = valid_body()
    body["prefetch"]["conditions"]["entry"] = [{"resource": cramp}]
    body["prefetch"]["labResults"] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": result}]}
    answers = []
    worker = threading.Thread(target=lambda: answers.append(client.post(SERVICE, json=body)), daemon=True)
    worker.start()
    worker.join(timeout=30)

    assert answers, "the request did not come back: the unit hung the service"
    assert answers[0].status_code == 200, answers[0].data[:300]
