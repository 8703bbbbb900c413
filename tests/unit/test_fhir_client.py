"""FhirClient against real servers: sekmet-fhir for reads, paging and errors; a tiny loopback recorder for what
goes on the wire (the bearer token, refused origins, redirects that must not be followed)."""
from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import REGISTRY

from cds_service.errors import FhirError
from cds_service.gather.fhir_client import FhirClient
from cds_service.settings import Settings
from tests.support.hostile_fhir import HostileFhir
from tests.support.loopback import free_port

integration = pytest.mark.integration
FAKE_SYSTEM = "http://example.org/spasm-cds-test"
FAKE_CODE = "paging-lab"


def client(base_url: str, token: str | None = None, **settings) -> FhirClient:
    return FhirClient(base_url, token, Settings(**settings))


# --- against sekmet-fhir -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def patient_with_25_results(fhir_server) -> str:
    patient = f"urn:uuid:{uuid.uuid4()}"
    entries = [{"fullUrl": patient, "resource": {"resourceType": "Patient", "gender": "female"},
                "request": {"method": "POST", "url": "Patient"}}]
    for day in range(1, 26):
        observation = {"resourceType": "Observation", "status": "final", "subject": {"reference": patient},
                       "code": {"coding": [{"system": FAKE_SYSTEM, "code": FAKE_CODE}]},
                       "effectiveDateTime": f"2026-01-{day:02d}T08:00:00Z", "valueQuantity": {"value": day}}
        entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": observation,
                        "request": {"method": "POST", "url": "Observation"}})
    ids = fhir_server.load_transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    return fhir_server.patient_id(ids)


@integration
def test_read_returns_the_resource(fhir_server, patient_with_25_results):
    patient = client(fhir_server.base_url).read(f"Patient/{patient_with_25_results}")
    assert (patient["resourceType"], patient["id"]) == ("Patient", patient_with_25_results)


@integration
@pytest.mark.parametrize(("max_pages", "found", "complete"), [(3, 25, True), (5, 25, True), (2, 20, False)],
                         ids=["three-pages-get-all", "spare-pages", "capped-at-two-pages"])
def test_search_follows_next_links_up_to_max_pages(fhir_server, patient_with_25_results, max_pages, found,
                                                   complete):
    query = f"Observation?patient={patient_with_25_results}&code={FAKE_SYSTEM}|{FAKE_CODE}&_count=10"
    results, all_of_them = client(fhir_server.base_url, fhir_max_pages=max_pages).search_pages(query)
    assert all_of_them is complete  # paging stopped with pages left: the caller must treat the rest as unknown
    assert len(results) == found
    assert len({r["id"] for r in results}) == found
    assert {r["resourceType"] for r in results} == {"Observation"}


@integration
def test_search_leaves_out_the_outcome_entry_the_server_adds(fhir_server, patient_with_25_results):
    query = f"Observation?patient={patient_with_25_results}&no-such-parameter=1&_count=100"
    results = client(fhir_server.base_url).search(query)
    assert len(results) == 25
    assert {r["resourceType"] for r in results} == {"Observation"}


@integration
def test_read_of_an_unknown_id_is_a_fhir_error(fhir_server):
    with pytest.raises(FhirError, match="HTTP 404"):
        client(fhir_server.base_url).read(f"Patient/{uuid.uuid4()}")


def test_closed_port_is_a_fhir_error():
    with pytest.raises(FhirError, match="ConnectionError"):
        client(f"http://127.0.0.1:{free_port()}/fhir").read("Patient/p1")


# --- against a loopback recorder -----------------------------------------------------------------------------


@dataclass
class Recorder:
    """A real HTTP server on 127.0.0.1 that records each request's path and Authorization header."""

    port: int = 0
    seen: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"


