"""The development SMART launcher in process (its FHIR reads against the real sekmet-fhir): off unless the try-it page
is on or it is set on, and then 404; a launch registered in the Sandbox's shape; authorize checks the client, the
redirect URI, the audience, the launch and PKCE; the token endpoint gives a code's token once and only for the right
verifier; the FHIR passthrough wants the token, keeps to the launch patient and rewrites paging links; a FHIR server
off this machine is refused at start. The whole launch in a browser: tests/browser/test_smart_timeline.py."""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest

from cds_service import create_app
from cds_service.settings import Settings
from tests.conftest import REPO
from tests.support.assertions import assert_operation_outcome

ISS = "http://localhost/smart-launcher/fhir"
APP = "http://localhost/smart/timeline/app"
SCOPE = "launch patient/Patient.rs patient/Observation.rs patient/MedicationRequest.rs"
CLIENT = "spasm-cds-timeline"


def launcher(tmp_path, knowledge, **settings):
    values = {"knowledge_dir": REPO, "data_dir": tmp_path, "smart_launcher": "on", **settings}
    return create_app(Settings(**values), knowledge).test_client()


@pytest.fixture
def client(tmp_path, knowledge):
    return launcher(tmp_path, knowledge)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(32)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def register(client, patient="p-1", app_context='{"labs": []}') -> str:
    answer = client.post("/smart-launcher/fhir/_services/smart/Launch",
                         json={"launchUrl": "http://localhost/smart/timeline/launch",
                               "parameters": {"patient": patient, "appContext": app_context}})
    assert answer.status_code == 201
    return answer.get_json()["launch_id"]


def authorize(client, launch, challenge, **changes):
    query = {"response_type": "code", "client_id": CLIENT, "redirect_uri": APP, "scope": SCOPE, "state": "s-1",
             "aud": ISS, "launch": launch, "code_challenge": challenge, "code_challenge_method": "S256", **changes}
    return client.get("/smart-launcher/authorize", query_string=query)


def code_for(client, patient="p-1", app_context='{"labs": []}') -> tuple[str, str]:
    verifier, challenge = pkce()
    answer = authorize(client, register(client, patient, app_context), challenge)
    assert answer.status_code == 302
    return parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0], verifier


def token(client, code, verifier):
    return client.post("/smart-launcher/token", data={"grant_type": "authorization_code", "code": code,
                                                      "redirect_uri": APP, "client_id": CLIENT,
                                                      "code_verifier": verifier})


@pytest.mark.parametrize("settings", [{"smart_launcher": "off"}, {"smart_launcher": "", "try_it": "off"}],
                         ids=["set-off", "follows-try-it-off"])
def test_off_every_launcher_route_is_404(tmp_path, knowledge, settings):
    client = launcher(tmp_path, knowledge, **settings)
    answers = [client.get("/smart-launcher/fhir/.well-known/smart-configuration"),
               client.post("/smart-launcher/fhir/_services/smart/Launch", json={"parameters": {"patient": "p"}}),
               client.get("/smart-launcher/authorize"), client.post("/smart-launcher/token"),
               client.get("/smart-launcher/fhir/Patient/p")]
    for answer in answers:
        assert_operation_outcome(answer.status_code, answer.content_type, answer.data, 404)
    assert client.get("/smart/timeline/launch").status_code == 200  # the app itself is always served


def test_on_by_default_only_with_the_try_it_page():
    assert Settings().smart_launcher_on
    assert not Settings(auth="on", public_url="http://x").smart_launcher_on
    assert Settings(auth="on", public_url="http://x", smart_launcher="on").smart_launcher_on


def test_smart_configuration_offers_the_ehr_launch_with_pkce(client):
    config = client.get("/smart-launcher/fhir/.well-known/smart-configuration").get_json()

    assert config["authorization_endpoint"] == "http://localhost/smart-launcher/authorize"
    assert config["token_endpoint"] == "http://localhost/smart-launcher/token"
    assert "launch-ehr" in config["capabilities"] and config["code_challenge_methods_supported"] == ["S256"]


@pytest.mark.parametrize("body", [{}, {"parameters": {}}, {"parameters": {"patient": "../x"}},
                                  {"parameters": {"patient": "p", "appContext": {"not": "a string"}}}],
                         ids=["no-parameters", "no-patient", "bad-patient-id", "app-context-not-a-string"])
def test_a_bad_launch_registration_is_400(client, body):
    answer = client.post("/smart-launcher/fhir/_services/smart/Launch", json=body)
    assert_operation_outcome(answer.status_code, answer.content_type, answer.data, 400)


def test_the_launch_gives_the_patient_and_app_context_in_the_token_response_once(client):
    code, verifier = code_for(client, "p-7", '{"labs": [{"id": "potassium"}]}')

    first = token(client, code, verifier)
    again = token(client, code, verifier)

    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-store"
    answer = first.get_json()
    assert answer["patient"] == "p-7" and answer["token_type"] == "Bearer" and answer["scope"] == SCOPE
    assert json.loads(answer["appContext"]) == {"labs": [{"id": "potassium"}]}
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"


