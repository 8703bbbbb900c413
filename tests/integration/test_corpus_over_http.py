"""The malformed-request corpus sent to the real service under gunicorn: every answer a 4xx OperationOutcome, none
a 5xx (gunicorn's own HTTP parsing and the workers' deeper stacks included)."""
from __future__ import annotations

import http.client
from collections import Counter

import pytest

from tests.support.assertions import assert_operation_outcome
from tests.support.malformed import MALFORMED

pytestmark = pytest.mark.integration


def test_every_malformed_request_is_a_4xx_operation_outcome_over_http(service_server):
    statuses: Counter[int] = Counter()
    problems = []
    for item in MALFORMED:
        connection = http.client.HTTPConnection("127.0.0.1", service_server.port, timeout=30)
        try:
            headers = {"Content-Type": item.content_type} if item.content_type else {}
            connection.request(item.method, item.path, body=item.body, headers=headers)
            response = connection.getresponse()
            status, content_type, data = response.status, response.getheader("Content-Type") or "", response.read()
        finally:
            connection.close()
        statuses[status] += 1
        try:
            assert 400 <= status < 500
            assert_operation_outcome(status, content_type, data, status)
        except AssertionError:
            problems.append(f"{item.name}: HTTP {status} {data[:200]!r}")
    print(f"\nmalformed corpus over HTTP: {len(MALFORMED)} requests, statuses {dict(sorted(statuses.items()))}")
    assert problems == []
    assert not [s for s in statuses if s >= 500]
