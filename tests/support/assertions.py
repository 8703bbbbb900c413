"""The one check of the error shape: a FHIR OperationOutcome with an issue code, never HTML or a traceback."""
from __future__ import annotations

import json


def assert_operation_outcome(status: int, content_type: str, body: bytes, expected_status: int) -> dict:
    """Assert an error response has the expected status and the one error shape; return the parsed body."""
    assert status == expected_status, body[:500]
    if expected_status == 401:
        assert body == b""
        return {}
    assert content_type.split(";")[0] in ("application/fhir+json", "application/json"), content_type
    doc = json.loads(body)
    assert doc["resourceType"] == "OperationOutcome"
    issue = doc["issue"][0]
    assert issue["severity"] == "error"
    assert issue["code"] and issue["diagnostics"]
    assert "Traceback" not in issue["diagnostics"] and "<html" not in body.decode().lower()
    return doc
