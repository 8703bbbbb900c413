"""Under gunicorn with 2 workers, /metrics adds up what every worker counted (prometheus-client multiprocess)."""
from __future__ import annotations

import json

import pytest

from tests.api.test_ops import metric
from tests.support.fhir_server import http_request

pytestmark = pytest.mark.integration


def test_metrics_add_up_across_workers(service_server):
    base = service_server.url
    before = metric(http_request("GET", f"{base}/metrics")[1].decode(), "spasm_cds_requests_total",
                    endpoint="discovery.list_services", status="200")
    for _ in range(40):
        status, body = http_request("GET", f"{base}/cds-services")
        assert status == 200 and json.loads(body)["services"]
    text = http_request("GET", f"{base}/metrics")[1].decode()
    after = metric(text, "spasm_cds_requests_total", endpoint="discovery.list_services", status="200")
    assert after - before == 40
    assert 'pid=' not in text  # aggregated, not per worker
