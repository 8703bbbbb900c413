"""The database going away with authentication on (PostgreSQL stopped under gunicorn, 2 workers): hook calls keep
answering with their cards, a replayed jti is still refused by the worker that accepted it, feedback is 503 with
Retry-After and stored when sent again, /readyz is 503 until the database is back, and the ids accepted meanwhile are
written through. And SQLite's write lock held by another connection: hook calls are answered at once, not after the
10 s busy timeout."""
from __future__ import annotations

import http.client
import json
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import date

import pytest

from cds_service.case_runner import build_request, service_for
from tests.api.test_ops import metric
from tests.integration.test_postgres import feedback_rows
from tests.support.assertions import assert_operation_outcome
from tests.support.cds_client import card_of, overridden, shown_rules
from tests.support.jwt_issuer import SANDBOX_ISS, ec_issuer, write_issuers
from tests.support.service_server import ServiceServer
from tests.support.workers import connections_on_two_workers

pytestmark = pytest.mark.integration
PUBLIC_URL = "https://cds.example.org"
ISSUER = ec_issuer()
CALLS_DURING_OUTAGE = 60


def warning_request(knowledge) -> tuple[str, str, dict]:
    """(rule, service id, request) of the first patient-view case whose card is a warning on its own."""
    case = next(c for c in knowledge.cases if c.expect == "card" and c.hook == "patient-view"
                and knowledge.rules[c.rule].severity == "warning" and not knowledge.rules[c.rule].card.group)
    service = service_for(knowledge, case)
    return case.rule, service.id, build_request(knowledge, case, service, date.today())


