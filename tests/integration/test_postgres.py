"""Scale-out on a real PostgreSQL: 5,000 feedback posts from 16 clients against gunicorn (2 workers) give exactly
5,000 rows; two service instances on different ports share one database, so a snooze set through one holds on the
other and a JWT used on one is refused by the other; with the database down, hook calls still answer (without
de-duplication, logged) while feedback answers 503 and is stored when sent again."""
from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date

import pytest
from sqlalchemy import func, select

from cds_service.case_runner import build_request, service_for
from cds_service.state import open_database
from cds_service.state.tables import Feedback
from tests.support.assertions import assert_operation_outcome
from tests.support.cds_client import (
    call,
    card_of,
    feedback_bodies,
    overridden,
    post_concurrently,
    post_json,
    send_feedback,
    shown_rules,
)
from tests.support.jwt_issuer import SANDBOX_ISS, ec_issuer, write_issuers
from tests.support.loopback import http_request
from tests.support.service_server import ServiceServer

pytestmark = pytest.mark.integration
PUBLIC_URL = "https://cds.example.org"
ISSUER = ec_issuer()


def feedback_rows(url: str) -> tuple[int, int]:
    """(all rows, rows on known cards) of the feedback table."""
    database = open_database(url)
    try:
        with database.engine.connect() as conn:
            rows = conn.execute(select(func.count()).select_from(Feedback)).scalar_one()
            known = conn.execute(select(func.count()).select_from(Feedback).where(Feedback.card_known)).scalar_one()
    finally:
        database.engine.dispose()
    return rows, known


def warning_request(knowledge) -> tuple[str, str, dict]:
    """(rule, service id, request) of the first patient-view case whose card is a warning on its own."""
    case = next(c for c in knowledge.cases if c.expect == "card" and c.hook == "patient-view"
                and knowledge.rules[c.rule].severity == "warning" and not knowledge.rules[c.rule].card.group)
    service = service_for(knowledge, case)
    return case.rule, service.id, build_request(knowledge, case, service, date.today())


def bearer(path: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ISSUER.token(PUBLIC_URL + path)}"}


@pytest.fixture(scope="module")
def replicas(postgres, tmp_path_factory) -> Iterator[tuple[ServiceServer, ServiceServer]]:
    """Two instances, JWT verification on, sharing one PostgreSQL database (and nothing else)."""
    folder = tmp_path_factory.mktemp("pg-replicas")
    issuers = write_issuers(folder, {SANDBOX_ISS: {"jwks_file": "jwks.json"}}, {"jwks.json": ISSUER.jwks()})
    env = {"SPASM_CDS_DATABASE_URL": postgres.create_database(), "SPASM_CDS_AUTH": "on",
           "SPASM_CDS_TRUSTED_ISSUERS": str(issuers), "SPASM_CDS_PUBLIC_URL": PUBLIC_URL}
    with ServiceServer(extra_env=env, workers=2) as first, ServiceServer(extra_env=env, workers=1) as second:
        yield first, second


def test_5000_feedback_posts_from_16_clients_on_gunicorn_with_postgresql_are_all_stored(postgres, knowledge):
    url = postgres.create_database()
    rule, service_id, body = warning_request(knowledge)
    with ServiceServer(extra_env={"SPASM_CDS_DATABASE_URL": url}, workers=2) as server:
        card = card_of(call(server.url, service_id, body), rule)
        statuses, seconds = post_concurrently(server.url, service_id, feedback_bodies(5000, card["uuid"], 1.8e9))
        assert "Traceback" not in server.log_text()
    rows, known = feedback_rows(url)
    print(f"\nPostgreSQL: 5000 feedback posts from 16 clients in {seconds:.1f} s; {rows} rows")
    assert statuses == {200: 5000}
    assert rows == 5000 and known == 1250


def test_a_snooze_set_through_one_instance_holds_on_the_other(replicas, knowledge):
    first, second = replicas
    rule, service_id, body = warning_request(knowledge)
    path = f"/cds-services/{service_id}"
    card = card_of(call(first.url, service_id, body, headers=bearer(path)), rule)

    status, _ = send_feedback(first.url, service_id, overridden(card["uuid"], 1.8e9, "snooze-30d"),
                              headers=bearer(f"{path}/feedback"))

    assert status == 200
    assert rule not in shown_rules(call(second.url, service_id, body, headers=bearer(path)))
    assert rule not in shown_rules(call(first.url, service_id, body, headers=bearer(path)))


