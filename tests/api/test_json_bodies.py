"""Bodies are parsed with orjson (cds_service/api/jsonio.py): what the standard library's json would let through
but JSON forbids is a 400 OperationOutcome, and answers are JSON with the right media type."""
from __future__ import annotations

import pytest

from tests.support.assertions import assert_operation_outcome

SERVICE = "/cds-services/spasm-cramps-patient-view"


@pytest.mark.parametrize("raw", [
    b'{"hook": "patient-view", "hookInstance": NaN}',
    b'{"hook": "patient-view", "hookInstance": Infinity}',
    b"[" * 5000 + b"]" * 5000,
    b'{"hook": "patient-view", "hookInstance": "\\ud800"}',
    '{"hook": "patient-view", "hookInstance": "é"}'.encode("latin-1"),
    b'{"hook": "patient-view"',
], ids=["nan", "infinity", "deep-nesting", "lone-surrogate", "not-utf-8", "truncated"])
def test_what_json_forbids_is_a_400(client, raw):
    answer = client.post(SERVICE, data=raw, content_type="application/json")
    doc = assert_operation_outcome(answer.status_code, answer.content_type, answer.data, 400)
    assert "not valid JSON" in doc["issue"][0]["diagnostics"]


def test_answers_are_json_and_keep_their_key_order(client):
    answer = client.get("/cds-services")
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    service = answer.get_json()["services"][0]
    assert list(service)[:2] == ["hook", "id"]
