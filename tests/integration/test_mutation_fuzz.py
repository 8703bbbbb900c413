"""The seeded mutation fuzzer (tests/support/mutations.py) against the service under gunicorn over real HTTP on
loopback: thousands of mutants of the demo hook calls and of feedback on their cards. Never a 5xx; every non-2xx
is a JSON OperationOutcome; no traceback in the service log.

The seed is printed (and named in any failure); SPASM_CDS_FUZZ_SEED replays a run, SPASM_CDS_FUZZ_CASES sets the
number of cases (6,000 by default: about 10 s on a 2-core machine shared with other work)."""
from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from cds_service.demo import demo_bundle, hook_request, load_demos
from tests.support.mutations import Base, Mutant, mutants
from tests.support.service_server import ServiceServer

pytestmark = pytest.mark.integration
CASES = int(os.environ.get("SPASM_CDS_FUZZ_CASES", "6000"))
CLIENTS = 4


@pytest.fixture(scope="module")
def served() -> Iterator[ServiceServer]:
    """A service of its own (2 gunicorn workers, SQLite, de-duplication on), so its log holds only these cases."""
    with ServiceServer(workers=2) as server:
        yield server


class Client:
    """One keep-alive connection; a request the server closed the connection on is sent again on a new one."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path: str, body: bytes) -> tuple[int, str, bytes]:
        for attempt in (1, 2):
            try:
                self.connection.request("POST", path, body, {"Content-Type": "application/json"})
                response = self.connection.getresponse()
                answer = response.status, response.getheader("Content-Type") or "", response.read()
                if response.will_close:
                    self.reconnect()
                return answer
            except (http.client.HTTPException, OSError):
                self.reconnect()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def reconnect(self) -> None:
        self.connection.close()
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)


def demo_bases(knowledge, client: Client) -> list[Base]:
    """Every demo patient's hook call, and feedback (accepted, overridden with a reason, with a comment) on each card
    it gives; each is sent once unchanged and must be answered 200."""
    demos = load_demos()
    bases: list[Base] = []
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    for demo in demos.patients:
        order = demos.order(demo.order) if demo.order else None
        service, body = hook_request(demo_bundle(demo, date.today()), knowledge, demo.hook, order, str(uuid.uuid4()))
        path = f"/cds-services/{service.id}"
        status, _, answer = client.post(path, json.dumps(body).encode())
        assert status == 200, answer[:300]
        bases.append((f"hook:{demo.id}", path, body))
        for card in json.loads(answer)["cards"]:
            entries = [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": now,
                        "overrideReason": {"userComment": "not now"}}]
            if card.get("overrideReasons"):
                reason = card["overrideReasons"][0]
                entries.append({"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": now,
                                "overrideReason": {"reason": {"system": reason["system"], "code": reason["code"]},
                                                   "userComment": "seen"}})
            for suggestion in card.get("suggestions") or ():
                entries.append({"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": now,
                                "acceptedSuggestions": [{"id": suggestion["uuid"]}]})
            for i, entry in enumerate(entries):
                bases.append((f"feedback:{demo.id}:{i}", f"{path}/feedback", {"feedback": [entry]}))
    for name, path, doc in bases:
        if name.startswith("feedback:"):
            status, _, answer = client.post(path, json.dumps(doc).encode())
            assert status == 200, (name, answer[:300])
    return bases


def problem(status: int, content_type: str, body: bytes) -> str | None:
    """What is wrong with an answer, or None: a 5xx, or a non-2xx that is not a JSON OperationOutcome."""
    if status >= 500:
        return f"{status}: {body[:200]!r}"
    if status < 300:
        return None
    if content_type.split(";")[0] not in ("application/fhir+json", "application/json"):
        return f"{status} with Content-Type {content_type!r}"
    try:
        doc = json.loads(body)
        issue = doc["issue"][0]
        assert doc["resourceType"] == "OperationOutcome" and issue["severity"] == "error"
        assert issue["code"] and issue["diagnostics"] and "Traceback" not in issue["diagnostics"]
    except (ValueError, KeyError, IndexError, TypeError, AssertionError):
        return f"{status} that is not an OperationOutcome: {body[:200]!r}"
    return None


def run(port: int, cases: list[Mutant]) -> tuple[Counter, list[tuple[str, str]]]:
    """Send every case from CLIENTS keep-alive connections; the statuses, and each case that went wrong."""
    statuses: Counter = Counter()
    failures: list[tuple[str, str]] = []
    lock = threading.Lock()
    queue = iter(cases)

    def work() -> None:
        client = Client(port)
        try:
            while True:
                with lock:
                    case = next(queue, None)
                if case is None:
                    return
                try:
                    answer = client.post(case.path, case.body)
                    wrong = problem(*answer)
                except (http.client.HTTPException, OSError) as exc:
                    answer, wrong = (0, "", b""), f"no answer: {exc!r}"
                with lock:
                    statuses[answer[0]] += 1
                    if wrong:
                        failures.append((case.name, wrong))
        finally:
            client.connection.close()

    threads = [threading.Thread(target=work) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses, failures


def test_thousands_of_mutated_hook_calls_and_feedback_never_give_a_5xx(served, knowledge):
    seed = int(os.environ.get("SPASM_CDS_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nmutation fuzzer: seed {seed} (replay with SPASM_CDS_FUZZ_SEED={seed})")
    client = Client(served.port)
    try:
        bases = demo_bases(knowledge, client)
    finally:
        client.connection.close()
    cases = list(mutants(bases, CASES, seed))
    started = time.monotonic()

    statuses, failures = run(served.port, cases)

    seconds = time.monotonic() - started
    log = served.log_text()
    print(f"mutation fuzzer: {len(cases)} cases from {len(bases)} bases in {seconds:.1f} s; "
          f"statuses {dict(sorted(statuses.items()))}; {sum(n for s, n in statuses.items() if s >= 500)} x 5xx")
    assert not failures, f"seed {seed}: {len(failures)} case(s) went wrong, e.g. " + "\n".join(
        f"{name}: {wrong}" for name, wrong in failures[:10])
    assert sum(statuses.values()) == len(cases)
    assert statuses[200] > len(cases) // 10, "too few mutants were still valid requests: the fuzzer tests little"
    assert "Traceback" not in log and "unhandled error" not in log, f"seed {seed}: {log[-3000:]}"