def test_a_wrong_pkce_verifier_gets_no_token(client):
    code, _verifier = code_for(client)
    answer = token(client, code, pkce()[0])
    assert answer.status_code == 400
    assert answer.get_json() == {"error": "invalid_grant",
                                 "error_description": "code_verifier does not match the code_challenge"}


@pytest.mark.parametrize(("change", "field"), [
    ({"redirect_uri": "https://elsewhere.example/smart/timeline/app"}, "redirect_uri"),
    ({"redirect_uri": "http://localhost/knowledge"}, "redirect_uri"),
    ({"client_id": "another-app"}, "client_id"),
    ({"aud": "http://localhost/fhir"}, "aud"),
    ({"code_challenge_method": "plain"}, "code_challenge"),
    ({"code_challenge": ""}, "code_challenge"),
    ({"launch": "x" * 43}, "launch"),
], ids=["foreign-redirect", "redirect-outside-the-app", "unknown-client", "wrong-audience", "plain-pkce",
        "no-challenge", "unknown-launch"])
def test_authorize_refuses_what_it_cannot_trust(client, change, field):
    change = {"launch": register(client), **change}
    answer = authorize(client, change.pop("launch"), pkce()[1], **change)
    outcome = assert_operation_outcome(answer.status_code, answer.content_type, answer.data, 400)
    assert outcome["issue"][0]["diagnostics"].startswith(f"{field}:")


def test_a_launch_id_is_used_once(client):
    launch = register(client)
    assert authorize(client, launch, pkce()[1]).status_code == 302
    assert authorize(client, launch, pkce()[1]).status_code == 400


def test_fhir_reads_need_the_token_and_keep_to_the_launch_patient(client):
    code, verifier = code_for(client, "p-1")
    bearer = {"Authorization": f"Bearer {token(client, code, verifier).get_json()['access_token']}"}

    refused = [client.get("/smart-launcher/fhir/Observation?patient=p-1"),
               client.get("/smart-launcher/fhir/Observation?patient=p-1",
                          headers={"Authorization": "Bearer not-a-token-of-ours"}),
               client.get("/smart-launcher/fhir/Patient/p-2", headers=bearer)]
    for answer in refused:
        assert answer.status_code == 401 and answer.data == b""
    for path in ("Observation", "Observation?patient=p-2", "Observation?patient=p-1&subject=Patient/p-2",
                 "Observation/o-1"):
        answer = client.get(f"/smart-launcher/fhir/{path}", headers=bearer)
        assert_operation_outcome(answer.status_code, answer.content_type, answer.data, 400)
    answer = client.get("/smart-launcher/fhir/Condition?patient=p-1", headers=bearer)
    assert_operation_outcome(answer.status_code, answer.content_type, answer.data, 404)


def test_a_fhir_server_off_this_machine_is_refused_at_start(tmp_path, knowledge):
    with pytest.raises(ValueError, match="SPASM_CDS_SMART_FHIR_URL"):
        launcher(tmp_path, knowledge, smart_fhir_url="https://fhir.example.org/r4")
    # off, the setting is not used and not checked
    launcher(tmp_path, knowledge, smart_fhir_url="https://fhir.example.org/r4", smart_launcher="off")


@pytest.mark.integration
def test_reads_go_to_the_fhir_server_with_paging_links_brought_back_through_the_launcher(tmp_path, knowledge,
                                                                                         fhir_server):
    patient = {"resourceType": "Patient", "id": "smart-launcher-p1"}
    observations = [{"resourceType": "Observation", "id": f"smart-launcher-o{i}", "status": "final",
                     "subject": {"reference": "Patient/smart-launcher-p1"}, "code": {"text": "a test"},
                     "valueQuantity": {"value": i}} for i in range(3)]
    fhir_server.load_transaction({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in (patient, *observations)]})
    client = launcher(tmp_path, knowledge, smart_fhir_url=fhir_server.base_url)
    code, verifier = code_for(client, "smart-launcher-p1")
    bearer = {"Authorization": f"Bearer {token(client, code, verifier).get_json()['access_token']}"}

    first = client.get("/smart-launcher/fhir/Observation?patient=smart-launcher-p1&_count=2", headers=bearer)
    assert first.status_code == 200 and first.mimetype == "application/fhir+json"
    (next_url,) = [link["url"] for link in first.get_json()["link"] if link["relation"] == "next"]
    assert next_url.startswith(ISS + "/Observation?")
    second = client.get(next_url.removeprefix("http://localhost"), headers=bearer)
    ids = {e["resource"]["id"] for page in (first, second) for e in page.get_json()["entry"]}
    assert ids == {o["id"] for o in observations}
    assert client.get("/smart-launcher/fhir/Patient/smart-launcher-p1", headers=bearer).get_json()["id"] == \
        "smart-launcher-p1"
