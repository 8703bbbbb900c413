"""Ids and other pattern-checked strings get one verdict: python-jsonschema (whose `re.search` lets `$` match
before a final newline) and jsonschema-rs (ECMA-262: `$` is the end) agree on every value, so "p1\\n" is refused by
both, and the service answers it 400 whichever validator sees it first."""
from __future__ import annotations

import copy
import re

import jsonschema_rs
import pytest

from cds_service.bundles import InputError
from cds_service.demo import order_from_rxnorm
from cds_service.schemas import python_pattern, schema, validator
from tests.support.assertions import assert_operation_outcome
from tests.support.malformed import SERVICE, valid_body

VARIANTS = {"as-is": "{}", "trailing-newline": "{}\n", "trailing-crlf": "{}\r\n", "leading-newline": "\n{}",
            "inner-newline": "{}\n{}", "trailing-nul": "{}\x00", "trailing-tab": "{}\t", "trailing-nbsp": "{}\u00a0",
            "line-separator": "{}\u2028", "trailing-space": "{} ", "arabic-digit": "{}\u0663",
            "full-width-digit": "{}\uff11", "combining-mark": "{}\u0301", "zero-width-space": "{}\u200b"}
HOOK_FIELDS = {("hookInstance",): "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", ("context", "patientId"): "p1",
               ("context", "userId"): "Practitioner/1", ("context", "encounterId"): "e1",
               ("fhirServer",): "http://127.0.0.1:9/fhir"}
FEEDBACK_FIELDS = {("card",): "c-1", ("outcomeTimestamp",): "2027-01-15T08:00:00Z"}


def _hook_body(path: tuple[str, ...], value: str) -> dict:
    doc = valid_body()
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


def _feedback_body(path: tuple[str, ...], value: str) -> dict:
    entry = {"card": "c-1", "outcome": "overridden", "outcomeTimestamp": "2027-01-15T08:00:00Z",
             "overrideReason": {"userComment": "x"}}
    entry[path[0]] = value
    return {"feedback": [entry]}


HOOK_CASES = [(path, name, variant.format(value, value)) for path, value in HOOK_FIELDS.items()
              for name, variant in VARIANTS.items()]
FEEDBACK_CASES = [(path, name, variant.format(value, value)) for path, value in FEEDBACK_FIELDS.items()
                  for name, variant in VARIANTS.items()]


@pytest.mark.parametrize(("path", "name", "value"), HOOK_CASES, ids=[f"{'.'.join(p)}-{n}" for p, n, _ in HOOK_CASES])
def test_both_hook_request_validators_agree_and_a_line_break_in_an_id_is_a_400(client, path, name, value):
    body = _hook_body(path, value)
    fast = jsonschema_rs.validator_for(schema("hook-request")).is_valid(body)

    assert fast == validator("hook-request").is_valid(body)
    response = client.post(SERVICE, json=body)
    if name == "as-is":
        assert fast and response.status_code == 200
    if any(c in value for c in "\n\r\x00\t"):
        assert not fast
        doc = assert_operation_outcome(response.status_code, response.content_type, response.data, 400)
        assert doc["issue"][0]["diagnostics"].startswith("/".join(path))
    if not fast:
        assert response.status_code == 400, response.data


@pytest.mark.parametrize(("path", "name", "value"), FEEDBACK_CASES,
                         ids=[f"{'.'.join(p)}-{n}" for p, n, _ in FEEDBACK_CASES])
def test_both_feedback_validators_agree_and_a_line_break_in_an_id_is_a_400(client, path, name, value):
    body = _feedback_body(path, value)
    verdict = validator("feedback").is_valid(body)

    assert verdict == jsonschema_rs.validator_for(schema("feedback")).is_valid(body)
    response = client.post(SERVICE + "/feedback", json=body)
    assert response.status_code == (200 if verdict else 400), response.data
    if any(c in value for c in "\n\r\x00\t"):
        assert response.status_code == 400


@pytest.mark.parametrize(("ecma", "python"), [
    ("^[a-z]+$", "^[a-z]+\\Z"), ("^a$|^b$", "^a\\Z|^b\\Z"), ("^[$]$", "^[$]\\Z"), ("^\\$$", "^\\$\\Z"),
    ("^[\\]$]+$", "^[\\]$]+\\Z"), ("^(a|b)$", "^(a|b)\\Z"), ("no-anchor", "no-anchor"),
])
def test_a_schema_pattern_is_read_by_python_as_ecma_262_reads_it(ecma, python):
    assert python_pattern(ecma) == python
    assert re.compile(python_pattern(ecma))


def test_every_pattern_in_the_request_schemas_means_the_same_to_both_validators():
    """The translation leaves no `$` that re could match before a newline."""
    def patterns(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "pattern":
                    yield value
                yield from patterns(value)
        elif isinstance(node, list):
            for value in node:
                yield from patterns(value)

    for name in ("hook-request", "feedback"):
        python_schema = validator(name).schema
        for ecma, python in zip(patterns(copy.deepcopy(schema(name))), patterns(python_schema), strict=True):
            assert python == python_pattern(ecma) and "$" not in python.replace("\\$", "")


@pytest.mark.parametrize("code", ["12\n3", "\u0661\u0662\u0663", "\uff11\uff12"],
                         ids=["inner-newline", "arabic-indic-digits", "full-width-digits"])
def test_an_rxnorm_code_on_the_try_it_page_is_ascii_digits_only(code):
    with pytest.raises(InputError):
        order_from_rxnorm(code)
