"""Slow clients against each way of serving (issue 13): how many ordinary calls are answered while attackers hold
connections open by sending their request head, or their body, one byte every two seconds.

Usage: .venv/bin/python bench/slow_clients.py [--attackers 8,64] [--seconds 12]

Setups: gunicorn alone (gthread, 2 workers) with 1 thread, with 4 threads and the CPU gate (the defaults), with 4
threads and no gate, with 8 threads and no gate, and `SPASM_CDS_PROXY=nginx` (Debian's nginx in front, gunicorn on a
unix socket, default threads). All traffic stays on 127.0.0.1; each
attack is bounded in sockets and seconds; every server started here is stopped on exit. Prints a Markdown table."""
from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cds_service.case_runner import build_request, service_for  # noqa: E402
from cds_service.knowledge.loader import load_knowledge  # noqa: E402
from tests.support.loopback import http_request  # noqa: E402
from tests.support.service_server import ServiceServer  # noqa: E402

SETUPS = {
    "gunicorn alone, 2 workers x 1 thread": {"SPASM_CDS_THREADS": "1"},
    "gunicorn alone, 2 workers x 4 threads, CPU gate on (defaults)": {},
    "gunicorn alone, 2 workers x 4 threads, CPU gate off": {"SPASM_CDS_CPU_GATE": "off"},
    "gunicorn alone, 2 workers x 8 threads, CPU gate off": {"SPASM_CDS_THREADS": "8", "SPASM_CDS_CPU_GATE": "off"},
    "nginx in front (SPASM_CDS_PROXY=nginx)": {"SPASM_CDS_PROXY": "nginx"},
}
PROBES = 16
PROBE_TIMEOUT_S = 3.0


def probe_call() -> tuple[str, bytes]:
    """A prefetch-only patient-view call that gives cards: the path and the JSON body."""
    knowledge = load_knowledge(REPO)
    case = next(c for c in knowledge.cases if c.expect == "card" and c.hook == "patient-view")
    service = service_for(knowledge, case)
    return f"/cds-services/{service.id}", json.dumps(build_request(knowledge, case, service, date.today())).encode()


def slow_sender(port: int, path: str, stop: threading.Event, kind: str) -> None:
    """One attacker: a request head (kind 'head'), or a whole head and then the body (kind 'body'), sent a byte
    every two seconds until told to stop."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n"
    data = head.encode() if kind == "head" else head.encode() + b"\r\n" + b"{" * 4000
    sent = 0
    try:
        if kind == "body":
            sock.sendall(data[: len(head) + 2])
            sent = len(head) + 2
        while not stop.is_set() and sent < len(data):
            sock.sendall(data[sent:sent + 1])
            sent += 1
            stop.wait(2.0)
    except OSError:
        pass
    finally:
        sock.close()


def attack(url: str, attackers: int, seconds: float, kind: str, path: str, body: bytes) -> tuple[int, int]:
    """(probes answered 200 within their timeout, 5xx seen) while `attackers` slow senders hold connections."""
    port = int(url.rsplit(":", 1)[1])
    stop = threading.Event()
    threads = [threading.Thread(target=slow_sender, args=(port, path, stop, kind), daemon=True)
               for _ in range(attackers)]
    for t in threads:
        t.start()
    time.sleep(2.0)  # let every attacker connect and start trickling

    def one(_i: int) -> int:
        try:
            status, _ = http_request("POST", f"{url}{path}", body, {"Content-Type": "application/json"},
                                     timeout_s=PROBE_TIMEOUT_S)
            return status
        except OSError:
            return 0

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            statuses = list(pool.map(one, range(PROBES)))
        remaining = seconds - 2.0 - PROBE_TIMEOUT_S * PROBES / 4
        if remaining > 0:
            stop.wait(remaining)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
    return sum(s == 200 for s in statuses), sum(s >= 500 for s in statuses)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attackers", default="8,64", help="comma-separated numbers of slow connections")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each attack")
    args = parser.parse_args()
    path, body = probe_call()
    counts = [int(n) for n in args.attackers.split(",")]
    rows = []
    for name, env in SETUPS.items():
        with ServiceServer(extra_env=env, workers=2) as server:
            for kind in ("head", "body"):
                for n in counts:
                    ok, errors = attack(server.url, n, args.seconds, kind, path, body)
                    rows.append((name, kind, n, ok, errors))
                    print(f"{name}: {n} slow {kind}s -> {ok}/{PROBES} answered, {errors} x 5xx", file=sys.stderr)
    print(f"| setup | attack | slow connections | calls answered (of {PROBES}, {PROBE_TIMEOUT_S:g} s each) | 5xx |")
    print("|---|---|---|---|---|")
    for name, kind, n, ok, errors in rows:
        print(f"| {name} | request {kind} a byte every 2 s | {n} | {ok} | {errors} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
