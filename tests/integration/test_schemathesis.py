"""schemathesis against the running service (gunicorn on loopback, JWT verification on) with the service's own
OpenAPI 3.1 document (cds_service/openapi.json): no server error, no response that breaks the schema, no call let in
without a valid JWT.
Bounded and deterministic: a few dozen derandomized examples per operation; the counts are printed at the end."""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from cds_service.api.openapi import DOCUMENT
from tests.support.jwt_issuer import SANDBOX_ISS, ec_issuer, write_issuers
from tests.support.service_server import ServiceServer

pytestmark = pytest.mark.integration
SERVICE_ID = "spasm-cramps-patient-view"
MAX_EXAMPLES = int(os.environ.get("SPASM_CDS_TEST_FUZZ_EXAMPLES", "40"))
CHECKS = [schemathesis.checks.not_a_server_error, schemathesis.checks.response_schema_conformance,
          schemathesis.checks.content_type_conformance, schemathesis.checks.ignored_auth]
ISSUER = ec_issuer()
SENT: Counter[str] = Counter()

schema = schemathesis.openapi.from_path(DOCUMENT)
PUBLIC_URL = "https://cds.example.org"  # the URL EHRs call (a JWT's aud); the server itself is on loopback


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[ServiceServer]:
    folder = tmp_path_factory.mktemp("fuzz")
    issuers = write_issuers(folder, {SANDBOX_ISS: {"jwks_file": "jwks.json"}}, {"jwks.json": ISSUER.jwks()})
    env = {"SPASM_CDS_AUTH": "on", "SPASM_CDS_TRUSTED_ISSUERS": str(issuers), "SPASM_CDS_DATA_DIR": str(folder),
           "SPASM_CDS_LOG_LEVEL": "WARNING", "SPASM_CDS_PUBLIC_URL": PUBLIC_URL}
    with ServiceServer(extra_env=env, workers=2) as server:
        yield server
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(SENT.items()))
    print(f"\nschemathesis: {sum(SENT.values())} generated cases sent ({statuses})")
    assert not any(k.startswith("5") for k in SENT), SENT


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_and_never_fails(case, service):
    if "serviceId" in (case.path_parameters or {}):
        case.path_parameters["serviceId"] = SERVICE_ID  # random ids only ever meet the 404 the corpus covers
    token = ISSUER.token(PUBLIC_URL + case.formatted_path)
    response = case.call_and_validate(base_url=service.url, headers={"Authorization": f"Bearer {token}"},
                                      checks=CHECKS, timeout=30)
    SENT[str(response.status_code)] += 1
