"""Slow clients cannot starve the service behind its nginx proxy (SPASM_CDS_PROXY=nginx, as the Docker image runs
it): while 48 connections trickle a request head or body a byte at a time, ordinary calls are all answered; nginx's
own refusals keep the one error shape; and when either process dies, serve stops (a container restarts it).
Bounded: a few dozen loopback sockets for a few seconds. bench/slow_clients.py compares the serving setups."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from datetime import date

import pytest

from cds_service.case_runner import build_request, service_for
from cds_service.proxy import find_nginx
from tests.support.loopback import http_request, raw_exchange
from tests.support.service_server import ServiceServer

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(find_nginx() is None and not os.environ.get("CI"),
                                 reason="nginx not installed (.ci/run installs it)")]
PROXY = {"SPASM_CDS_PROXY": "nginx", "SPASM_CDS_PROXY_CLIENT_TIMEOUT_S": "10"}


@pytest.fixture(scope="module")
def proxied():
    with ServiceServer(extra_env=PROXY, workers=1) as server:
        yield server


@pytest.fixture(scope="module")
def hook_call(knowledge):
    case = next(c for c in knowledge.cases if c.expect == "card" and c.hook == "patient-view")
    service = service_for(knowledge, case)
    return f"/cds-services/{service.id}", json.dumps(build_request(knowledge, case, service, date.today())).encode()


def _trickle(port: int, path: str, body: bool, stop: threading.Event) -> None:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 900\r\n"
    data = (head + "\r\n").encode() + b"[" * 900 if body else head.encode()
    start = len(head) + 2 if body else 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data[:start])
        for i in range(start, len(data)):
            if stop.wait(1.0):
                return
            try:
                sock.sendall(data[i:i + 1])
            except OSError:
                return


def test_calls_are_answered_while_48_slow_clients_hold_connections(proxied, hook_call):
    path, body = hook_call
    port = int(proxied.url.rsplit(":", 1)[1])
    stop = threading.Event()
    attackers = [threading.Thread(target=_trickle, args=(port, path, i % 2 == 1, stop), daemon=True)
                 for i in range(48)]
    for t in attackers:
        t.start()
    try:
        time.sleep(1.5)  # every attacker connected and trickling (a single worker with one thread behind nginx)
        answers = [http_request("POST", f"{proxied.url}{path}", body, {"Content-Type": "application/json"},
                                timeout_s=3.0) for _ in range(12)]
    finally:
        stop.set()
        for t in attackers:
            t.join(timeout=5)
    assert [status for status, _ in answers] == [200] * 12
    assert all(json.loads(answer)["cards"] for _, answer in answers)


@pytest.mark.parametrize(("request_bytes", "status", "issue"), [
    (b"GARBAGE\r\n\r\n", 400, "invalid"),
    (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "too-long"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 400, "too-long"),
    (b"POST /cds-services/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n", 413, "too-long"),
])
def test_the_proxys_own_refusals_are_operation_outcomes(proxied, request_bytes, status, issue):
    port = int(proxied.url.rsplit(":", 1)[1])
    head, payload = raw_exchange(port, request_bytes, timeout_s=5)
    assert head.split(b" ")[1] == str(status).encode()
    assert b"application/fhir+json" in head
    outcome = json.loads(payload)
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == issue


def test_serve_stops_when_nginx_dies_and_takes_nginx_down_when_stopped():
    with ServiceServer(extra_env=PROXY, workers=1) as server:
        assert http_request("GET", f"{server.url}/healthz")[0] == 200
        nginx = _children_named(server.process.pid, "nginx: master")
        assert len(nginx) == 1
        workers = _children_named(nginx[0], "nginx: worker")
        os.kill(nginx[0], signal.SIGKILL)
        assert server.process.wait(timeout=30) != 0  # the supervisor stopped gunicorn and exited
        time.sleep(0.5)
        assert workers and not any(_alive(pid) for pid in workers)  # nor is the port left held by a worker
    with ServiceServer(extra_env=PROXY, workers=1) as server:
        supervisor = server.process.pid
        nginx = _children_named(supervisor, "nginx: master")
        os.kill(supervisor, signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
        assert not any(_alive(pid) for pid in nginx)


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children_named(parent: int, name: str) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(parent)], capture_output=True, text=True,
                         check=True).stdout
    return [int(line.split(None, 1)[0]) for line in out.splitlines() if name in line]
