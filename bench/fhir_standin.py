"""A loopback FHIR stand-in for the fetch-mode benchmark: one patient's resources, every answer after a fixed delay.

It answers what a FHIR server would for the service's query templates (cds_service.bundles.answer_template: status=,
code= token lists, _sort=date, _count=, _include=<Type>:medication; a read of Patient/<id> or Medication/<id>), so
the service gets the data its templates ask for. A search parameter it does not carry out answers 400, and is
counted, so a new template parameter is noticed instead of being answered wrongly. It is a benchmark fixture, not a
FHIR server: a real one (sekmet-fhir) adds 3-25 ms of its own per query, which would blur a 50 ms-per-query test.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cds_service.bundles import answer_template
from tests.support.synthea import searchset


class FhirStandIn:
    """Serve one patient's resources on 127.0.0.1:<free port>/fhir, each answer after delay_s; use as a context."""

    def __init__(self, patient_id: str, resources: Mapping[str, list[dict[str, Any]]],
                 by_reference: Mapping[str, dict[str, Any]], delay_s: float = 0.05) -> None:
        self.patient_id = patient_id
        self.resources = [r for kind in resources.values() for r in kind]
        self.by_reference = dict(by_reference)
        self.delay_s = delay_s
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int, bytes]] = {}
        self.hits = 0
        self.errors = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.log: list[str] = []  # request targets, in arrival order (kept for the first calls only)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    def __enter__(self) -> FhirStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10  # an idle keep-alive connection frees its thread after this

            def do_GET(self) -> None:
                standin._enter(self.path)
                status = 500
                try:
                    status, payload = standin.answer(self.path)
                    time.sleep(standin.delay_s)
                    self.send_response(status)
                    self.send_header("Content-Type", "application/fhir+json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                finally:
                    standin._leave(status)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self._server = Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/fhir"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fhir-standin", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _enter(self, path: str) -> None:
        with self._lock:
            self.hits += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if len(self.log) < 1000:
                self.log.append(path)

    def _leave(self, status: int) -> None:
        with self._lock:
            self.in_flight -= 1
            if status >= 400:
                self.errors += 1

    def reset_counts(self) -> None:
        with self._lock:
            self.hits = self.errors = self.max_in_flight = 0
            self.log.clear()

    def answer(self, target: str) -> tuple[int, bytes]:
        """(status, JSON body) for a GET of target (path and query); cached, since the data never changes."""
        with self._lock:
            cached = self._cache.get(target)
        if cached is None:
            cached = self._answer(target)
            with self._lock:
                self._cache[target] = cached
        return cached

    def _answer(self, target: str) -> tuple[int, bytes]:
        parts = urlsplit(target)
        path = unquote(parts.path)
        if not path.startswith("/fhir/"):
            return _outcome(404, f"no such path {path}")
        relative = path[len("/fhir/"):]
        if "/" in relative:  # a read: Type/id
            resource = self.by_reference.get(relative)
            return (200, _dumps(resource)) if resource is not None else _outcome(404, f"{relative} not found")
        params = parse_qs(parts.query, keep_blank_values=True)
        patient = params.pop("patient", [""])[0].removeprefix("Patient/")
        if patient != self.patient_id:
            return 200, _dumps(searchset([]))
        query = "&".join(f"{k}={v}" for k, values in params.items() for v in values)
        try:
            return 200, _dumps(answer_template(self.resources, f"{relative}?{query}", self.by_reference))
        except ValueError as exc:  # InputError: a parameter the stand-in cannot carry out
            return _outcome(400, str(exc))


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _outcome(status: int, text: str) -> tuple[int, bytes]:
    return status, _dumps({"resourceType": "OperationOutcome",
                           "issue": [{"severity": "error", "code": "not-found" if status == 404 else "not-supported",
                                      "diagnostics": text}]})