def test_a_jwt_used_on_one_instance_is_refused_by_the_other(replicas):
    first, second = replicas
    token = bearer("/cds-services")
    assert http_request("GET", f"{first.url}/cds-services", headers=token)[0] == 200
    assert http_request("GET", f"{second.url}/cds-services", headers=token) == (401, b"")
    assert "JWT refused: replayed_jti" in second.log_text()


@pytest.mark.parametrize("jti", ["nul\x00inside", "line\nbreak", "del\x7f"])
def test_a_jti_with_control_characters_is_refused_and_the_replay_store_keeps_working(replicas, jti):
    """PostgreSQL cannot store NUL in text: such an id must be refused as a bad jti, not taken for a database
    outage (which would keep the id in process and fail every write-through after it)."""
    first, second = replicas
    token = {"Authorization": f"Bearer {ISSUER.token(PUBLIC_URL + '/cds-services', jti=jti)}"}
    assert http_request("GET", f"{first.url}/cds-services", headers=token) == (401, b"")
    assert "JWT refused: bad_jti" in first.log_text()
    good = bearer("/cds-services")
    assert http_request("GET", f"{first.url}/cds-services", headers=good)[0] == 200
    assert http_request("GET", f"{second.url}/cds-services", headers=good) == (401, b"")  # it reached the database
    assert "cannot take JWT ids" not in first.log_text()


def test_with_the_database_down_hook_calls_answer_and_feedback_is_503_until_it_is_back(postgres, knowledge):
    url = postgres.create_database()
    rule, service_id, body = warning_request(knowledge)
    with ServiceServer(extra_env={"SPASM_CDS_DATABASE_URL": url}, workers=1) as server:
        before = call(server.url, service_id, body)
        card = card_of(before, rule)
        assert len(call(server.url, service_id, body)) < len(before)  # the info cards rest for a day
        item = overridden(card["uuid"], 1.8e9, "snooze-30d")
        postgres.stop()
        try:
            during = call(server.url, service_id, body)
            status, content_type, answer = post_json(f"{server.url}/cds-services/{service_id}/feedback",
                                                     {"feedback": [item]})
        finally:
            postgres.start()
        assert shown_rules(during) == shown_rules(before)  # no de-duplication: every card, as on the first call
        doc = assert_operation_outcome(status, content_type, answer, 503)
        assert doc["issue"][0]["code"] == "transient"
        assert "cards shown without de-duplication or suppression" in server.log_text()
        assert send_feedback(server.url, service_id, item)[0] == 200
        # the card memory tries the database again at most once a second after a failure: the snooze holds from
        # then on
        deadline = time.monotonic() + 5
        while rule in shown_rules(call(server.url, service_id, body)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert rule not in shown_rules(call(server.url, service_id, body))
    assert feedback_rows(url) == (1, 1)


def test_nul_and_edge_timestamps_on_postgresql_are_400_or_stored_never_503(postgres, knowledge):
    """PostgreSQL text cannot hold NUL: a NUL where it would be stored is a 400 (it was a 503 'send it again' for
    ever); a NUL where nothing is stored changes nothing; timestamps at the ends of the date range are stored."""
    url = postgres.create_database()
    rule, service_id, body = warning_request(knowledge)
    feedback_url = f"/cds-services/{service_id}/feedback"
    with ServiceServer(extra_env={"SPASM_CDS_DATABASE_URL": url}, workers=1) as server:
        card = card_of(call(server.url, service_id, body), rule)
        refused = [post_json(server.url + feedback_url,
                             {"feedback": [overridden(card["uuid"], 1.8e9, comment="a\0b")]}),
                   post_json(server.url + feedback_url,
                             {"feedback": [{**overridden(card["uuid"], 1.8e9), "card": "c\0"}]}),
                   post_json(f"{server.url}/cds-services/{service_id}", {**body, "hookInstance": "h\0"})]
        elsewhere = call(server.url, service_id, {**body, "extension": {"note": "a\0b"}})
        edges = [send_feedback(server.url, service_id, {**overridden(card["uuid"], 1.8e9), "outcomeTimestamp": at})[0]
                 for at in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:60-23:59")]
        log = server.log_text()
    for status, content_type, answer in refused:
        assert_operation_outcome(status, content_type, answer, 400)
    assert card_of(elsewhere, rule) and "cards shown without de-duplication" not in log
    assert edges == [200, 200] and "Traceback" not in log
    assert feedback_rows(url) == (2, 2)
