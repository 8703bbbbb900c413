"""JWT replay across processes: the jti store is the database, so a token accepted by one gunicorn worker is refused
by the other, and by a second service instance sharing the SQLite file. Also over real gunicorn: the CORS preflight,
and the start-up warning when authentication is off."""
from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator

import pytest

from tests.support.jwt_issuer import SANDBOX_ISS, ec_issuer, write_issuers
from tests.support.service_server import ServiceServer
from tests.support.workers import connections_on_two_workers

pytestmark = pytest.mark.integration
PUBLIC_URL = "https://cds.example.org"  # replicas behind one load balancer share the URL EHRs call
DISCOVERY_AUD = f"{PUBLIC_URL}/cds-services"
ISSUER = ec_issuer()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory) -> Iterator[tuple[ServiceServer, ServiceServer]]:
    """Two service instances on one SQLite file: the first with two workers, the second with one."""
    folder = tmp_path_factory.mktemp("replicas")
    issuers = write_issuers(folder / "config", {SANDBOX_ISS: {"jwks_file": "jwks.json"}}, {"jwks.json": ISSUER.jwks()})
    env = {"SPASM_CDS_AUTH": "on", "SPASM_CDS_TRUSTED_ISSUERS": str(issuers),
           "SPASM_CDS_DATA_DIR": str(folder / "data"), "SPASM_CDS_PUBLIC_URL": PUBLIC_URL}
    with ServiceServer(extra_env=env, workers=2) as first, ServiceServer(extra_env=env, workers=1) as second:
        yield first, second


def get(connection: http.client.HTTPConnection, token: str | None, path: str = "/cds-services",
        origin: str | None = None) -> tuple[int, bytes, http.client.HTTPResponse]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if origin:
        headers["Origin"] = origin
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    return response.status, response.read(), response


def once(server: ServiceServer, token: str | None, origin: str | None = None) -> tuple[int, bytes, str | None]:
    """GET discovery on a fresh connection: status, body and Access-Control-Allow-Origin."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        status, body, response = get(connection, token, origin=origin)
        return status, body, response.getheader("Access-Control-Allow-Origin")
    finally:
        connection.close()


def test_token_accepted_by_one_worker_is_refused_by_the_other(replicas):
    first, _ = replicas
    one, other = connections_on_two_workers("127.0.0.1", first.port, first.process.pid)  # the gunicorn master
    try:
        token = ISSUER.token(DISCOVERY_AUD)
        status, body, _ = get(one, token)
        assert status == 200 and json.loads(body)["services"]
        status, body, _ = get(other, token)
        assert (status, body) == (401, b"")
        fresh = ISSUER.token(DISCOVERY_AUD)
        assert get(other, fresh)[0] == 200
        assert get(one, fresh)[0] == 401
    finally:
        one.close()
        other.close()
    assert first.log_text().count("JWT refused: replayed_jti") >= 2


def test_token_accepted_by_one_instance_is_refused_by_another_sharing_the_database(replicas):
    first, second = replicas
    token = ISSUER.token(DISCOVERY_AUD)
    assert once(first, token)[0] == 200
    assert once(second, token)[:2] == (401, b"")
    assert "JWT refused: replayed_jti" in second.log_text()
    other_way = ISSUER.token(DISCOVERY_AUD)
    assert once(second, other_way)[0] == 200
    assert once(first, other_way)[0] == 401


def test_one_token_sent_at_once_from_many_clients_is_accepted_exactly_once(replicas):
    first, second = replicas
    token = ISSUER.token(DISCOVERY_AUD)
    statuses: list[int] = []
    start = threading.Barrier(12)

    def send(server: ServiceServer) -> None:
        start.wait()
        statuses.append(once(server, token)[0])

    threads = [threading.Thread(target=send, args=(first if i % 3 else second,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [401] * 11


def test_token_whose_aud_is_the_backend_address_is_refused_when_public_url_is_set(replicas):
    first, _ = replicas
    assert once(first, ISSUER.token(f"{first.url}/cds-services"))[0] == 401


def test_preflight_over_gunicorn_allows_the_sandboxs_headers_without_a_token(replicas):
    first, _ = replicas
    connection = http.client.HTTPConnection("127.0.0.1", first.port, timeout=30)
    try:
        connection.request("OPTIONS", "/cds-services/spasm-cramps-patient-view", headers={
            "Origin": "http://127.0.0.1:8080", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert response.status == 200
    assert response.getheader("Access-Control-Allow-Origin") == "*"
    assert "authorization" in response.getheader("Access-Control-Allow-Headers").lower()
    status, _, allow_origin = once(first, None, origin="http://127.0.0.1:8080")
    assert status == 401 and allow_origin == "*"


def test_start_up_warns_when_authentication_is_off_and_only_then(replicas, service_server):
    first, _ = replicas
    assert "authentication is OFF" not in first.log_text()
    assert "authentication is OFF" in service_server.log_text()
