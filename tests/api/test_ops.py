"""Operations endpoints: health, readiness, and Prometheus metrics that count requests and card findings."""
from __future__ import annotations

import re

from cds_service.case_runner import build_request, service_for


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m and ",".join(sorted(m.group(1).split(","))) == wanted:
            total += float(m.group(2))
    return total


def test_healthz_and_readyz_answer_ok(client, knowledge):
    assert client.get("/healthz").get_json() == {"status": "ok", "rules": len(knowledge.rules)}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["checks"]["knowledge"] is True


def test_readyz_is_503_when_a_check_fails(app):
    app.extensions["spasm_cds"].readiness_checks["broken"] = lambda: 1 / 0
    try:
        response = app.test_client().get("/readyz")
        assert response.status_code == 503 and response.get_json()["checks"]["broken"] is False
    finally:
        del app.extensions["spasm_cds"].readiness_checks["broken"]


def test_metrics_count_requests_by_service_and_status_and_findings_by_rule(client, knowledge, today):
    case = next(c for c in knowledge.cases if c.expect == "card" and c.hook == "patient-view")
    service = service_for(knowledge, case)
    before = client.get("/metrics").data.decode()
    for _ in range(3):
        body = build_request(knowledge, case, service, today)
        assert client.post(f"/cds-services/{service.id}", json=body).status_code == 200
    client.post("/cds-services/no-such-service", json={})
    after = client.get("/metrics").data.decode()
    assert metric(after, "spasm_cds_requests_total", endpoint=service.id, status="200") - \
        metric(before, "spasm_cds_requests_total", endpoint=service.id, status="200") == 3
    assert metric(after, "spasm_cds_requests_total", endpoint="unknown-service", status="404") >= 1
    rule = knowledge.rules[case.rule]
    grew = [ind for ind in ("info", "warning", "critical")
            if metric(after, "spasm_cds_cards_total", rule=rule.id, indicator=ind)
            - metric(before, "spasm_cds_cards_total", rule=rule.id, indicator=ind) == 3]
    assert grew, "the case's rule was not counted three times"
    assert "spasm_cds_request_seconds_bucket" in after


def test_metrics_count_unread_lab_units_by_lab_only_never_by_unit(client, knowledge, today):
    case = next(c for c in knowledge.cases if c.name == "potassium-in-a-nonsense-unit-magnesium-calcium-recent")
    (unit,) = {lab["unit"] for lab in case.chart["labs"]
               if lab["loinc"] in knowledge.concepts["potassium"].codes["loinc"]}
    service = service_for(knowledge, case)
    before = client.get("/metrics").data.decode()
    for _ in range(2):
        body = build_request(knowledge, case, service, today)
        assert client.post(f"/cds-services/{service.id}", json=body).status_code == 200
    after = client.get("/metrics").data.decode()
    assert metric(after, "spasm_cds_lab_units_unread_total", lab="potassium") - \
        metric(before, "spasm_cds_lab_units_unread_total", lab="potassium") == 2
    unread_lines = [line for line in after.splitlines() if line.startswith("spasm_cds_lab_units_unread_total{")]
    assert unread_lines and all(re.fullmatch(r'spasm_cds_lab_units_unread_total\{lab="[a-z0-9-]+"\} \S+', line)
                                for line in unread_lines)
    assert f'"{unit}"' not in after


def test_readyz_checks_the_database(client):
    assert client.get("/readyz").get_json()["checks"] == {"knowledge": True, "database": True}


def test_cors_preflights_are_not_counted_as_hook_calls(client, knowledge):
    service = next(iter(knowledge.services.values()))
    before = client.get("/metrics").data.decode()
    for _ in range(4):
        response = client.options(f"/cds-services/{service.id}", headers={
            "Origin": "http://127.0.0.1:8080", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        assert response.status_code == 200
    after = client.get("/metrics").data.decode()
    assert metric(after, "spasm_cds_requests_total", endpoint=service.id, status="200") == \
        metric(before, "spasm_cds_requests_total", endpoint=service.id, status="200")
    assert metric(after, "spasm_cds_requests_total", endpoint="cors-preflight", status="200") - \
        metric(before, "spasm_cds_requests_total", endpoint="cors-preflight", status="200") == 4
