"""Nesting at every depth from 1 to past orjson's limit (1,024), in every place a hook call or feedback body can
nest: never a 5xx. Up to the limit the body parses and is answered on its merits (a deep value where a string
belongs is a 400 naming the field, and a value nested past Python's recursion limit where a step walks or prints it is
a 400 "nested too deeply" (errors.py; it was a 500); past the limit, a 400 saying the body is not valid JSON."""
from __future__ import annotations

import json

import pytest

from tests.support.assertions import assert_operation_outcome
from tests.support.malformed import SERVICE, valid_body

ORJSON_LIMIT = 1024
DEPTHS = [*range(1, ORJSON_LIMIT + 80), 2_000, 10_000, 100_000]
FEEDBACK = SERVICE + "/feedback"
SLOT = '"__slot__"'


def _array(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def _object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def _hook_body(path: tuple[str, ...]) -> str:
    doc = valid_body()
    target = doc
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = "__slot__"
    return json.dumps(doc)


def _feedback_body(field: str) -> str:
    entry = {"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z",
             "overrideReason": {"userComment": "x"}, field: "__slot__"}
    return json.dumps({"feedback": [entry]})


def _in_resource(key: str, resource: dict) -> str:
    doc = valid_body()
    doc["prefetch"][key] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": resource}]}
    return json.dumps(doc)


CONDITION = {"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/p1"},
             "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "__slot__"}]}}
RESULT = {"resourceType": "Observation", "id": "o", "status": "final", "subject": {"reference": "Patient/p1"},
          "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]}, "effectiveDateTime": "2026-01-01",
          "valueQuantity": {"value": 3.1, "unit": "__slot__"}}

PLACES = {
    "hook-whole-body": (SERVICE, SLOT),
    "hook-patient-id": (SERVICE, _hook_body(("context", "patientId"))),
    "hook-hook-instance": (SERVICE, _hook_body(("hookInstance",))),
    "hook-context": (SERVICE, _hook_body(("context",))),
    "hook-extension": (SERVICE, _hook_body(("extension", "x"))),
    "hook-prefetch-resource": (SERVICE, _hook_body(("prefetch", "conditions", "entry"))),
    "hook-unknown-context-field": (SERVICE, _hook_body(("context", "somethingElse"))),
    "hook-condition-code": (SERVICE, _in_resource("conditions", CONDITION)),
    "hook-lab-unit": (SERVICE, _in_resource("labResults", RESULT)),
    "feedback-whole-body": (FEEDBACK, SLOT),
    "feedback-card": (FEEDBACK, _feedback_body("card")),
    "feedback-extension": (FEEDBACK, _feedback_body("extension")),
}


@pytest.mark.parametrize("shape", [_array, _object], ids=["arrays", "objects"])
@pytest.mark.parametrize("place", list(PLACES))
def test_nesting_at_every_depth_past_the_parser_limit_is_never_a_5xx(client, place, shape):
    path, template = PLACES[place]
    answers: dict[int, list[int]] = {}
    for depth in DEPTHS:
        response = client.post(path, data=template.replace(SLOT, shape(depth)), content_type="application/json")
        answers.setdefault(response.status_code, []).append(depth)
        if response.status_code >= 400:
            assert_operation_outcome(response.status_code, response.content_type, response.data, response.status_code)
        if depth > ORJSON_LIMIT:
            assert response.status_code == 400 and b"not valid JSON" in response.data, (depth, response.data)
    assert not [status for status in answers if status >= 500], {s: d[:5] for s, d in answers.items()}
