"""CORS for browser EHRs such as the CDS Hooks Sandbox: preflights for Authorization and Content-Type answered on
every endpoint without a token, CORS headers on real answers (errors and 401 included), origins configurable."""
from __future__ import annotations

import pytest

from cds_service import create_app
from cds_service.settings import Settings
from tests.conftest import REPO

SANDBOX = "http://127.0.0.1:8080"
SERVICE = "/cds-services/spasm-cramps-patient-view"


def preflight(client, path: str, method: str, origin: str = SANDBOX):
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                         "Access-Control-Request-Headers": "authorization, content-type"})


@pytest.fixture(scope="module")
def secure_client(knowledge, tmp_path_factory):
    settings = Settings(knowledge_dir=REPO, data_dir=tmp_path_factory.mktemp("cors"), auth="on",
                        public_url="http://localhost")
    return create_app(settings, knowledge).test_client()


@pytest.mark.parametrize(("path", "method"), [("/cds-services", "GET"), (SERVICE, "POST"), ("/knowledge", "GET")],
                         ids=["discovery", "service", "knowledge"])
def test_preflight_allows_authorization_and_content_type_without_a_token(secure_client, path, method):
    response = preflight(secure_client, path, method)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    allowed_headers = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed_headers
    assert method in response.headers["Access-Control-Allow-Methods"]


def test_answers_carry_cors_headers_even_when_refused(secure_client, client):
    refused = secure_client.get("/cds-services", headers={"Origin": SANDBOX})
    assert refused.status_code == 401
    assert refused.headers["Access-Control-Allow-Origin"] == "*"
    invalid = client.post(SERVICE, data=b"{", headers={"Origin": SANDBOX, "Content-Type": "application/json"})
    assert invalid.status_code == 400
    assert invalid.headers["Access-Control-Allow-Origin"] == "*"
    assert "X-Request-ID" in invalid.headers["Access-Control-Expose-Headers"]


def test_configured_origins_are_the_only_ones_allowed(knowledge, tmp_path):
    settings = Settings(knowledge_dir=REPO, data_dir=tmp_path, cors_origins="https://ehr.example.org, https://b.example")
    client = create_app(settings, knowledge).test_client()
    allowed = preflight(client, SERVICE, "POST", origin="https://ehr.example.org")
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ehr.example.org"
    other = preflight(client, SERVICE, "POST", origin="https://evil.example")
    assert "Access-Control-Allow-Origin" not in other.headers
    answer = client.get("/cds-services", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in answer.headers
