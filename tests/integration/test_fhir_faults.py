"""FHIR faults from real loopback servers: down, slow past the read timeout, 500, garbage, a malformed Bundle,
redirects to another host, `next` links that loop or never end, and servers off the allow-list (SSRF). Each is a
412 when the problem list is missing, or 200 with a notice naming the missing data; never a 5xx."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cds_service import create_app
from cds_service.settings import Settings
from tests.conftest import REPO
from tests.support.assertions import assert_operation_outcome
from tests.support.loopback import ServedInThread, free_port

pytestmark = pytest.mark.integration
SERVICE = "/cds-services/spasm-cramps-patient-view"
READ_TIMEOUT_S = 0.3
MAX_PAGES = 4
HOLD_S = 30.0  # how long the slow server holds a request; far past the read timeout, released at teardown
FAULTS = ["down", "slow", "http-500", "garbage", "malformed-bundle", "redirect-to-another-host"]


@dataclass
class FaultyFhir(ServedInThread):
    """A real HTTP server whose first path segment names its behaviour; it records every path requested."""

    host: str = "127.0.0.1"
    seen: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    elsewhere: str = ""  # where redirects point

    def base(self, behaviour: str) -> str:
        return f"http://{self.host}:{self.port}/{behaviour}"

    def __enter__(self) -> FaultyFhir:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.seen.append(self.path)
                behaviour, _, rest = self.path.lstrip("/").partition("/")
                if behaviour == "slow":
                    owner.release.wait(HOLD_S)
                    return self._json(200, {"resourceType": "Bundle", "type": "searchset", "entry": []})
                if behaviour == "http-500":
                    return self._json(500, {"resourceType": "OperationOutcome", "issue": []})
                if behaviour == "garbage":
                    return self._send(200, "text/html", b"<html>not fhir</html>")
                if behaviour == "malformed-bundle":
                    return self._json(200, {"resourceType": "Bundle", "type": "searchset", "entry": 5, "link": 7})
                if behaviour == "redirect-to-another-host":
                    self.send_response(302)
                    self.send_header("Location", f"{owner.elsewhere}/{rest}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if behaviour == "loop-self":
                    return self._page(f"http://{owner.host}:{owner.port}{self.path}")
                if behaviour == "loop-pair":
                    other = self.path.replace("&page=b", "") if "&page=b" in self.path else self.path + "&page=b"
                    return self._page(f"http://{owner.host}:{owner.port}{other}")
                if behaviour == "endless":
                    return self._page(f"http://{owner.host}:{owner.port}{self.path}&more=1")
                return self._json(404, {"resourceType": "OperationOutcome", "issue": []})

            def _page(self, next_url: str) -> None:
                self._json(200, {"resourceType": "Bundle", "type": "searchset", "entry": [],
                                 "link": [{"relation": "next", "url": next_url}]})

            def _json(self, status: int, doc: dict) -> None:
                self._send(status, "application/fhir+json", json.dumps(doc).encode())

            def _send(self, status: int, kind: str, data: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the service gave up waiting, as it should

            def log_message(self, *args) -> None:
                pass

        self._serve(ThreadingHTTPServer((self.host, 0), Handler))
        self.port = self._server.server_address[1]
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        super().__exit__(*exc)


@pytest.fixture
def elsewhere() -> Iterator[FaultyFhir]:
    """A server on 127.0.0.2, an address that is not on the default allow-list."""
    with FaultyFhir(host="127.0.0.2") as server:
        yield server


@pytest.fixture
def fhir(elsewhere) -> Iterator[FaultyFhir]:
    with FaultyFhir(elsewhere=elsewhere.base("fhir")) as server:
        yield server


@pytest.fixture(scope="module")
def client(knowledge, tmp_path_factory):
    settings = Settings(knowledge_dir=REPO, data_dir=tmp_path_factory.mktemp("faults"), fhir_connect_timeout_s=0.5,
                        fhir_read_timeout_s=READ_TIMEOUT_S, fhir_max_pages=MAX_PAGES)
    return create_app(settings, knowledge).test_client()


def body(fhir_server: str, prefetch: dict | None = None, token: str | None = None) -> dict:
    doc = {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
           "context": {"userId": "Practitioner/1", "patientId": "p1"}, "fhirServer": fhir_server}
    if prefetch is not None:
        doc["prefetch"] = prefetch
    if token:
        doc["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 60,
                                    "scope": "patient/*.read", "subject": "client"}
    return doc


@pytest.fixture(scope="module")
def cramp_conditions(knowledge) -> dict:
    """Prefetched problem list with a muscle cramp, so only optional data is left to the FHIR server."""
    concept = knowledge.concepts["muscle-cramp"]
    condition = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
                 "code": {"coding": [{"system": knowledge.systems["icd10cm"][0], "code": concept.codes["icd10cm"][0]}]}}
    return {"conditions": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": condition}]}}


def fault_url(fhir: FaultyFhir, fault: str) -> str:
    return f"http://127.0.0.1:{free_port()}/fhir" if fault == "down" else fhir.base(fault)


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_with_the_problem_list_missing_is_412_naming_it(client, fhir, elsewhere, fault):
    response = client.post(SERVICE, json=body(fault_url(fhir, fault)))
    doc = assert_operation_outcome(response.status_code, response.content_type, response.data, 412)
    assert "conditions" in doc["issue"][0]["diagnostics"]
    assert not fhir.release.is_set()  # answered within the timeout, not when the slow server let go
    assert elsewhere.seen == []  # a redirect to another host is never followed


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_on_optional_data_degrades_with_a_notice_naming_what_is_missing(client, fhir, elsewhere,
                                                                               cramp_conditions, fault):
    response = client.post(SERVICE, json=body(fault_url(fhir, fault), cramp_conditions))
    assert response.status_code == 200, response.data[:300]
    (notice,) = [c for c in response.get_json()["cards"] if "could not be retrieved" in c["summary"]]
    assert notice["indicator"] == "info"
    assert "could not be retrieved" in notice["summary"] and "lab results" in notice["summary"]
    assert not fhir.release.is_set()
    assert elsewhere.seen == []


@pytest.mark.parametrize("loop", ["loop-self", "loop-pair"])
def test_next_link_loop_is_followed_once_and_stops(client, fhir, cramp_conditions, loop):
    response = client.post(SERVICE, json=body(fhir.base(loop), cramp_conditions))
    assert response.status_code == 200, response.data[:300]
    assert fhir.seen, "the service should have fetched the optional data"
    assert len(fhir.seen) == len(set(fhir.seen)), "a page was fetched twice"
    per_query = 1 if loop == "loop-self" else 2
    assert len(fhir.seen) == per_query * len({p.partition("&page=b")[0] for p in fhir.seen})


def test_endless_next_links_stop_at_max_pages(client, fhir, cramp_conditions):
    response = client.post(SERVICE, json=body(fhir.base("endless"), cramp_conditions))
    assert response.status_code == 200, response.data[:300]
    queries = {p.partition("&more=1")[0] for p in fhir.seen}
    assert len(fhir.seen) == MAX_PAGES * len(queries)


# --- SSRF: servers off the allow-list are never contacted ------------------------------------------------------


def test_server_off_the_allow_list_is_never_contacted_and_the_problem_list_is_412(client, elsewhere):
    response = client.post(SERVICE, json=body(elsewhere.base("fhir"), token="secret-ehr-token"))
    doc = assert_operation_outcome(response.status_code, response.content_type, response.data, 412)
    assert "conditions" in doc["issue"][0]["diagnostics"]
    assert elsewhere.seen == []


def test_server_off_the_allow_list_is_answered_from_prefetch_alone(client, elsewhere, cramp_conditions):
    response = client.post(SERVICE, json=body(elsewhere.base("fhir"), cramp_conditions, token="secret-ehr-token"))
    assert response.status_code == 200
    assert [c for c in response.get_json()["cards"] if "could not be retrieved" in c["summary"]]
    assert elsewhere.seen == []


@pytest.mark.parametrize("disguise", ["{loopback}@{other}", "{loopback}:secret@{other}", "localhost@{other}",
                                      "{loopback}\\@{other}"],
                         ids=["user-info", "user-and-password", "localhost-user-info", "backslash"])
def test_off_list_server_disguised_as_loopback_is_never_contacted(client, elsewhere, cramp_conditions, disguise):
    # each URL starts with an allowed loopback host, so a plain prefix test would let it through
    other = f"127.0.0.2:{elsewhere.port}"
    url = "http://" + disguise.format(loopback=f"127.0.0.1:{elsewhere.port}", other=other) + "/fhir"
    response = client.post(SERVICE, json=body(url, cramp_conditions))
    assert response.status_code == 200, response.data[:300]
    assert elsewhere.seen == []


def test_a_listed_server_is_contacted_so_the_recorder_would_see_a_request(knowledge, tmp_path, elsewhere,
                                                                          cramp_conditions):
    settings = Settings(knowledge_dir=REPO, data_dir=tmp_path, fhir_allowed_urls="http://127.0.0.2:*",
                        fhir_read_timeout_s=READ_TIMEOUT_S)
    client = create_app(settings, knowledge).test_client()
    response = client.post(SERVICE, json=body(elsewhere.base("fhir"), cramp_conditions))
    assert response.status_code == 200
    assert elsewhere.seen  # the positive control for every `seen == []` above
