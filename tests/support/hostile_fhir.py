"""A FHIR stub on 127.0.0.1 for faults no real server produces on demand: answers trickled one byte at a time (in
the body or in the head), answers of hundreds of megabytes, and links that try to leave the FHIR base path. It records
every request's path and Authorization header, and how many bytes each answer got out before the client hung up."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.loopback import ServedInThread

EMPTY = {"resourceType": "Bundle", "type": "searchset", "entry": []}
_ENTRY = b'{"resource":{"resourceType":"Observation","id":"o","status":"final"}},'
_HUGE_CHUNK = _ENTRY * (65_536 // len(_ENTRY))


@dataclass
class HostileFhir(ServedInThread):
    """Behaviour by first path segment: `fhir` (healthy: empty searchsets; `escape` paths give links that try to
    leave /fhir), `trickle` (a body one byte per `trickle_s`), `trickle-head` (the status line likewise), `huge`
    (a valid Bundle of `huge_bytes`, no Content-Length), `huge-declared` (the same, declared), `admin` (what must
    never be reached)."""

    trickle_s: float = 0.5
    huge_bytes: int = 300 * 1024 * 1024
    port: int = 0
    seen: list[tuple[str, str | None]] = field(default_factory=list)
    sent: list[tuple[str, int, float]] = field(default_factory=list)  # path, bytes out, seconds until the end
    release: threading.Event = field(default_factory=threading.Event)

    def base(self, behaviour: str = "fhir") -> str:
        return f"http://127.0.0.1:{self.port}/{behaviour}"

    def paths_outside(self, prefix: str) -> list[str]:
        return [path for path, _ in self.seen if not path.startswith(prefix + "/") and path != prefix]

    def answers_ended(self, prefix: str, timeout_s: float = 5.0) -> list[tuple[str, int, float]]:
        """The ended answers whose path starts with prefix, once every such request seen has ended (or timeout_s
        passed): the stub learns that a client hung up only at its next write or the one after."""
        started = sum(path.startswith(prefix) for path, _ in self.seen)
        until = time.monotonic() + timeout_s
        while True:
            ended = [entry for entry in self.sent if entry[0].startswith(prefix)]
            if len(ended) >= started or time.monotonic() > until:
                return ended
            time.sleep(0.05)

    def __enter__(self) -> HostileFhir:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                owner.seen.append((self.path, self.headers.get("Authorization")))
                started, out = time.monotonic(), 0
                behaviour = self.path.lstrip("/").split("/")[0].split("?")[0]
                try:
                    if behaviour == "trickle-head":
                        for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n":
                            if owner.release.wait(owner.trickle_s):
                                break
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            out += 1
                    elif behaviour == "trickle":
                        data = json.dumps(EMPTY).encode()
                        self._head(200, len(data))
                        for byte in data:
                            if owner.release.wait(owner.trickle_s):
                                break
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            out += 1
                    elif behaviour in ("huge", "huge-declared"):
                        head, tail = b'{"resourceType":"Bundle","type":"searchset","entry":[', _ENTRY[:-1] + b"]}"
                        chunks = owner.huge_bytes // len(_HUGE_CHUNK)
                        self._head(200, len(head) + chunks * len(_HUGE_CHUNK) + len(tail)
                                   if behaviour == "huge-declared" else None)
                        self.wfile.write(head)
                        for _ in range(chunks):
                            self.wfile.write(_HUGE_CHUNK)
                            out += len(_HUGE_CHUNK)
                        self.wfile.write(tail)
                    else:
                        data = json.dumps(self._document()).encode()
                        self._head(200 if behaviour == "fhir" else 404, len(data))
                        self.wfile.write(data)
                        out = len(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the service gave up on this answer, as it should
                finally:
                    owner.sent.append((self.path, out, time.monotonic() - started))
                    self.close_connection = True

            def _document(self) -> dict:
                host = f"http://127.0.0.1:{owner.port}"
                if "escape-next" in self.path:
                    return {**EMPTY, "link": [{"relation": "next", "url": f"{host}/fhir/../admin/next"}]}
                if "escape-encoded-next" in self.path:
                    return {**EMPTY, "link": [{"relation": "next", "url": f"{host}/fhir/%2e%2e/admin/next"}]}
                if self.path.startswith("/fhir/MedicationRequest"):  # its drug named by a reference that escapes
                    request = {"resourceType": "MedicationRequest", "id": "m1", "status": "active",
                               "intent": "order", "subject": {"reference": "Patient/p1"},
                               "medicationReference": {"reference": "Medication/../../admin/secret"}}
                    return {**EMPTY, "entry": [{"resource": request}]}
                return EMPTY

            def _head(self, status: int, length: int | None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                if length is not None:
                    self.send_header("Content-Length", str(length))
                self.send_header("Connection", "close")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._serve(server)
        self.port = server.server_address[1]
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        super().__exit__(*exc)
