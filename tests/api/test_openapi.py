"""The OpenAPI 3.1 document: served at /openapi.json without a JWT, valid OpenAPI 3.1, in step with the app's routes
both ways, and true to what the service really sends and accepts."""
from __future__ import annotations

import json
import re
from functools import cache

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from cds_service import create_app
from cds_service.api.openapi import DOCUMENT
from cds_service.case_runner import build_request, service_for
from cds_service.pipeline import respond
from cds_service.settings import Settings
from tests.conftest import REPO
from tests.support.jwt_issuer import SANDBOX_ISS, ec_issuer, write_issuers

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}  # HEAD and OPTIONS are Flask's and CORS's, not the API's
GUARDED = re.compile(r"^/cds-services(/|$)")
_URI = "urn:spasm-cds:openapi"


@cache
def document() -> dict:
    return json.loads(DOCUMENT.read_text(encoding="utf-8"))


def schema_errors(name: str, instance: object) -> list[str]:
    registry = Registry().with_resource(_URI, DRAFT202012.create_resource(document()))
    validator = Draft202012Validator({"$ref": f"{_URI}#/components/schemas/{name}"}, registry=registry,
                                     format_checker=FormatChecker())
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(instance)]


def placeholders(path: str) -> str:
    """/a/<x>/b and /a/{y}/b both become /a/{}/b."""
    return re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path)


def operations() -> dict[tuple[str, str], dict]:
    return {(placeholders(path), method.upper()): op for path, item in document()["paths"].items()
            for method, op in item.items() if method.upper() in METHODS}


def test_the_document_is_valid_openapi_3_1():
    validate(document())

    assert document()["openapi"].startswith("3.1.")


def test_the_document_is_served_without_a_token_and_the_api_still_asks_for_one(tmp_path, knowledge):
    issuer = ec_issuer()
    issuers = write_issuers(tmp_path, {SANDBOX_ISS: {"jwks_file": "jwks.json"}}, {"jwks.json": issuer.jwks()})
    client = create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path, auth="on", public_url="http://localhost",
                                 trusted_issuers=str(issuers)),
                        knowledge).test_client()

    served = client.get("/openapi.json")
    refused = client.get("/cds-services")

    assert served.status_code == 200 and served.mimetype == "application/json"
    assert served.get_json() == document()
    assert refused.status_code == 401 and refused.data == b""


def test_every_route_of_the_app_is_in_the_document_and_every_operation_is_a_route(app):
    routes = {(placeholders(rule.rule), method) for rule in app.url_map.iter_rules() if rule.endpoint != "static"
              for method in rule.methods & METHODS}

    assert sorted(routes - set(operations())) == [], "routes the document does not describe"
    assert sorted(set(operations()) - routes) == [], "operations the app does not serve"


def test_the_cds_hooks_operations_need_the_jwt_when_auth_is_on_and_nothing_else_does():
    for (path, method), op in operations().items():
        guarded, admin = bool(GUARDED.match(path)), path.startswith("/admin/")
        launcher = {"smartLauncherToken": []} in op.get("security", [])  # the development launcher's FHIR reads
        assert ({"cdsHooksJwt": []} in op.get("security", [])) == guarded, (method, path)
        assert ({"adminToken": []} in op.get("security", [])) == admin, (method, path)
        assert ("401" in op["responses"]) == (guarded or admin or launcher), (method, path)
    unauthorized = document()["components"]["responses"]["Unauthorized"]
    assert "content" not in unauthorized, "a 401 has an empty body"


def test_every_error_response_is_an_operation_outcome():
    """...or, on the try-it page, the page itself showing what was wrong with the input."""
    responses = document()["components"]["responses"]
    for (path, method), op in operations().items():
        for status, response in op["responses"].items():
            if path == "/smart-launcher/token" and status == "400":  # RFC 6749 error JSON, what SMART clients read
                assert op["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("/OAuthError")
                continue
            if status.startswith(("4", "5")) and status != "401" and path != "/readyz":
                if "$ref" in response:
                    content = dict(responses[response["$ref"].rsplit("/", 1)[-1]]["content"])
                else:
                    assert "try-it" in op["tags"], (method, path, status)
                    content = dict(response["content"])
                    assert content.pop("text/html"), (method, path, status)
                    if not content:
                        continue
                assert list(content) == ["application/fhir+json"], (method, path, status)
                assert content["application/fhir+json"]["schema"]["$ref"].endswith("/OperationOutcome")


def test_what_the_service_sends_fits_the_document(client):
    assert schema_errors("CdsServiceInformation", client.get("/cds-services").get_json()) == []
    assert schema_errors("Health", client.get("/healthz").get_json()) == []
    assert schema_errors("Readiness", client.get("/readyz").get_json()) == []
    assert schema_errors("OperationOutcome", client.post("/cds-services/no-such-service", json={}).get_json()) == []
    assert schema_errors("OperationOutcome", client.get("/knowledge/no-such-rule").get_json()) == []


def test_feedback_the_document_describes_is_stored_and_a_bad_one_is_an_operation_outcome(client, knowledge):
    service_id = next(iter(knowledge.services))
    good = {"feedback": [{"card": "0f9d1f0e-6a3b-4c1e-9d7a-1b2c3d4e5f60", "outcome": "overridden",
                          "overrideReason": {"userComment": "seen"}, "outcomeTimestamp": "2026-01-15T10:05:31Z"}]}
    bad = {"feedback": []}

    stored = client.post(f"/cds-services/{service_id}/feedback", json=good)
    refused = client.post(f"/cds-services/{service_id}/feedback", json=bad)

    assert schema_errors("FeedbackRequest", good) == []
    assert schema_errors("FeedbackRequest", bad) != []
    assert stored.status_code == 200 and stored.data == b""
    assert refused.status_code == 400
    assert schema_errors("OperationOutcome", refused.get_json()) == []


@pytest.mark.parametrize("hook", ["patient-view", "order-select", "order-sign"])
def test_requests_and_responses_of_every_case_of_a_hook_fit_the_document(hook, knowledge, today):
    problems = []
    cases = [c for c in knowledge.cases if c.hook == hook]
    for case in cases:
        service = service_for(knowledge, case)
        body = build_request(knowledge, case, service, today)
        response = respond(body, service, knowledge, Settings(), today)
        problems += [f"{case.name}: request: {e}" for e in schema_errors("CdsRequest", body)]
        problems += [f"{case.name}: response: {e}" for e in schema_errors("CdsResponse", response)]

    assert cases
    assert problems == []


@pytest.mark.parametrize(("component", "error"),
                         [("Unauthorized", "Unauthorized"), ("Unavailable", "StoreUnavailable")])
def test_the_headers_a_refusal_carries_are_the_ones_the_document_declares(component, error):
    from cds_service import errors
    sent = set(getattr(errors, error)("a reason").headers())
    declared = set(document()["components"]["responses"][component].get("headers", {}))
    assert sent and sent == declared
