"""A small CDS Hooks client for integration tests: hook calls and feedback over real HTTP, and a bounded load of
feedback posts from many concurrent clients on keep-alive connections (loopback only)."""
from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cds_service.render.cards import EXTENSION_KEY, OVERRIDE_SYSTEM
from tests.support.loopback import http_request

JSON = {"Content-Type": "application/json"}
RECONNECT_EVERY = 25


def call(base_url: str, service_id: str, body: dict[str, Any], hook_instance: str | None = None,
         headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """POST a hook call (a new hookInstance unless given) and return its cards; asserts a 200."""
    body = {**body, "hookInstance": hook_instance or str(uuid.uuid4())}
    status, data = http_request("POST", f"{base_url}/cds-services/{service_id}", json.dumps(body).encode(),
                                {**JSON, **(headers or {})})
    assert status == 200, data[:500]
    return json.loads(data)["cards"]


def send_feedback(base_url: str, service_id: str, *items: dict[str, Any],
                  headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """POST one feedback body; return (status, body)."""
    return http_request("POST", f"{base_url}/cds-services/{service_id}/feedback",
                        json.dumps({"feedback": list(items)}).encode(), {**JSON, **(headers or {})})


def post_json(url: str, doc: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """POST a JSON document; return (status, Content-Type, body) for any status."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.request("POST", parts.path, json.dumps(doc).encode(), {**JSON, **(headers or {})})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


def timestamp(epoch_s: float) -> str:
    """RFC 3339 UTC to the millisecond, as CDS Hooks feedback carries it."""
    ms = round(epoch_s * 1000)
    moment = datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def overridden(card: str, at_s: float, code: str | None = None, comment: str | None = None) -> dict[str, Any]:
    """An overridden outcome, with one of our override reasons and/or a comment."""
    reason: dict[str, Any] = {}
    if code:
        reason["reason"] = {"system": OVERRIDE_SYSTEM, "code": code}
    if comment:
        reason["userComment"] = comment
    item: dict[str, Any] = {"card": card, "outcome": "overridden", "outcomeTimestamp": timestamp(at_s)}
    if reason:
        item["overrideReason"] = reason
    return item


def accepted(card: str, at_s: float, suggestion: str = "s-1") -> dict[str, Any]:
    """An accepted outcome naming one suggestion."""
    return {"card": card, "outcome": "accepted", "acceptedSuggestions": [{"id": suggestion}],
            "outcomeTimestamp": timestamp(at_s)}


def rules_of(card: dict[str, Any]) -> list[str]:
    """The rule ids a card shows."""
    return list((card.get("extension") or {}).get(EXTENSION_KEY, {}).get("rules") or ())


def shown_rules(cards: list[dict[str, Any]]) -> set[str]:
    """Every rule id the cards show."""
    return {rule for card in cards for rule in rules_of(card)}


def card_of(cards: list[dict[str, Any]], rule_id: str) -> dict[str, Any]:
    """The card showing rule_id; asserts there is one."""
    found = [c for c in cards if rule_id in rules_of(c)]
    assert found, f"no card shows {rule_id}; shown: {sorted(shown_rules(cards))}"
    return found[0]


def post_concurrently(base_url: str, service_id: str, bodies: list[bytes], clients: int = 16,
                      timeout_s: float = 60.0) -> tuple[Counter[int], float]:
    """POST every body to the service's feedback endpoint from `clients` threads, each on its own keep-alive
    connection; return the count of each status and the seconds the whole load took."""
    parts = urlsplit(base_url)
    path = f"/cds-services/{service_id}/feedback"
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(share: list[bytes]) -> None:
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout_s)
        seen: Counter[int] = Counter()
        start.wait()
        try:
            for n, body in enumerate(share, 1):
                if n % RECONNECT_EVERY == 0:
                    # a fresh connection now and then, as EHR clients do, so the load spreads over the workers
                    connection.close()
                    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout_s)
                try:
                    connection.request("POST", path, body, JSON)
                    response = connection.getresponse()
                    response.read()
                    seen[response.status] += 1
                except (OSError, http.client.HTTPException):
                    seen[0] += 1  # no answer: counted, never retried, so a lost post shows
                    connection.close()
                    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout_s)
        finally:
            connection.close()
            with lock:
                statuses.update(seen)

    threads = [threading.Thread(target=client, args=(bodies[i::clients],)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return statuses, time.perf_counter() - began


def feedback_bodies(count: int, known_card: str, base_s: float) -> list[bytes]:
    """`count` distinct feedback bodies (distinct card, outcome and timestamp): a quarter on a known card with a
    snooze, a quarter accepted, the rest overridden with a comment on cards the service never issued."""
    bodies = []
    for i in range(count):
        at = base_s + i / 1000
        if i % 4 == 0:
            item = overridden(known_card, at, code="snooze-30d")
        elif i % 4 == 1:
            item = accepted(f"unknown-{i}", at)
        else:
            item = overridden(f"unknown-{i}", at, comment="load test")
        bodies.append(json.dumps({"feedback": [item]}).encode())
    return bodies
