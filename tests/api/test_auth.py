"""JWT verification (CDS Hooks 2.0 security): the matrix of bad tokens, each an empty 401 whose log line names the
reason and never the token; tokens shaped like the Sandbox's (ES384, JWKS file) and Epic's (RS384, jku served by a
loopback server) are accepted; a jku off the allow-list is never fetched; replays are refused."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cds_service import create_app
from cds_service.auth import KeySets, load_trusted_issuers
from cds_service.settings import Settings
from tests.conftest import REPO
from tests.support.assertions import assert_operation_outcome
from tests.support.jwt_issuer import (
    EPIC_ISS,
    SANDBOX_ISS,
    SANDBOX_KID,
    JwksServer,
    ec_issuer,
    hmac_token,
    rsa_issuer,
    unsigned_token,
    with_payload,
    write_issuers,
)

BASE = "http://localhost"
DISCOVERY = f"{BASE}/cds-services"
SERVICE_ID = "spasm-cramps-patient-view"
TENANT_ISS = "https://tenanted.example"


@pytest.fixture(scope="module")
def keys():
    """The trusted issuers' keys and an attacker's, made once for the module."""
    return {"sandbox": ec_issuer(), "tenanted": ec_issuer(iss=TENANT_ISS, kid="t1", jku=None),
            "attacker-ec": ec_issuer(), "attacker-rsa": rsa_issuer(kid="attacker"),
            "p256": ec_issuer(curve=ec.SECP256R1(), alg="ES256")}


@pytest.fixture(scope="module")
def epic_jwks():
    with JwksServer() as server:
        yield server


@pytest.fixture(scope="module")
def attacker_jwks():
    with JwksServer() as server:
        yield server


@pytest.fixture(scope="module")
def epic(keys, epic_jwks):
    issuer = rsa_issuer(jku=epic_jwks.url)
    epic_jwks.jwks = issuer.jwks()
    return issuer


@pytest.fixture(scope="module")
def attacker(keys, attacker_jwks):
    """An RSA key claiming to be Epic, with its JWK Set on a loopback server that is not on the allow-list."""
    issuer = keys["attacker-rsa"]
    issuer.iss, issuer.jku = EPIC_ISS, attacker_jwks.url
    attacker_jwks.jwks = issuer.jwks()
    return issuer


@pytest.fixture(scope="module")
def secure_settings(tmp_path_factory, keys, epic, attacker):
    folder = tmp_path_factory.mktemp("auth")
    issuers = write_issuers(folder / "config", {
        SANDBOX_ISS: {"jwks_file": "sandbox-jwks.json"},
        EPIC_ISS: {"jku": [epic.jku]},
        TENANT_ISS: {"jwks_file": "tenanted-jwks.json", "tenants": ["hospital-a"]},
    }, jwks_files={"sandbox-jwks.json": keys["sandbox"].jwks(), "tenanted-jwks.json": keys["tenanted"].jwks()})
    return Settings(knowledge_dir=REPO, data_dir=folder / "data", auth="on", public_url=BASE,
                    trusted_issuers=str(issuers), jwks_min_refetch_s=0.0)


@pytest.fixture(scope="module")
def secure_client(secure_settings, knowledge):
    return create_app(secure_settings, knowledge).test_client()


@pytest.fixture
def auth_log(caplog):
    """The service's log records (its logger does not propagate, so caplog's handler is attached to it)."""
    logger = logging.getLogger("cds_service")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="cds_service")
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


def call(client, token: str | None, path: str = "/cds-services", method: str = "GET", **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.open(path, method=method, headers=headers, **kwargs)


def hook_body() -> dict:
    return {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"userId": "Practitioner/1", "patientId": "p1"},
            "prefetch": {"conditions": {"resourceType": "Bundle", "type": "searchset", "entry": []}}}


# --- accepted --------------------------------------------------------------------------------------------------


def test_sandbox_shaped_es384_token_is_accepted_for_discovery(secure_client, keys):
    token = keys["sandbox"].token(DISCOVERY)
    response = call(secure_client, token)
    assert response.status_code == 200
    assert SERVICE_ID in {s["id"] for s in response.get_json()["services"]}


def test_sandbox_shaped_token_is_accepted_for_a_service_call(secure_client, keys):
    token = keys["sandbox"].token(f"{DISCOVERY}/{SERVICE_ID}")
    response = call(secure_client, token, f"/cds-services/{SERVICE_ID}", "POST", json=hook_body())
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}


def test_epic_shaped_rs384_token_with_jku_is_accepted_and_its_jwks_cached(secure_client, epic, epic_jwks):
    fetched_before = len(epic_jwks.seen)
    for _ in range(3):
        assert call(secure_client, epic.token(DISCOVERY)).status_code == 200
    assert len(epic_jwks.seen) - fetched_before <= 1
    assert set(epic_jwks.seen) == {"/jwks.json"}


def test_a_rotated_epic_key_is_fetched_again_on_its_unknown_kid(secure_client, epic, epic_jwks):
    assert call(secure_client, epic.token(DISCOVERY)).status_code == 200
    rotated = rsa_issuer(jku=epic.jku)
    epic_jwks.jwks = {"keys": [epic.jwk(), rotated.jwk()]}
    fetched_before = len(epic_jwks.seen)
    assert call(secure_client, rotated.token(DISCOVERY)).status_code == 200
    assert len(epic_jwks.seen) == fetched_before + 1


def test_tenant_on_the_issuers_list_is_accepted(secure_client, keys):
    assert call(secure_client, keys["tenanted"].token(DISCOVERY, tenant="hospital-a")).status_code == 200


def test_audience_may_be_an_array_holding_the_url_called(secure_client, keys):
    token = keys["sandbox"].token(DISCOVERY, aud=["https://other.example/cds-services", DISCOVERY])
    assert call(secure_client, token).status_code == 200


# --- refused: the matrix ---------------------------------------------------------------------------------------


def _matrix(keys, epic, attacker) -> dict[str, tuple[str, str]]:
    """name -> (token, reason code the log must give)."""
    sandbox = keys["sandbox"]
    now = int(time.time())
    valid = sandbox.token(DISCOVERY)
    hs_header = {"alg": "HS256", "typ": "JWT", "kid": SANDBOX_KID}
    return {
        "wrong-key": (keys["attacker-ec"].token(DISCOVERY), "bad_signature"),
        "alg-none": (unsigned_token({"alg": "none", "typ": "JWT", "kid": SANDBOX_KID}, sandbox.claims(DISCOVERY)),
                     "alg_not_allowed"),
        "hs256-with-the-public-key-as-secret": (
            hmac_token(hs_header, sandbox.claims(DISCOVERY), sandbox.public_pem()), "alg_not_allowed"),
        "hs384-with-the-public-key-as-secret": (
            hmac_token({**hs_header, "alg": "HS384"}, sandbox.claims(DISCOVERY), sandbox.public_pem(),
                       hashlib.sha384), "alg_not_allowed"),
        "es256-not-allowed": (keys["p256"].token(DISCOVERY, iss=SANDBOX_ISS), "alg_not_allowed"),
        "rs256-not-allowed": (epic.token(DISCOVERY, header={"alg": "RS256"}), "alg_not_allowed"),
        "rs384-header-on-the-es384-key": (unsigned_token(sandbox.header(alg="RS384"), sandbox.claims(DISCOVERY),
                                                         b"x" * 256), "key_not_for_alg"),
        "expired": (sandbox.token(DISCOVERY, iat=now - 900, exp=now - 120), "expired"),
        "not-yet-valid": (sandbox.token(DISCOVERY, nbf=now + 120), "not_yet_valid"),
        "issued-in-the-future": (sandbox.token(DISCOVERY, iat=now + 120), "not_yet_valid"),
        "lifetime-too-long": (sandbox.token(DISCOVERY, exp=now + 2 * 86400), "lifetime_too_long"),
        "exp-as-a-string": (sandbox.token(DISCOVERY, exp=str(now + 60)), "bad_exp"),
        "wrong-aud-path": (sandbox.token(f"{DISCOVERY}/{SERVICE_ID}"), "wrong_aud"),
        "wrong-aud-host": (sandbox.token("https://cds.elsewhere.example/cds-services"), "wrong_aud"),
        "unknown-iss": (sandbox.token(DISCOVERY, iss="https://unknown.example"), "untrusted_iss"),
        "no-iss": (sandbox.token(DISCOVERY, iss=None), "no_iss"),
        "jku-off-the-allow-list": (attacker.token(DISCOVERY), "jku_not_allowed"),
        "jku-missing-for-a-jku-issuer": (epic.token(DISCOVERY, header={"jku": None}), "jku_not_allowed"),
        "unknown-kid": (sandbox.token(DISCOVERY, header={"kid": "no-such-kid"}), "unknown_kid"),
        "no-kid": (sandbox.token(DISCOVERY, header={"kid": None}), "no_kid"),
        "no-jti": (sandbox.token(DISCOVERY, jti=None), "no_jti"),
        "empty-jti": (sandbox.token(DISCOVERY, jti=""), "bad_jti"),
        "jti-with-a-nul": (sandbox.token(DISCOVERY, jti="a\x00b"), "bad_jti"),
        "jti-with-a-newline": (sandbox.token(DISCOVERY, jti="a\nb"), "bad_jti"),
        "no-exp": (sandbox.token(DISCOVERY, exp=None), "no_exp"),
        "no-iat": (sandbox.token(DISCOVERY, iat=None), "no_iat"),
        "no-aud": (sandbox.token(DISCOVERY, aud=None), "no_aud"),
        "tampered-payload": (with_payload(valid, {**sandbox.claims(DISCOVERY), "tenant": "hospital-b"}),
                             "bad_signature"),
        "tenant-missing": (keys["tenanted"].token(DISCOVERY), "tenant_not_allowed"),
        "tenant-not-listed": (keys["tenanted"].token(DISCOVERY, tenant="hospital-b"), "tenant_not_allowed"),
        "not-a-jwt": ("not-a-jwt", "malformed"),
        "three-garbage-parts": ("a.b.c", "malformed"),
        "huge-token": ("a" * 20_000, "token_too_large"),
    }


MATRIX_NAMES = ["wrong-key", "alg-none", "hs256-with-the-public-key-as-secret", "hs384-with-the-public-key-as-secret",
                "es256-not-allowed", "rs256-not-allowed", "rs384-header-on-the-es384-key", "expired",
                "not-yet-valid", "issued-in-the-future", "lifetime-too-long", "exp-as-a-string", "wrong-aud-path",
                "wrong-aud-host", "unknown-iss", "no-iss", "jku-off-the-allow-list", "jku-missing-for-a-jku-issuer",
                "unknown-kid", "no-kid", "no-jti", "empty-jti", "jti-with-a-nul", "jti-with-a-newline", "no-exp",
                "no-iat", "no-aud", "tampered-payload",
                "tenant-missing", "tenant-not-listed", "not-a-jwt", "three-garbage-parts", "huge-token"]


@pytest.mark.parametrize("name", MATRIX_NAMES)
def test_bad_token_is_an_empty_401_and_the_log_says_why_without_the_token(secure_client, keys, epic, attacker,
                                                                          attacker_jwks, auth_log, name):
    token, reason = _matrix(keys, epic, attacker)[name]
    response = call(secure_client, token)
    assert_operation_outcome(response.status_code, response.content_type, response.data, 401)
    messages = [r.getMessage() for r in auth_log.records]
    assert any(f"JWT refused: {reason} " in m for m in messages), messages
    assert not any(token[:40] in m for m in messages)
    assert attacker_jwks.seen == []  # an unlisted jku is never fetched, whatever the token


def test_matrix_names_are_all_tested(keys, epic, attacker):
    assert sorted(_matrix(keys, epic, attacker)) == sorted(MATRIX_NAMES)


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "bearer", "Token abc"],
                         ids=["empty", "bearer-alone", "bearer-blank", "basic", "lowercase-bearer-alone", "token"])
def test_authorization_header_without_a_bearer_token_is_401(secure_client, header):
    response = secure_client.get("/cds-services", headers={"Authorization": header})
    assert_operation_outcome(response.status_code, response.content_type, response.data, 401)


def test_no_authorization_header_is_401_on_every_cds_services_path(secure_client):
    assert call(secure_client, None).status_code == 401
    for path in (f"/cds-services/{SERVICE_ID}", f"/cds-services/{SERVICE_ID}/feedback", "/cds-services/unknown"):
        response = call(secure_client, None, path, "POST", json=hook_body())
        assert_operation_outcome(response.status_code, response.content_type, response.data, 401)


def test_replayed_jti_is_refused(secure_client, keys, auth_log):
    token = keys["sandbox"].token(DISCOVERY)
    assert call(secure_client, token).status_code == 200
    assert call(secure_client, token).status_code == 401
    assert any("JWT refused: replayed_jti" in r.getMessage() for r in auth_log.records)


def test_same_jti_from_another_issuer_is_its_own(secure_client, keys):
    jti = "shared-jti-value"
    assert call(secure_client, keys["sandbox"].token(DISCOVERY, jti=jti)).status_code == 200
    assert call(secure_client, keys["tenanted"].token(DISCOVERY, jti=jti, tenant="hospital-a")).status_code == 200


def test_a_failed_token_does_not_use_up_its_jti(secure_client, keys):
    jti = "jti-of-a-bad-token"
    assert call(secure_client, keys["attacker-ec"].token(DISCOVERY, jti=jti)).status_code == 401
    assert call(secure_client, keys["sandbox"].token(DISCOVERY, jti=jti)).status_code == 200


def test_feedback_path_is_guarded_and_passes_a_valid_token_on(secure_client, keys):
    path = f"/cds-services/{SERVICE_ID}/feedback"
    response = call(secure_client, keys["sandbox"].token(BASE + path), path, "POST", json={"feedback": []})
    assert response.status_code != 401


def test_knowledge_pages_and_healthz_need_no_token(secure_client):
    assert secure_client.get("/healthz").status_code == 200
    assert secure_client.get("/knowledge").status_code == 200


def test_aud_is_built_from_public_url_when_set(secure_settings, knowledge, keys, tmp_path):
    settings = dataclasses.replace(secure_settings, public_url="https://cds.example.org/base/", data_dir=tmp_path)
    client = create_app(settings, knowledge).test_client()
    assert call(client, keys["sandbox"].token("https://cds.example.org/base/cds-services")).status_code == 200
    assert call(client, keys["sandbox"].token(DISCOVERY)).status_code == 401


# --- configuration -----------------------------------------------------------------------------------------------


def test_auth_off_logs_a_warning_at_start_and_lets_callers_in(knowledge, tmp_path, auth_log):
    client = create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path, auth="off"), knowledge).test_client()
    warnings = [r.getMessage() for r in auth_log.records if r.levelno == logging.WARNING]
    assert any("authentication is OFF" in m for m in warnings)
    assert client.get("/cds-services").status_code == 200


def test_auth_on_logs_no_off_warning(secure_settings, knowledge, tmp_path, auth_log):
    create_app(dataclasses.replace(secure_settings, data_dir=tmp_path), knowledge)
    assert not any("authentication is OFF" in r.getMessage() for r in auth_log.records)


def test_auth_defaults_to_off_and_the_setting_must_be_on_or_off(knowledge, tmp_path):
    assert Settings.from_env({}).auth == "off"
    with pytest.raises(ValueError, match="SPASM_CDS_AUTH"):
        create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path, auth="maybe"), knowledge)


def test_auth_on_without_issuers_refuses_every_call(knowledge, keys, tmp_path):
    settings = Settings(knowledge_dir=REPO, data_dir=tmp_path, auth="on", public_url=BASE)
    client = create_app(settings, knowledge).test_client()
    assert call(client, keys["sandbox"].token(DISCOVERY)).status_code == 401
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(("entry", "problem"), [
    ({"jwks_file": "k.json", "jku": ["https://a.example/jwks"]}, "issuers"),
    ({}, "issuers"),
    ({"jku": ["not a url"]}, "jku"),
    ({"jwks_file": "missing.json"}, "is not a readable JWK Set"),
    ({"jwks_file": "k.json", "extra": 1}, "issuers"),
], ids=["both-sources", "no-source", "jku-not-a-url", "jwks-file-missing", "unknown-field"])
def test_broken_trusted_issuers_file_stops_start_up_naming_the_problem(knowledge, keys, tmp_path, entry, problem):
    path = write_issuers(tmp_path / "config", {SANDBOX_ISS: entry}, jwks_files={"k.json": keys["sandbox"].jwks()})
    with pytest.raises(ValueError, match=problem):
        create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path, auth="on", public_url=BASE,
                                 trusted_issuers=str(path)), knowledge)


def test_unknown_kids_refetch_a_jwks_at_most_once_per_interval(epic):
    now = [1000.0]
    with JwksServer(jwks=epic.jwks()) as server:
        keysets = KeySets(ttl_s=300, min_refetch_s=10, timeout_s=2, clock=lambda: now[0])
        assert keysets.jwk(server.url, epic.kid)["kid"] == epic.kid
        for i in range(20):
            assert keysets.jwk(server.url, f"made-up-{i}") is None
        assert len(server.seen) == 1
        now[0] += 11
        assert keysets.jwk(server.url, "made-up-again") is None
        assert len(server.seen) == 2
        now[0] += 301
        assert keysets.jwk(server.url, epic.kid) is not None
        assert len(server.seen) == 3


# --- what a refusal tells the caller, the log and /metrics ----------------------------------------------------------


def jwt_failures(client, reason: str) -> float:
    from tests.api.test_ops import metric

    return metric(client.get("/metrics").data.decode(), "spasm_cds_jwt_failures_total", reason=reason)


@pytest.mark.parametrize(("name", "challenge"), [
    ("no-header", 'Bearer realm="cds-services"'),
    ("basic", 'Bearer realm="cds-services"'),
    ("huge-token", 'Bearer realm="cds-services", error="invalid_request"'),
    ("wrong-key", 'Bearer realm="cds-services", error="invalid_token"'),
    ("expired", 'Bearer realm="cds-services", error="invalid_token"'),
])
def test_a_401_carries_an_rfc6750_bearer_challenge_without_the_reason(secure_client, keys, epic, attacker, name,
                                                                      challenge):
    headers = {"no-header": {}, "basic": {"Authorization": "Basic dXNlcjpwYXNz"}}.get(name)
    if headers is None:
        headers = {"Authorization": f"Bearer {_matrix(keys, epic, attacker)[name][0]}"}
    response = secure_client.get("/cds-services", headers=headers)
    assert response.status_code == 401 and response.data == b""
    assert response.headers["WWW-Authenticate"] == challenge


def test_each_refusal_is_counted_under_its_reason(secure_client, keys):
    before = {r: jwt_failures(secure_client, r) for r in ("wrong_aud", "untrusted_iss", "replayed_jti")}
    call(secure_client, keys["sandbox"].token("https://other-service.example/cds-services"))
    call(secure_client, keys["sandbox"].token(DISCOVERY, iss="https://unknown.example"))
    token = keys["sandbox"].token(DISCOVERY)
    call(secure_client, token)
    call(secure_client, token)
    assert {r: jwt_failures(secure_client, r) - before[r] for r in before} == \
        {"wrong_aud": 1, "untrusted_iss": 1, "replayed_jti": 1}


def test_the_refusal_log_names_the_iss_and_aud_received_and_never_the_token(secure_client, keys, auth_log):
    other_service = keys["sandbox"].token("https://other-service.example/cds-services")
    untrusted = keys["sandbox"].token("https://other-service.example/x\nforged line",
                                      iss="https://unknown.example/" + "a" * 500)
    call(secure_client, other_service)
    call(secure_client, untrusted)
    messages = [r.getMessage() for r in auth_log.records if r.getMessage().startswith("JWT refused")]
    assert messages[0] == (f"JWT refused: wrong_aud (iss: {SANDBOX_ISS}, aud: https://other-service.example/"
                           f"cds-services; expected aud: {DISCOVERY})")
    assert messages[1].startswith("JWT refused: untrusted_iss (iss: https://unknown.example/aaa")
    assert "aud: https://other-service.example/x?forged line;" in messages[1]  # control characters escaped
    assert "a" * 250 not in messages[1]  # trimmed
    assert not any(t.split(".")[1][:30] in m for m in messages for t in (other_service, untrusted))


# --- aud never comes from the Host header -------------------------------------------------------------------------


def test_auth_on_without_a_public_url_refuses_to_start_in_one_line(secure_settings, knowledge, tmp_path):
    with pytest.raises(ValueError, match="SPASM_CDS_AUTH=on needs SPASM_CDS_PUBLIC_URL") as refused:
        create_app(dataclasses.replace(secure_settings, public_url="", data_dir=tmp_path), knowledge)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("url", ["cds.example.org", "ftp://cds.example.org", "https://cds.example.org/?x=1", "/"])
def test_a_public_url_that_is_not_an_absolute_http_url_refuses_to_start(secure_settings, knowledge, tmp_path, url):
    with pytest.raises(ValueError, match="SPASM_CDS_PUBLIC_URL"):
        create_app(dataclasses.replace(secure_settings, public_url=url, data_dir=tmp_path), knowledge)


def test_a_token_for_the_host_header_is_refused_when_the_public_url_differs(secure_client, keys):
    token = keys["sandbox"].token("http://evil.example/cds-services")
    assert secure_client.get("/cds-services", headers={"Authorization": f"Bearer {token}", "Host": "evil.example"}
                             ).status_code == 401


def test_with_the_database_down_and_the_in_process_memory_full_a_token_gets_503_not_401(keys, tmp_path):
    from cds_service.auth import Verifier, load_trusted_issuers
    from cds_service.errors import StoreUnavailable, Unauthorized
    from cds_service.state import connect
    from cds_service.state.replay import JtiStore

    path = write_issuers(tmp_path, {SANDBOX_ISS: {"jwks_file": "jwks.json"}}, {"jwks.json": keys["sandbox"].jwks()})
    unreachable = connect("postgresql://spasm:none@127.0.0.1:1/spasm", timeout_s=1)
    verifier = Verifier(load_trusted_issuers(path), KeySets(300, 10, 2), JtiStore(unreachable, max_kept=1), 30, 3600)
    try:
        first = keys["sandbox"].token(DISCOVERY)
        assert verifier.verify(f"Bearer {first}", DISCOVERY).issuer == SANDBOX_ISS
        with pytest.raises(Unauthorized) as replay:
            verifier.verify(f"Bearer {first}", DISCOVERY)
        assert replay.value.status == 401
        with pytest.raises(StoreUnavailable) as full:
            verifier.verify(f"Bearer {keys['sandbox'].token(DISCOVERY)}", DISCOVERY)
        assert full.value.headers() == {"Retry-After": "5"}
    finally:
        unreachable.engine.dispose()


# --- per-issuer trust: audiences, algorithms, a JWK Set URL (issue 14) ------------------------------------------

HAND_ISS = "https://hand-configured.example"


@pytest.fixture(scope="module")
def hand_jwks():
    with JwksServer() as server:
        yield server


@pytest.fixture(scope="module")
def hand(hand_jwks):
    """An EHR that publishes one JWK Set, sends no jku, signs RS384 only, and whose aud was typed by hand."""
    issuer = rsa_issuer(iss=HAND_ISS, kid="hand-1", jku=None)
    hand_jwks.jwks = issuer.jwks()
    return issuer


@pytest.fixture(scope="module")
def per_issuer_client(tmp_path_factory, keys, hand, hand_jwks, knowledge):
    folder = tmp_path_factory.mktemp("auth-per-issuer")
    issuers = write_issuers(folder / "config", {
        SANDBOX_ISS: {"jwks_file": "sandbox-jwks.json"},
        HAND_ISS: {"jwks_url": hand_jwks.url, "audiences": [BASE, f"{BASE}/"], "algorithms": ["RS384"]},
    }, jwks_files={"sandbox-jwks.json": keys["sandbox"].jwks()})
    settings = Settings(knowledge_dir=REPO, data_dir=folder / "data", auth="on", public_url=BASE,
                        trusted_issuers=str(issuers), jwks_min_refetch_s=0.0)
    return create_app(settings, knowledge).test_client()


@pytest.mark.parametrize("aud", [DISCOVERY, BASE, f"{BASE}/"], ids=["called-url", "base-url", "base-url-slash"])
def test_an_issuer_may_send_the_audiences_listed_for_it(per_issuer_client, hand, aud):
    assert call(per_issuer_client, hand.token(aud)).status_code == 200


def test_listed_audiences_are_that_issuers_only(per_issuer_client, keys, hand, auth_log):
    assert call(per_issuer_client, hand.token(f"{DISCOVERY}/x")).status_code == 401  # not listed
    assert call(per_issuer_client, keys["sandbox"].token(BASE)).status_code == 401  # another issuer
    assert "JWT refused: wrong_aud" in auth_log.text


def test_keys_come_from_the_issuers_jwks_url_and_a_jku_in_the_token_is_never_fetched(per_issuer_client, hand,
                                                                                      hand_jwks, attacker_jwks):
    before = len(attacker_jwks.seen)
    token = hand.token(DISCOVERY, header={"jku": attacker_jwks.url})
    assert call(per_issuer_client, token).status_code == 200
    assert len(attacker_jwks.seen) == before and "/jwks.json" in hand_jwks.seen


def test_an_algorithm_not_listed_for_the_issuer_is_refused(per_issuer_client, auth_log):
    impostor = ec_issuer(iss=HAND_ISS, kid="hand-1", jku=None)  # ES384 is accepted by the service, not for this iss
    assert call(per_issuer_client, impostor.token(DISCOVERY)).status_code == 401
    assert "JWT refused: alg_not_allowed" in auth_log.text


def test_a_trusted_issuers_file_with_two_key_sources_is_refused(tmp_path, hand_jwks):
    path = write_issuers(tmp_path, {HAND_ISS: {"jwks_url": hand_jwks.url, "jku": [hand_jwks.url]}})
    with pytest.raises(ValueError, match="SPASM_CDS_TRUSTED_ISSUERS is not valid"):
        load_trusted_issuers(path)