def send(connection: http.client.HTTPConnection, method: str, path: str, doc: dict | None = None,
         token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request on a keep-alive connection (so on one worker): status, headers, body. A fresh token for the path
    unless one is given."""
    headers = {"Authorization": f"Bearer {token or ISSUER.token(PUBLIC_URL + path)}"}
    body = None
    if doc is not None:
        body = json.dumps(doc).encode()
        headers["Content-Type"] = "application/json"
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def hook(connection, service_id: str, body: dict, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    return send(connection, "POST", f"/cds-services/{service_id}", {**body, "hookInstance": str(uuid.uuid4())},
                token)


def cards(answer: tuple[int, dict[str, str], bytes]) -> list[dict]:
    status, _, data = answer
    assert status == 200, data[:300]
    return json.loads(data)["cards"]


def auth_env(folder, **extra: str) -> dict[str, str]:
    issuers = write_issuers(folder, {SANDBOX_ISS: {"jwks_file": "jwks.json"}}, {"jwks.json": ISSUER.jwks()})
    return {"SPASM_CDS_AUTH": "on", "SPASM_CDS_TRUSTED_ISSUERS": str(issuers), "SPASM_CDS_PUBLIC_URL": PUBLIC_URL,
            **extra}


@pytest.fixture
def two_workers(server: ServiceServer) -> Iterator[tuple[http.client.HTTPConnection, http.client.HTTPConnection]]:
    one, other = connections_on_two_workers("127.0.0.1", server.port, server.process.pid)
    try:
        yield one, other
    finally:
        one.close()
        other.close()


@pytest.fixture
def server(postgres, tmp_path) -> Iterator[ServiceServer]:
    env = auth_env(tmp_path, SPASM_CDS_DATABASE_URL=postgres.create_database())
    with ServiceServer(extra_env=env, workers=2) as service:
        yield service


def test_with_postgresql_stopped_and_auth_on_hook_calls_answer_and_no_feedback_is_lost(postgres, server, two_workers,
                                                                                        knowledge):
    one, other = two_workers
    rule, service_id, body = warning_request(knowledge)
    path = f"/cds-services/{service_id}"
    before = cards(hook(one, service_id, body))
    item = overridden(card_of(before, rule)["uuid"], 1.8e9, "snooze-30d")
    assert send(one, "GET", "/readyz")[0] == 200

    postgres.stop()
    try:
        statuses: Counter[int] = Counter()
        with_cards = 0
        for i in range(CALLS_DURING_OUTAGE):
            answer = hook(one if i % 2 else other, service_id, body)
            statuses[answer[0]] += 1
            with_cards += answer[0] == 200 and rule in shown_rules(json.loads(answer[2])["cards"])
        kept_on_one = ISSUER.token(PUBLIC_URL + path)
        assert hook(one, service_id, body, kept_on_one)[0] == 200
        replayed_same_worker = hook(one, service_id, body, kept_on_one)
        replayed_other_worker = hook(other, service_id, body, kept_on_one)[0]  # the residual risk, measured
        feedback_during = send(one, "POST", f"{path}/feedback", {"feedback": [item]})
        ready_during = send(other, "GET", "/readyz")
    finally:
        postgres.start()

    time.sleep(1.1)  # the jti store tries the database again at most once a second
    ready_after = send(other, "GET", "/readyz")
    feedback_after = send(one, "POST", f"{path}/feedback", {"feedback": [item]})
    # worker one writes its ids through on its next call; then the token it kept is refused everywhere
    assert hook(one, service_id, body)[0] == 200
    replay_after = hook(other, service_id, body, kept_on_one)[0]
    metrics = send(one, "GET", "/metrics")[2].decode()
    log = server.log_text()

    print(f"\nPostgreSQL stopped, auth on: {sum(statuses.values())} hook calls, {dict(statuses)}, {with_cards} with "
          f"the card; replay on the same worker {replayed_same_worker[0]}, on the other worker "
          f"{replayed_other_worker}; feedback {feedback_during[0]} during, {feedback_after[0]} after; rows "
          f"{feedback_rows(postgres_url(server))}")
    assert statuses == {200: CALLS_DURING_OUTAGE} and with_cards == CALLS_DURING_OUTAGE
    assert replayed_same_worker[0] == 401
    assert replayed_same_worker[1]["www-authenticate"] == 'Bearer realm="cds-services", error="invalid_token"'
    doc = assert_operation_outcome(feedback_during[0], feedback_during[1]["content-type"], feedback_during[2], 503)
    assert doc["issue"][0]["code"] == "transient" and feedback_during[1]["retry-after"] == "5"
    assert ready_during[0] == 503 and json.loads(ready_during[2])["checks"]["database"] is False
    assert ready_after[0] == 200 and json.loads(ready_after[2])["checks"] == {"knowledge": True, "database": True}
    assert feedback_after[0] == 200
    assert feedback_rows(postgres_url(server)) == (1, 1)
    assert replay_after == 401
    assert metric(metrics, "spasm_cds_jti_in_process_total", event="kept") >= CALLS_DURING_OUTAGE // 2
    assert metric(metrics, "spasm_cds_jti_in_process_total", event="written_through") >= 1
    assert "this worker remembers the ids it accepts in process" in log
    assert "Traceback" not in log


def postgres_url(server: ServiceServer) -> str:
    return server._extra_env["SPASM_CDS_DATABASE_URL"]


def test_hook_calls_are_answered_at_once_while_another_connection_holds_the_sqlite_write_lock(tmp_path, knowledge):
    rule, service_id, body = warning_request(knowledge)
    path = f"/cds-services/{service_id}"
    env = auth_env(tmp_path, SPASM_CDS_DATA_DIR=str(tmp_path / "data"))
    with ServiceServer(extra_env=env, workers=2) as service:
        connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
        assert rule in shown_rules(cards(hook(connection, service_id, body)))
        holder = sqlite3.connect(tmp_path / "data" / "spasm-cds.sqlite3", isolation_level=None, timeout=1)
        holder.execute("BEGIN IMMEDIATE")  # as a long feedback burst or a migration would
        try:
            started = time.monotonic()
            answers = [hook(connection, service_id, body) for _ in range(10)]
            seconds = time.monotonic() - started
            token = ISSUER.token(PUBLIC_URL + path)
            assert hook(connection, service_id, body, token)[0] == 200
            replayed = hook(connection, service_id, body, token)[0]
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        metrics = send(connection, "GET", "/metrics")[2].decode()
        connection.close()
        log = service.log_text()
    print(f"\nSQLite write lock held: 10 hook calls answered in {seconds:.2f} s")
    assert [a[0] for a in answers] == [200] * 10
    assert all(rule in shown_rules(json.loads(a[2])["cards"]) for a in answers)
    assert seconds < 5, "each call waited for the lock (the busy timeout is 10 s)"
    assert replayed == 401
    assert metric(metrics, "spasm_cds_cards_unrecorded_total", reason="busy") >= 10
    assert "card memory unavailable (write lock busy)" in log
    assert "Traceback" not in log