def _handler(recorder: Recorder):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            recorder.seen.append((self.path, self.headers.get("Authorization")))
            if self.path == "/fhir/Patient/p1":
                self._answer(200, "application/fhir+json", json.dumps({"resourceType": "Patient", "id": "p1"}))
            elif self.path == "/fhir/Patient/moved":
                self.send_response(302)
                self.send_header("Location", f"http://localhost:{recorder.port}/elsewhere/Patient/p1")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path == "/fhir/Observation?page=1":
                self._answer(200, "application/fhir+json", json.dumps({
                    "resourceType": "Bundle", "type": "searchset",
                    "entry": [{"resource": {"resourceType": "Observation", "id": "a"}}],
                    "link": [{"relation": "next", "url": "Observation?page=2"}]}))
            elif self.path == "/fhir/Observation?page=2":
                self._answer(200, "application/fhir+json", json.dumps({
                    "resourceType": "Bundle", "type": "searchset",
                    "entry": [{"resource": {"resourceType": "Observation", "id": "b"}}]}))
            elif self.path == "/fhir/Patient/garbage":
                self._answer(200, "text/html", "<html>not FHIR</html>")
            else:
                self._answer(404, "application/fhir+json", json.dumps({"resourceType": "OperationOutcome"}))

        def _answer(self, status: int, content_type: str, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_bearer_token_is_sent(recorder):
    assert client(recorder.base_url, "token-abc").read("Patient/p1")["id"] == "p1"
    assert recorder.seen == [("/fhir/Patient/p1", "Bearer token-abc")]


def test_no_token_sends_no_authorization_header(recorder):
    client(recorder.base_url).read("Patient/p1")
    assert recorder.seen == [("/fhir/Patient/p1", None)]


def test_absolute_url_on_another_origin_is_refused_without_a_request(recorder):
    # same server, other host name: a request, had one been made, would show up in `seen`
    other_origin = f"http://localhost:{recorder.port}/fhir/Patient/p1"
    with pytest.raises(FhirError, match="another origin"):
        client(recorder.base_url, "token-abc").search(other_origin)
    assert recorder.seen == []


def test_absolute_url_on_the_same_origin_is_allowed(recorder):
    assert client(recorder.base_url).search(f"{recorder.base_url}/Patient/p1") == [
        {"resourceType": "Patient", "id": "p1"}]


def test_redirect_to_another_host_is_not_followed(recorder):
    with pytest.raises(FhirError, match="HTTP 302"):
        client(recorder.base_url, "token-abc").read("Patient/moved")
    assert recorder.seen == [("/fhir/Patient/moved", "Bearer token-abc")]


def test_answer_that_is_not_json_is_a_fhir_error(recorder):
    with pytest.raises(FhirError, match="not JSON"):
        client(recorder.base_url).read("Patient/garbage")


def test_relative_next_link_is_followed_against_the_server_base(recorder):
    found = client(recorder.base_url).search("Observation?page=1")
    assert [r["id"] for r in found] == ["a", "b"]
    assert [path for path, _ in recorder.seen] == ["/fhir/Observation?page=1", "/fhir/Observation?page=2"]


# --- hostile answers and escaping URLs (tests/support/hostile_fhir.py) ------------------------------------------


@pytest.fixture
def hostile() -> Iterator[HostileFhir]:
    with HostileFhir(trickle_s=0.2, huge_bytes=64 * 1024 * 1024) as server:
        yield server


@pytest.mark.parametrize("behaviour", ["huge", "huge-declared"])
def test_answer_over_the_byte_cap_is_given_up_and_counted(hostile, behaviour):
    before = REGISTRY.get_sample_value("spasm_cds_fhir_answers_over_cap_total", {"cap": "answer"}) or 0
    with pytest.raises(FhirError, match="SPASM_CDS_FHIR_MAX_ANSWER_BYTES"):
        client(hostile.base(behaviour), fhir_max_answer_bytes=1_000_000).search("Observation")
    assert REGISTRY.get_sample_value("spasm_cds_fhir_answers_over_cap_total", {"cap": "answer"}) == before + 1
    (_path, out, _), = hostile.answers_ended("/huge")
    # the reading stopped near the cap (socket buffers hold a few MiB more), far short of the 64 MiB answer
    assert out < 16 * 1024 * 1024


def test_the_calls_byte_cap_holds_across_its_queries(hostile):
    capped = client(hostile.base("huge"), fhir_max_answer_bytes=100 * 1024 * 1024, fhir_max_call_bytes=2_000_000)
    with pytest.raises(FhirError, match="SPASM_CDS_FHIR_MAX_CALL_BYTES"):
        capped.search("Observation")


@pytest.mark.parametrize("behaviour", ["trickle", "trickle-head"])
def test_close_cuts_an_answer_that_trickles(hostile, behaviour):
    trickled = client(hostile.base(behaviour), fhir_read_timeout_s=30)
    errors: list[Exception] = []

    def search() -> None:
        try:
            trickled.search("Observation")
        except FhirError as exc:
            errors.append(exc)

    thread = threading.Thread(target=search)
    thread.start()
    while not hostile.seen:
        thread.join(0.05)
    trickled.close()
    thread.join(5)
    assert not thread.is_alive() and len(errors) == 1


@pytest.mark.parametrize("reference", ["../admin/keys", "Medication/../../admin/secret", "%2e%2e/admin/keys",
                                       "..;/admin/keys", "..\\admin\\keys", "//127.0.0.1/admin",
                                       "Patient/p1/../../../admin"])
def test_a_reference_that_leaves_fhir_server_is_refused_and_the_token_stays_home(hostile, reference):
    with pytest.raises(FhirError):
        client(hostile.base(), "token-abc").read(reference)
    assert hostile.paths_outside("/fhir") == []


@pytest.mark.parametrize("behaviour", ["escape-next", "escape-encoded-next"])
def test_a_next_link_that_leaves_fhir_server_is_not_followed(hostile, behaviour):
    assert client(hostile.base(), "token-abc").search(f"Observation?{behaviour}=1") == []
    assert [path for path, _ in hostile.seen] == [f"/fhir/Observation?{behaviour}=1"]
    assert hostile.paths_outside("/fhir") == []


@pytest.mark.parametrize("base", ["{host}/fhir/../admin", "{host}/fhir/%2e%2e/admin", "{host}/fhir/..;/admin"])
def test_a_fhir_server_that_escapes_its_allowed_path_is_never_contacted(hostile, base):
    host = f"http://127.0.0.1:{hostile.port}"
    with pytest.raises(FhirError, match="allow-list"):
        FhirClient(base.format(host=host), "token-abc", Settings(fhir_allowed_urls=f"{host}/fhir"))
    assert hostile.seen == []
