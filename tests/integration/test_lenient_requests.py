"""Lenient where CDS Hooks 2.0 and real EHRs are (issue 14), over real HTTP under gunicorn: optional fields sent as
null, a fhirAuthorization with only its access token (token_type in any case, expires_in as a string), and a
trailing slash on the discovery, service and feedback URLs all work; what must stay refused still is."""
from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from datetime import date

import pytest

from cds_service.demo import demo_bundle, hook_request, load_demos
from tests.support.cds_client import call
from tests.support.hostile_fhir import HostileFhir
from tests.support.loopback import http_request

pytestmark = pytest.mark.integration
SERVICE = "spasm-cramps-patient-view"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def body(knowledge) -> dict:
    demo = next(d for d in load_demos().patients if d.id == "contributors")
    return hook_request(demo_bundle(demo, date.today()), knowledge, "patient-view", None, str(uuid.uuid4()))[1]


@pytest.fixture(scope="module")
def recorder() -> Iterator[HostileFhir]:
    with HostileFhir() as server:  # `fhir` paths answer empty searchsets and record the Authorization header
        yield server


def summaries(cards: list[dict]) -> list[str]:
    return sorted(c["summary"] for c in cards)


def test_optional_fields_sent_as_null_are_accepted(service_server, body):
    expected = summaries(call(service_server.url, SERVICE, body))
    nulls = copy.deepcopy(body)
    nulls.update(fhirServer=None, fhirAuthorization=None, extension=None)
    nulls["context"]["encounterId"] = None
    assert summaries(call(service_server.url, SERVICE, nulls)) == expected


@pytest.mark.parametrize("auth", [
    {"access_token": "lenient-token-1", "token_type": "bearer", "expires_in": "300"},
    {"access_token": "lenient-token-2", "token_type": "BEARER", "expires_in": 300.0, "scope": None, "subject": None},
    {"access_token": "lenient-token-3"},
], ids=["lowercase-bearer-string-expiry", "uppercase-nulls", "token-only"])
def test_a_fhir_authorization_with_only_its_token_is_used(service_server, body, recorder, auth):
    fetching = {k: v for k, v in body.items() if k != "prefetch"}
    fetching.update(fhirServer=recorder.base(), fhirAuthorization=auth)
    call(service_server.url, SERVICE, fetching)
    sent = {authorization for _path, authorization in recorder.seen}
    assert f"Bearer {auth['access_token']}" in sent


@pytest.mark.parametrize("auth", [{"token_type": "bearer"}, {"access_token": "t", "token_type": "Basic"},
                                  {"access_token": "", "token_type": "Bearer"}],
                         ids=["no-token", "basic", "empty-token"])
def test_what_cannot_be_used_is_still_refused(service_server, body, recorder, auth):
    fetching = {k: v for k, v in body.items() if k != "prefetch"}
    fetching.update(fhirServer=recorder.base(), fhirAuthorization=auth)
    status, answer = http_request("POST", f"{service_server.url}/cds-services/{SERVICE}",
                                  json.dumps(fetching).encode(), JSON)
    assert status == 400 and b"fhirAuthorization" in answer


def test_a_trailing_slash_works_on_discovery_service_and_feedback(service_server, body):
    status, discovery = http_request("GET", f"{service_server.url}/cds-services/")
    assert status == 200 and SERVICE in {s["id"] for s in json.loads(discovery)["services"]}
    status, answer = http_request("POST", f"{service_server.url}/cds-services/{SERVICE}/",
                                  json.dumps({**body, "hookInstance": str(uuid.uuid4())}).encode(), JSON)
    assert status == 200 and json.loads(answer)["cards"]
    card = json.loads(answer)["cards"][0]["uuid"]
    feedback = {"feedback": [{"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-12-06T08:00:00Z",
                              "overrideReason": {"userComment": "seen"}}]}
    status, _ = http_request("POST", f"{service_server.url}/cds-services/{SERVICE}/feedback/",
                             json.dumps(feedback).encode(), JSON)
    assert status == 200
