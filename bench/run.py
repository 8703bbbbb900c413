"""The performance numbers of issue 8 in one command: the service under gunicorn against a bare-Flask floor (wrk),
fetch mode against a 50 ms-per-query FHIR stand-in, cost per request by resource count, and a soak with worker RSS.

Usage: .venv/bin/python bench/run.py [--smoke] [--out docs/performance.md]

The full run writes its results into the "## Benchmark" section of --out and prints the same text. --smoke runs
every part briefly (a few seconds of load in all), writes nothing, and exits 0 unless something errors: a server
that does not start, a response other than 200, a request that should give cards and gives none. Timings are never
asserted. All traffic stays on 127.0.0.1; every load run is bounded in time (and the soak in count); every server
started here is stopped on exit, also on Ctrl-C, SIGTERM or an exception.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import dataclasses
import gc
import json
import os
import platform
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from contextlib import ExitStack
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # this checkout's cds_service and tests.support, whatever the working directory

from bench.fhir_standin import FhirStandIn  # noqa: E402
from cds_service.case_runner import build_request  # noqa: E402
from cds_service.knowledge.loader import load_knowledge  # noqa: E402
from cds_service.knowledge.model import Knowledge  # noqa: E402
from cds_service.pipeline import respond  # noqa: E402
from cds_service.settings import Settings  # noqa: E402
from tests.support.loopback import free_port, http_request, log_tail, stop_process_group, wait_until_ok  # noqa: E402
from tests.support.synthea import (  # noqa: E402
    BUNDLE_DIR,
    SYNTHEA,
    SyntheaChart,
    all_prefetched,
    cramp_condition,
    prefetch_request,
    rewrite_references,
    synthea_chart,
)

LUA = REPO / "bench" / "post.lua"
CAPTURE = SYNTHEA.parent / "cds-sandbox-captures" / "patient-view-request.json"
CAPTURE_BUNDLE = "Alfreda_Wyman_"  # the patient the sandbox capture was taken with
PV_BUNDLE = "Barrett_Cummings_"  # 290 resources of the service's kinds; with a cramp Condition, the ~300 of issue 8
PV_SERVICE = "spasm-cramps-patient-view"
ORDER_SERVICE, ORDER_RULE, ORDER_CASE = ("spasm-order-select", "tizanidine-strong-cyp1a2-inhibitor",
                                         "tizanidine-ordered-on-ciprofloxacin")
FHIR_DELAY_S = 0.05
WORKERS = 2
THREADS, CONNECTIONS = 2, 16
WRK_TIMEOUT_S = 5  # the CDS Hooks (Da Vinci CRD) answer time; slower responses count as wrk timeouts
SECTION = "## Benchmark"

# targets of issue 8
P50_RATIO, P99_RATIO, RPS_RATIO = 1.5, 2.0, 0.6
FETCH_P50_MS = 120.0
RSS_GROWTH_PCT = 5.0
REFERENCE = "(reference, not a target)"  # rows shown beside the targets, never judged
LINEAR_RATIO = 1.5  # marginal cost per resource, 3,000->10,000 over 300->3,000; above this, growth is worse than linear


@dataclasses.dataclass(frozen=True)
class Plan:
    warmup_s: int
    duration_s: int
    rounds: int  # service and floor runs alternate this many times per request; the table shows the median round
    fetch_duration_s: int
    scaling_sizes: tuple[int, ...]
    scaling_runs: int
    soak_requests: int
    soak_connections: int
    profile_s: int


FULL = Plan(warmup_s=3, duration_s=5, rounds=3, fetch_duration_s=10, scaling_sizes=(30, 300, 3_000, 10_000),
            scaling_runs=9, soak_requests=10_000, soak_connections=8, profile_s=10)
SMOKE = Plan(warmup_s=0, duration_s=1, rounds=1, fetch_duration_s=1, scaling_sizes=(30, 300), scaling_runs=3,
             soak_requests=300, soak_connections=4, profile_s=0)


class BenchError(RuntimeError):
    """Something that makes the numbers meaningless: a server that will not start, a non-200, no cards."""


# ---------------------------------------------------------------------------------------------------------- tools

def ensure_wrk() -> str:
    """The wrk binary, installed from Debian if missing (apt-get update first only if the package is not found)."""
    found = shutil.which("wrk")
    if found:
        return found
    print("bench: wrk is missing; installing the Debian package", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                      timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       timeout=600, check=True)
        subprocess.run(install, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=600, check=True)
    found = shutil.which("wrk")
    if not found:
        raise BenchError("wrk could not be installed (apt-get install -y wrk needs root and a Debian mirror)")
    return found


@dataclasses.dataclass(frozen=True)
class Load:
    """One wrk run: latency percentiles in ms, throughput, and everything that was not a 2xx/3xx answer."""

    requests: int
    seconds: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float
    rps: float
    bad_status: int  # HTTP status > 399
    socket_errors: int  # connect, read, write errors and timeouts
    cpu_ms: float = 0.0  # CPU time (user + system) of the server's workers per request, from /proc

    @property
    def clean(self) -> bool:
        return self.requests > 0 and self.bad_status == 0 and self.socket_errors == 0


def wrk(url: str, body: Path, seconds: int, threads: int = THREADS, connections: int = CONNECTIONS,
        max_per_thread: int | None = None) -> Load:
    """POST body to url with wrk for at most `seconds` (and at most max_per_thread responses per thread)."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", f"{WRK_TIMEOUT_S}s",
               "-s", str(LUA), url, "--", str(body)]
    if max_per_thread:
        command.append(str(max_per_thread))
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    watchdog = threading.Timer(seconds + 60, lambda: _kill_group(process))
    watchdog.start()
    lines, stopped = [], 0
    try:
        assert process.stdout is not None and process.stderr is not None
        for line in process.stdout:  # wrk prints its summary only at the end, so this reads without blocking wrk
            lines.append(line.rstrip("\n"))
            if line.startswith("BENCH_STOPPED"):
                stopped += 1
                if stopped == threads:  # every thread has sent its share: end the run now instead of at -d
                    process.send_signal(signal.SIGINT)
        err = process.stderr.read()
        process.wait()
    finally:
        watchdog.cancel()
        _kill_group(process)
    out = "\n".join(lines)
    summary = next((ln for ln in out.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if process.returncode != 0 or summary is None:
        raise BenchError(f"wrk failed (exit {process.returncode}): {err.strip() or out.strip()}")
    raw = json.loads(summary[len("BENCH_JSON "):])
    secs = raw["duration_us"] / 1e6
    return Load(requests=raw["requests"], seconds=secs, p50=raw["p50_us"] / 1000, p90=raw["p90_us"] / 1000,
                p95=raw["p95_us"] / 1000, p99=raw["p99_us"] / 1000, max=raw["max_us"] / 1000,
                rps=raw["requests"] / secs if secs else 0.0, bad_status=raw["status_errors"],
                socket_errors=raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"])


def _kill_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# -------------------------------------------------------------------------------------------------------- servers

class Server:
    """A gunicorn server subprocess on a free loopback port, in its own process group; stopped by stop(). It runs
    in cwd (default the checkout): a variant's own tree puts its cds_service first on sys.path."""

    def __init__(self, name: str, command: list[str], workdir: Path, env: dict[str, str],
                 cwd: Path = REPO) -> None:
        self.name = name
        self._cwd = cwd
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self._command = [c.replace("{port}", str(self.port)) for c in command]
        self._env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self._command, cwd=self._cwd, env=self._env, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self, timeout_s: float = 60.0, workers: int = WORKERS) -> None:
        assert self.process is not None
        problem = wait_until_ok(f"{self.url}/healthz", self.process, timeout_s)
        if problem:
            raise BenchError(f"{self.name} {problem}; log tail:\n{log_tail(self.log_path)}")
        deadline = time.monotonic() + timeout_s  # /healthz answers from the first worker: wait for all of them
        while len(self.workers()) < workers and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process)
            self.process = None

    @property
    def pid(self) -> int:
        """The gunicorn master's PID (this subprocess), once started."""
        assert self.process is not None
        return self.process.pid

    def workers(self) -> list[int]:
        """PIDs of the gunicorn workers: the children of the master (this subprocess)."""
        return children(self.pid)


def children(parent: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                out.append(int(entry))
    return sorted(out)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """VmRSS of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for process {pid}")


def post_json(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
    start = time.perf_counter()
    status, raw = http_request("POST", url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    took = (time.perf_counter() - start) * 1000
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        parsed = {"raw": raw[:200].decode(errors="replace")}
    return status, parsed, took


# ------------------------------------------------------------------------------------------------------- requests

@dataclasses.dataclass
class Request:
    key: str
    label: str
    service: str
    body: dict[str, Any]
    expect_cards: bool
    note: str
    path: Path | None = None
    resources: int = 0
    cards: list[str] = dataclasses.field(default_factory=list)

    @property
    def size_kb(self) -> float:
        return len(json.dumps(self.body)) / 1024


def bundle_named(prefix: str) -> str:
    found = sorted(p.name for p in BUNDLE_DIR.glob(f"{prefix}*.json"))
    if len(found) != 1:
        raise BenchError(f"expected one Synthea bundle {prefix}*.json in {BUNDLE_DIR}, found {len(found)}")
    return found[0]


def capture_request(knowledge: Knowledge, fhir_base: str) -> tuple[Request, list[str]]:
    """The sandbox's patient-view body as captured, in prefetch mode for this service: every captured field kept,
    this service's prefetch keys added from Alfreda Wyman's bundle (answered as a FHIR server answers the service's
    templates), her references pointed at the captured patient id. fhirServer is kept but points at the stand-in,
    which counts hits: the run checks that the service made no FHIR call."""
    if not CAPTURE.is_file():
        raise BenchError(f"the sandbox capture {CAPTURE} is missing")
    body = copy.deepcopy(json.loads(CAPTURE.read_text(encoding="utf-8"))["body"])
    service = knowledge.services[PV_SERVICE]
    chart = synthea_chart(bundle_named(CAPTURE_BUNDLE))
    patient_id = body["context"]["patientId"]
    ours = prefetch_request(chart, service)["prefetch"]
    added = [key for key in ours if key not in body["prefetch"]]
    for key in added:
        body["prefetch"][key] = rewrite_references(ours[key], {f"Patient/{chart.patient_id}": f"Patient/{patient_id}"})
    body["fhirServer"] = fhir_base
    kept = sorted(set(body["prefetch"]) - set(added))
    note = (f"the Sandbox's own body (hook, hookInstance, context, its prefetch keys {', '.join(kept)}) plus this "
            f"service's keys {', '.join(added)} from Alfreda Wyman's bundle; no cramp on her chart")
    return Request("capture", "(1) Sandbox patient-view capture", PV_SERVICE, body, False, note), added


def patient_view_chart(knowledge: Knowledge, today: date) -> tuple[SyntheaChart, dict[str, Any]]:
    chart = synthea_chart(bundle_named(PV_BUNDLE))
    return chart, cramp_condition(knowledge, chart.patient_id, today)


def patient_view_request(knowledge: Knowledge, today: date) -> Request:
    chart, cramp = patient_view_chart(knowledge, today)
    body = prefetch_request(chart, knowledge.services[PV_SERVICE], everything=True, extra=[cramp])
    name = chart.name.split("_")[0] + " " + chart.name.split("_")[1]
    return Request("pv300", "(2) patient-view, ~300-resource prefetch", PV_SERVICE, body, True,
                   f"Synthea {name}: every resource of the service's kinds, plus an active cramp Condition")


def order_request(knowledge: Knowledge, today: date) -> Request:
    case = next((c for c in knowledge.cases if c.rule == ORDER_RULE and c.name == ORDER_CASE), None)
    if case is None:
        raise BenchError(f"no case {ORDER_CASE} of rule {ORDER_RULE} in the knowledge")
    service = knowledge.services[ORDER_SERVICE]
    body = build_request(knowledge, case, service, today)
    return Request("order", "(3) order-select with an interaction", ORDER_SERVICE, body, True,
                   f"rule case {ORDER_CASE} ({ORDER_RULE}), built by case_runner.build_request")


def count_resources(body: dict[str, Any]) -> int:
    return sum(1 for _ in all_prefetched(body)) if body.get("prefetch") else 0


# ------------------------------------------------------------------------------------------------------ the phases

def check_once(request: Request, service: Server, floor: Server, standin: FhirStandIn) -> None:
    """One request to each server before the load: both 200, cards where the request should give some, floor empty."""
    hits_before = standin.hits
    status, answer, _ = post_json(f"{service.url}/cds-services/{request.service}", request.body)
    if status != 200:
        raise BenchError(f"{request.label}: the service answered {status}: {json.dumps(answer)[:500]}")
    request.cards = [c.get("summary", "") for c in answer.get("cards", ())]
    if request.expect_cards and not request.cards:
        raise BenchError(f"{request.label}: the service answered 200 with no cards; the benchmark needs cards")
    if standin.hits != hits_before:
        raise BenchError(f"{request.label}: the service made {standin.hits - hits_before} FHIR call(s) although "
                         f"every prefetch key was sent: {standin.log[-5:]}")
    status, answer, _ = post_json(f"{floor.url}/cds-services/{request.service}", request.body)
    if status != 200 or answer != {"cards": []}:
        raise BenchError(f"{request.label}: the floor answered {status}: {answer}")


def measure(request: Request, servers: tuple[Server, Server], plan: Plan) -> tuple[Load, Load]:
    """Warm each server up on the request, then alternate service and floor runs; the median round of each."""
    assert request.path is not None
    urls = [f"{server.url}/cds-services/{request.service}" for server in servers]
    if plan.warmup_s:
        for url in urls:
            wrk(url, request.path, plan.warmup_s)
    rounds: list[list[Load]] = [[], []]
    for _ in range(plan.rounds):
        for i, (server, url) in enumerate(zip(servers, urls, strict=True)):
            workers = server.workers()
            before = sum(cpu_seconds(p) for p in workers)
            result = wrk(url, request.path, plan.duration_s)
            used = sum(cpu_seconds(p) for p in workers) - before
            result = dataclasses.replace(result, cpu_ms=used / max(result.requests, 1) * 1000)
            if not result.clean:
                raise BenchError(f"{request.label} on the {server.name}: {result.bad_status} response(s) with status "
                                 f"> 399 and {result.socket_errors} socket error(s)/timeout(s) in {result.requests} "
                                 "requests")
            rounds[i].append(result)
    return median_load(rounds[0]), median_load(rounds[1])


def median_load(loads: list[Load]) -> Load:
    """Each latency and rate figure is the median over the rounds; counts are summed."""
    def mid(name: str) -> float:
        return statistics.median(getattr(x, name) for x in loads)
    return Load(requests=sum(x.requests for x in loads), seconds=sum(x.seconds for x in loads), p50=mid("p50"),
                p90=mid("p90"), p95=mid("p95"), p99=mid("p99"), max=max(x.max for x in loads), rps=mid("rps"),
                bad_status=sum(x.bad_status for x in loads), socket_errors=sum(x.socket_errors for x in loads),
                cpu_ms=mid("cpu_ms"))


@dataclasses.dataclass
class FetchResult:
    queries: int
    max_in_flight: int
    targets: list[str]
    single_ms: float
    cards: list[str]
    sequential: Load
    concurrent: Load
    concurrent_connections: int


def fetch_mode(body: dict[str, Any], service: Server, standin: FhirStandIn, workdir: Path, plan: Plan) -> FetchResult:
    url = f"{service.url}/cds-services/{PV_SERVICE}"
    standin.reset_counts()
    status, answer, took = post_json(url, body)
    if status != 200:
        raise BenchError(f"fetch mode: the service answered {status}: {json.dumps(answer)[:500]}")
    if standin.errors:
        raise BenchError(f"fetch mode: the FHIR stand-in refused {standin.errors} quer(ies): {standin.log}")
    queries, in_flight, targets = standin.hits, standin.max_in_flight, list(standin.log)
    cards = [c.get("summary", "") for c in answer.get("cards", ())]
    if not cards:
        raise BenchError("fetch mode: the service answered 200 with no cards; the benchmark needs cards")
    path = workdir / "fetch.json"
    path.write_text(json.dumps(body))
    if plan.warmup_s:
        wrk(url, path, 1, threads=1, connections=1)
    sequential = wrk(url, path, plan.fetch_duration_s, threads=1, connections=1)
    connections = WORKERS * int(gunicorn_settings().get("threads", 1))
    concurrent = wrk(url, path, plan.fetch_duration_s, threads=THREADS, connections=connections)
    for name, result in (("one connection", sequential), (f"{connections} connections", concurrent)):
        if not result.clean:
            raise BenchError(f"fetch mode, {name}: {result.bad_status} bad status, {result.socket_errors} socket "
                             f"errors in {result.requests} requests")
    if standin.errors:
        raise BenchError(f"fetch mode: the FHIR stand-in refused {standin.errors} quer(ies) under load")
    return FetchResult(queries, in_flight, targets, took, cards, sequential, concurrent, connections)


@dataclasses.dataclass
class ScalePoint:
    size: int
    resources: int
    observations: int
    respond_ms: float
    parse_ms: float
    cards: int


def resource_pool(names: list[str]) -> dict[str, list[dict[str, Any]]]:
    pool: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        chart = synthea_chart(name)
        for kind, resources in chart.resources.items():
            if kind != "patient":
                pool.setdefault(kind, []).extend(resources)
    return pool


def scaled_body(knowledge: Knowledge, pool: dict[str, list[dict[str, Any]]], size: int, today: date) -> dict:
    """A patient-view body with `size` prefetched resources: a cramp Condition, the Patient (if the service
    prefetches it), and the rest drawn round-robin from the pool in the pool's own mix of the kinds the service
    prefetches (Synthea: mostly Observations), re-identified for one patient."""
    patient_id = "bench-scaling-patient"
    service = knowledge.services[PV_SERVICE]
    kinds = {q.kind for q in service.queries}
    pool = {kind: v for kind, v in pool.items() if kind in kinds}
    fill = size - 1 - ("patient" in kinds)
    total = sum(len(v) for v in pool.values())
    wanted = {kind: round(fill * len(v) / total) for kind, v in pool.items()}
    wanted["observations"] += fill - sum(wanted.values())
    subject = {"reference": f"Patient/{patient_id}"}
    resources: dict[str, tuple[dict[str, Any], ...]] = {"patient": ({"resourceType": "Patient", "id": patient_id,
                                                                     "gender": "female", "birthDate": "1950-01-01"},)}
    for kind, n in wanted.items():
        source = pool[kind]
        picked = []
        for i in range(n):
            resource = dict(source[i % len(source)])
            resource["id"] = f"{resource.get('id', kind)}-{i}"
            if "subject" in resource:
                resource["subject"] = subject
            picked.append(resource)
        resources[kind] = tuple(picked)
    chart = SyntheaChart(name="scaling", patient_id=patient_id, user_id="Practitioner/bench", last_encounter=None,
                         resources=resources, by_reference={})
    cramp = cramp_condition(knowledge, patient_id, today)
    return prefetch_request(chart, service, everything=True, extra=[cramp])


def quiet_gc() -> None:
    """Move everything alive now (the Synthea pool, the cached charts, the knowledge) out of the collector's sight,
    so in-process timings measure the service's own allocations, not full collections over the bench's heap."""
    gc.collect()
    gc.freeze()


def in_process_settings() -> Settings:
    """Default settings, with the prefetch size cap (if this version has one) raised so 10,000 resources pass."""
    settings = Settings()
    if any(f.name == "max_prefetch_resources" for f in dataclasses.fields(settings)):
        settings = dataclasses.replace(settings, max_prefetch_resources=1_000_000)
    return settings


def scaling(knowledge: Knowledge, plan: Plan, today: date) -> list[ScalePoint]:
    names = sorted(p.name for p in BUNDLE_DIR.glob("*.json"))
    pool = resource_pool(names if max(plan.scaling_sizes) > 1000 else names[:4])
    service = knowledge.services[PV_SERVICE]
    settings = in_process_settings()
    quiet_gc()
    points = []
    for size in plan.scaling_sizes:
        text = json.dumps(scaled_body(knowledge, pool, size, today))
        respond(json.loads(text), service, knowledge, settings, today)  # warm-up, not timed
        times, parses, cards = [], [], 0
        for _ in range(plan.scaling_runs):
            start = time.perf_counter()
            body = json.loads(text)
            parsed = time.perf_counter()
            answer = respond(body, service, knowledge, settings, today)
            times.append(time.perf_counter() - parsed)
            parses.append(parsed - start)
            cards = len(answer["cards"])
        body = json.loads(text)
        points.append(ScalePoint(size, count_resources(body),
                                 sum(1 for r in all_prefetched(body) if r["resourceType"] == "Observation"),
                                 statistics.median(times) * 1000, statistics.median(parses) * 1000, cards))
    return points


@dataclasses.dataclass
class SoakResult:
    load: Load
    connections: int
    cold: dict[int, float]
    start: dict[int, float]
    end: dict[int, float]
    peak: float
    samples: list[tuple[float, float]]

    @property
    def growth_pct(self) -> float:
        return (sum(self.end.values()) - sum(self.start.values())) / sum(self.start.values()) * 100

    @property
    def worst_worker_pct(self) -> float:
        return max((self.end[p] - self.start[p]) / self.start[p] * 100 for p in self.start)


def soak(request: Request, service: Server, plan: Plan, cold: dict[int, float]) -> SoakResult:
    url = f"{service.url}/cds-services/{request.service}"
    assert request.path is not None
    workers = service.workers()
    start = {p: rss_mib(p) for p in workers}
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while not stop.wait(1.0):
            try:
                samples.append((time.monotonic() - t0, sum(rss_mib(p) for p in workers)))
            except (OSError, BenchError):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        per_thread = -(-plan.soak_requests // THREADS)
        cap_s = max(30, plan.soak_requests // 20)  # bounded in time too, at an assumed 20 req/s or more
        load = wrk(url, request.path, cap_s, threads=THREADS, connections=plan.soak_connections,
                   max_per_thread=per_thread)
    finally:
        stop.set()
        sampler.join()
    if not load.clean:
        raise BenchError(f"soak: {load.bad_status} bad status, {load.socket_errors} socket errors in "
                         f"{load.requests} requests")
    if service.workers() != workers:
        raise BenchError(f"soak: the gunicorn workers changed ({workers} -> {service.workers()}); RSS not comparable")
    end = {p: rss_mib(p) for p in workers}
    peak = max([v for _, v in samples] + [sum(end.values())])
    return SoakResult(load, plan.soak_connections, cold, start, end, peak, samples)


# ------------------------------------------------------------------------------------------------------ profiling

def profile_in_process(knowledge: Knowledge, request: Request, today: date, runs: int = 200) -> dict[str, Any]:
    """Median time of respond() on the request, and cProfile's split of it by respond's direct callees."""
    service = knowledge.services[request.service]
    settings = in_process_settings()
    text = json.dumps(request.body)
    quiet_gc()
    times, parses = [], []
    for _ in range(runs):
        t = time.perf_counter()
        body = json.loads(text)
        t1 = time.perf_counter()
        respond(body, service, knowledge, settings, today)
        times.append(time.perf_counter() - t1)
        parses.append(t1 - t)
    profiler = cProfile.Profile()
    for _ in range(runs):
        body = json.loads(text)
        profiler.enable()
        respond(body, service, knowledge, settings, today)
        profiler.disable()
    stats = pstats.Stats(profiler)
    raw = stats.stats  # type: ignore[attr-defined]  # pstats.Stats keeps its table here; typeshed omits it
    respond_key = next(k for k in raw if k[2] == "respond" and k[0].endswith("pipeline.py"))
    total = raw[respond_key][3]
    callees = []
    for func, (_, _, _, _, callers) in raw.items():
        if respond_key in callers:
            callees.append((func[2], _short(func[0]), callers[respond_key][3] / total))
    callees.sort(key=lambda x: -x[2])
    own = sorted(((f[2], _short(f[0]), v[2] / total) for f, v in raw.items()), key=lambda x: -x[2])[:12]
    return {"respond_ms": statistics.median(times) * 1000, "parse_ms": statistics.median(parses) * 1000,
            "callees": callees, "own": own}


def app_cost(request: Request, workdir: Path, runs: int = 100) -> tuple[float, float] | str:
    """(floor ms, service ms) per request through Flask's test client in this process: no gunicorn, no sockets,
    one thread, so the ratio is what the two apps cost, without the load generator or thread switching."""
    try:
        from bench.floor import app as floor_app
        from cds_service import create_app
        settings = dataclasses.replace(in_process_settings(), data_dir=workdir / "app-cost-data", log_level="WARNING")
        service_app = create_app(settings)
    except Exception as exc:  # the app factory is not this tool's to fix; say why and go on
        return f"not measured ({type(exc).__name__}: {exc})"
    text = json.dumps(request.body)
    clients = [floor_app.test_client(), service_app.test_client()]
    times: list[list[float]] = [[], []]
    for i in range(runs + 3):
        for which, client in enumerate(clients):
            start = time.perf_counter()
            answer = client.post(f"/cds-services/{request.service}", data=text, content_type="application/json")
            took = time.perf_counter() - start
            if answer.status_code != 200:
                return f"not measured (the {('floor', 'service')[which]} answered {answer.status_code} in process)"
            if i >= 3:
                times[which].append(took)
    return statistics.median(times[0]) * 1000, statistics.median(times[1]) * 1000


def _short(filename: str) -> str:
    for marker in ("/cds_service/", "/site-packages/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1] if marker != "/cds_service/" else "cds_service/" + \
                filename.split(marker, 1)[1]
    return filename


def profile_workers(service: Server, request: Request, seconds: int, workdir: Path) -> dict[str, Any] | None:
    """py-spy (if in the venv) on the service's workers, GIL-holding samples only, while wrk drives the request."""
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        return None
    out = workdir / "py-spy.txt"
    assert service.process is not None and request.path is not None
    command = [str(py_spy), "record", "--pid", str(service.pid), "--subprocesses", "--gil", "--nolineno",
               "--nonblocking", "--rate", "200", "--duration", str(seconds), "--format", "raw", "--output", str(out)]
    spy = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           start_new_session=True)
    try:
        time.sleep(0.5)
        load = wrk(f"{service.url}/cds-services/{request.service}", request.path, seconds)
        _, err = spy.communicate(timeout=seconds + 60)
    finally:
        if spy.poll() is None:
            os.killpg(spy.pid, signal.SIGKILL)
            spy.wait()
    if spy.returncode != 0 or not out.is_file():
        print(f"bench: py-spy failed: {err.decode(errors='replace')[-500:]}", file=sys.stderr)
        return None
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            own[frames[-1]] += count
    return {"samples": total, "rps": load.rps, "inclusive": inclusive, "own": own}


def interesting(frame: str) -> bool:
    """Frames worth a row: the request's own work, not the thread pool, gunicorn's loop or Flask's dispatch chain
    (each of those is ~100 % inclusive and says nothing)."""
    if re.search(r"\((threading\.py|concurrent/futures/|gunicorn/|<frozen runpy>|cds_service/__main__\.py|"
                 r"cds_service/cli\.py)", frame):
        return False
    return not frame.startswith(("Flask.wsgi_app ", "Flask.full_dispatch_request ", "Flask.dispatch_request "))


# -------------------------------------------------------------------------------------------------------- report

def gunicorn_settings() -> dict[str, Any]:
    from bench.floor import shared_settings
    return shared_settings()


@dataclasses.dataclass(frozen=True)
class CpuMark:
    """Busy CPU time of the whole machine and of this process tree (children count once they are waited for)."""

    machine_s: float
    ours_s: float
    wall: float

    @classmethod
    def now(cls) -> CpuMark:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
        t = os.times()
        return cls((user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"),
                   t.user + t.system + t.children_user + t.children_system, time.monotonic())


def machine_share(start: CpuMark, end: CpuMark, load_before: float) -> str:
    """What other processes took from the machine during the run (they inflate every number here)."""
    capacity = (end.wall - start.wall) * (os.cpu_count() or 1)
    others = max(0.0, (end.machine_s - start.machine_s) - (end.ours_s - start.ours_s))
    share = others / capacity * 100 if capacity else 0.0
    text = (f"Other processes on the machine used {others:,.0f} CPU-seconds during the run, {share:.0f} % of its "
            f"capacity (load average {load_before:.2f} when the run began)")
    if share > 10:
        text += (". **The machine was shared**: absolute times are inflated, and the service/floor ratios are less "
                 "reliable than on an idle machine (service and floor runs alternate, which evens the load out "
                 "between them)")
    return text + "."


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor() or "unknown CPU")
    mem = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
               if ln.startswith("MemTotal:")) / 1024 / 1024
    debian = Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else "?"
    from importlib.metadata import version
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split()[:2]
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Debian {debian}, Linux {platform.release()}; "
            f"Python {platform.python_version()}, Flask {version('flask')}, gunicorn {version('gunicorn')}, "
            f"{' '.join(wrk_version)}. The load generator, the servers and the FHIR stand-in share these cores")


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()
    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "cds_service", "cards", "mappings")
    return f"commit {sha}" + (" with uncommitted changes in cds_service/, cards/ or mappings/" if dirty else "")


def fmt(x: float) -> str:
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


LOAD_HEADER = "| request | server | p50 ms | p95 ms | p99 ms | req/s | requests | worker CPU ms per request |"
LOAD_RULE = "|---|---|---|---|---|---|---|---|"


def load_rows(label: str, s: Load, f: Load, floor_name: str) -> list[str]:
    """Three table rows: the service's load, the floor's, and their ratios (the targets' columns in bold)."""
    def row(name: str, x: Load) -> str:
        return (f"| {name} | {fmt(x.p50)} | {fmt(x.p95)} | {fmt(x.p99)} | {x.rps:,.0f} | {x.requests:,} | "
                f"{x.cpu_ms:.2f} |")
    return [f"| {label} " + row("service", s), "| " + row(floor_name, f),
            f"| | **service / {floor_name}** | **{s.p50 / f.p50:.2f}×** | {s.p95 / f.p95:.2f}× | "
            f"**{s.p99 / f.p99:.2f}×** | **{s.rps / f.rps:.2f}×** | | {s.cpu_ms / f.cpu_ms:.2f}× |"]


def report(ctx: dict[str, Any]) -> str:
    plan: Plan = ctx["plan"]
    lines = [SECTION, ""]
    lines += [f"One run of `.venv/bin/python bench/run.py` on {ctx['date']} ({ctx['commit']}); the whole run took "
              f"{ctx['elapsed']:.0f} s. Rerun it to refresh this section; `--smoke` runs every part briefly "
              "and writes nothing (CI runs it before the test suite).", "",
              f"Machine: {ctx['machine']}. {ctx['share']}", "",
              "Servers, started by the run on 127.0.0.1 with the same gunicorn settings "
              f"({WORKERS} workers, " + ", ".join(f"{k}={v}" for k, v in sorted(ctx['gunicorn'].items())
                                                   if k in ('worker_class', 'threads', 'keepalive', 'preload_app'))
              + (", a pre_fork hook that runs gc.freeze()" if "pre_fork" in ctx["gunicorn"] else "")
              + "): the **service** (`python -m cds_service serve --workers 2`, default settings: auth off, log "
              "level INFO, one JSON log line per call) and the **floor** (`bench/floor.py`: a bare Flask app that "
              "parses the same body with `request.get_json()` and answers `{\"cards\": []}`).", "",
              f"Load: wrk `-t{THREADS} -c{CONNECTIONS} -d{plan.duration_s}s`, POSTing identical bodies to both "
              f"(`bench/post.lua` prints the percentiles): per request, a {plan.warmup_s} s warm-up of each server, "
              f"then {plan.rounds} round(s) of service run, floor run; each figure below is the median round. Every "
              "response was checked: no status above 399 and no socket error in any run, and one request to each "
              "server before its load checked 200 and the cards.", ""]
    lines += ["### Requests", "", "| request | body | prefetched resources | service's cards |", "|---|---|---|---|"]
    for r in ctx["requests"]:
        cards = "; ".join(f"“{c}”" for c in r.cards) if r.cards else "none"
        lines.append(f"| {r.label}: {r.note} | {r.size_kb:,.0f} KiB | {r.resources} | {cards} |")
    lines += ["", "Request (1) needs no FHIR call: all of the service's prefetch keys are filled (checked: the "
              f"FHIR stand-in named as its fhirServer received no query during its runs). Added keys: "
              f"{', '.join(ctx['capture_added'])}.", ""]
    lines += ["### Latency and throughput (wrk)", "",
              "The last column is the CPU time the server's gunicorn workers used per request (from /proc), which "
              "other processes on the machine do not inflate the way they inflate latency.", "",
              LOAD_HEADER, LOAD_RULE]
    for r in ctx["requests"]:
        service_load, floor_load = ctx["loads"][r.key]
        lines += load_rows(r.label, service_load, floor_load, "floor")
    s, f = ctx["orjson_floor"]
    pv = ctx["requests"][1]
    lines += ["", f"The service parses bodies with orjson (cds_service/api/jsonio.py); the floor above, as issue 8 "
              "defines it, with Flask's default JSON provider (the standard library). For reference, request "
              f"{pv.label.split(' ')[0]} again, against a floor that parses with orjson too (`bench/floor.py "
              "--orjson`; separate runs, same plan):", "",
              LOAD_HEADER, LOAD_RULE, *load_rows(pv.label, s, f, "floor, orjson")]
    fr: FetchResult = ctx["fetch"]
    lines += ["", "### Fetch mode", "",
              f"Request (2) without its prefetch, with `fhirServer` pointing at `bench/fhir_standin.py`: a threaded "
              f"http.server on loopback that answers each query after a {FHIR_DELAY_S * 1000:.0f} ms delay with what "
              "a FHIR server returns for the service's templates (same Synthea patient and cramp Condition). One "
              f"call made **{fr.queries} FHIR queries**, at most **{fr.max_in_flight} in flight at once** "
              f"({', '.join(t.split('?')[0].removeprefix('/fhir/') for t in fr.targets)}); it took "
              f"{fr.single_ms:.0f} ms and gave {len(fr.cards)} card(s).", "",
              "| load | p50 ms | p95 ms | p99 ms | req/s |", "|---|---|---|---|---|",
              f"| one call at a time (wrk -t1 -c1 -d{plan.fetch_duration_s}s) | {fmt(fr.sequential.p50)} | "
              f"{fmt(fr.sequential.p95)} | {fmt(fr.sequential.p99)} | {fr.sequential.rps:,.1f} |",
              f"| {fr.concurrent_connections} connections (as many as the server's worker threads) | "
              f"{fmt(fr.concurrent.p50)} | {fmt(fr.concurrent.p95)} | {fmt(fr.concurrent.p99)} | "
              f"{fr.concurrent.rps:,.1f} |", ""]
    points: list[ScalePoint] = ctx["scaling"]
    lines += ["### Scaling", "",
              f"`cds_service.pipeline.respond` in process (no HTTP), on patient-view bodies of N prefetched "
              "resources: a cramp Condition (and the Patient, if the service prefetches it), the rest drawn from the "
              "Synthea bundles in their own mix of the kinds the service prefetches, re-identified for one patient. "
              f"Median of {plan.scaling_runs} runs; JSON parsing timed apart. The "
              "prefetch size cap is raised for this (over HTTP, 10,000 resources exceed the 1 MiB body limit).", "",
              "| resources | of which Observations | respond ms | ms per 1,000 resources | json.loads ms | cards |",
              "|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p.resources:,} | {p.observations:,} | {fmt(p.respond_ms)} | "
                     f"{p.respond_ms / p.resources * 1000:.2f} | {fmt(p.parse_ms)} | {p.cards} |")
    linear = ctx["linearity"]
    if linear:
        lines += ["", f"Marginal cost: {linear['low']:.2f} ms per 1,000 resources from {linear['a']:,} to "
                  f"{linear['b']:,}, {linear['high']:.2f} ms per 1,000 from {linear['b']:,} to {linear['c']:,}: "
                  f"ratio {linear['ratio']:.2f} (linear if ≤ {LINEAR_RATIO})."]
    sk: SoakResult = ctx["soak"]
    lines += ["", "### Soak", "",
              f"{sk.load.requests:,} requests of (2) with wrk -t{THREADS} -c{sk.connections} (each thread stops "
              f"after its share), on the same service after the runs above: {sk.load.rps:,.0f} req/s, p50 "
              f"{fmt(sk.load.p50)} ms, p99 {fmt(sk.load.p99)} ms, no error. Worker VmRSS from /proc:", "",
              "| worker | after start-up (MiB) | soak start (MiB) | soak end (MiB) | growth over the soak |",
              "|---|---|---|---|---|"]
    for i, pid in enumerate(sorted(sk.start), 1):
        cold = f"{sk.cold[pid]:.1f}" if pid in sk.cold else "?"
        lines.append(f"| {i} | {cold} | {sk.start[pid]:.1f} | {sk.end[pid]:.1f} | "
                     f"{(sk.end[pid] - sk.start[pid]) / sk.start[pid] * 100:+.1f} % |")
    lines.append(f"| both | {sum(sk.cold.values()):.1f} | {sum(sk.start.values()):.1f} | "
                 f"{sum(sk.end.values()):.1f} | **{sk.growth_pct:+.1f} %** (peak {sk.peak:.1f} MiB) |")
    if sk.samples:
        marks = [sk.samples[min(len(sk.samples) - 1, round(q * (len(sk.samples) - 1)))] for q in (0, .25, .5, .75, 1)]
        lines += ["", "Both workers' RSS during the soak (sampled every second): " + ", ".join(
            f"{v:.1f} MiB at {t:.0f} s" for t, v in marks) + "."]
    lines += ["", "### Targets (issue 8)", "", "| target | measured | |", "|---|---|---|"]
    for name, measured, met in ctx["targets"]:
        shown = "reference" if name.startswith(REFERENCE) else verdict(met)
        lines.append(f"| {name} | {measured} | {shown} |")
    if ctx.get("profile"):
        lines += ["", ctx["profile"]]
    return wrap("\n".join(lines).rstrip() + "\n")


def wrap(markdown: str, width: int = 120) -> str:
    """Paragraph lines folded at width, like the rest of docs/; tables and headings as they are."""
    out = []
    for line in markdown.split("\n"):
        if len(line) > width and not line.startswith(("|", "#")):
            out.append(textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False))
        else:
            out.append(line)
    return "\n".join(out)


def targets(ctx: dict[str, Any]) -> list[tuple[str, str, bool]]:
    s, f = ctx["loads"]["pv300"]
    fr: FetchResult = ctx["fetch"]
    sk: SoakResult = ctx["soak"]
    out = [(f"(2) patient-view with prefetch: p50 ≤ {P50_RATIO}× floor",
            f"{s.p50 / f.p50:.2f}× ({fmt(s.p50)} vs {fmt(f.p50)} ms)", s.p50 <= P50_RATIO * f.p50),
           (f"(2) p99 ≤ {P99_RATIO}× floor", f"{s.p99 / f.p99:.2f}× ({fmt(s.p99)} vs {fmt(f.p99)} ms)",
            s.p99 <= P99_RATIO * f.p99),
           (f"(2) throughput ≥ {RPS_RATIO}× floor", f"{s.rps / f.rps:.2f}× ({s.rps:,.0f} vs {f.rps:,.0f} req/s)",
            s.rps >= RPS_RATIO * f.rps),
           *_orjson_rows(ctx),
           (f"fetch mode, {fr.queries} queries of {FHIR_DELAY_S * 1000:.0f} ms each: p50 < {FETCH_P50_MS:.0f} ms",
            f"{fmt(fr.sequential.p50)} ms one call at a time ({fr.queries} queries, {fr.max_in_flight} in flight)",
            fr.sequential.p50 < FETCH_P50_MS),
           (f"RSS growth over the soak < {RSS_GROWTH_PCT:.0f} %",
            f"{sk.growth_pct:+.1f} % over {sk.load.requests:,} requests (worst worker {sk.worst_worker_pct:+.1f} %)",
            sk.growth_pct < RSS_GROWTH_PCT)]
    linear = ctx["linearity"]
    if linear:
        out.append(("cost linear in resource count",
                    f"marginal cost ratio {linear['ratio']:.2f} ({linear['low']:.2f} → {linear['high']:.2f} ms per "
                    f"1,000 resources)", linear["ratio"] <= LINEAR_RATIO))
    return out


def _orjson_rows(ctx: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The three ratios of (2) against the orjson floor: not issue 8's targets (its floor is Flask's default), shown
    beside them so that a reader sees what is left without the faster parser."""
    s, f = ctx["orjson_floor"]
    return [(f"{REFERENCE} (2) against the orjson floor: p50 / p99 / throughput",
             f"{s.p50 / f.p50:.2f}× / {s.p99 / f.p99:.2f}× / {s.rps / f.rps:.2f}×",
             s.p50 <= P50_RATIO * f.p50 and s.p99 <= P99_RATIO * f.p99 and s.rps >= RPS_RATIO * f.rps)]


def linearity(points: list[ScalePoint]) -> dict[str, Any] | None:
    if len(points) < 3:
        return None
    a, b, c = points[-3:]
    low = (b.respond_ms - a.respond_ms) / (b.resources - a.resources) * 1000
    high = (c.respond_ms - b.respond_ms) / (c.resources - b.resources) * 1000
    return {"a": a.resources, "b": b.resources, "c": c.resources, "low": low, "high": high,
            "ratio": high / low if low > 0 else float("inf")}


def profile_text(ctx: dict[str, Any], in_process: dict[str, Any], workers: dict[str, Any] | None,
                 apps: tuple[float, float] | str) -> str:
    s, f = ctx["loads"]["pv300"]
    lines = ["### Profile of request (2) (run because a target was missed)", "",
             f"Over HTTP the service's p50 is {fmt(s.p50)} ms against the floor's {fmt(f.p50)} ms, and its workers "
             f"spend {s.cpu_ms:.1f} ms of CPU per request against the floor's {f.cpu_ms:.1f} ms. In process, "
             f"`respond()` on the same body takes **{in_process['respond_ms']:.2f} ms** (median of 200), and "
             f"`json.loads` of it {in_process['parse_ms']:.2f} ms, which the floor pays too.", "",
             "Through Flask's test client in the bench process (no gunicorn, no sockets, one thread; median of 100, "
             "alternating): " + (apps if isinstance(apps, str) else
                                 f"floor {apps[0]:.2f} ms, service {apps[1]:.2f} ms per request, "
                                 f"**{apps[1] / apps[0]:.2f}×**, so the best throughput ratio the service could "
                                 f"reach on this request is about {apps[0] / apps[1]:.2f}× the floor's") + ".", "",
             "cProfile of `respond()` (200 calls), split by its direct callees (share of respond's time; "
             "cProfile's own overhead inflates small calls):", "", "| callee | file | share | ~ms per call |",
             "|---|---|---|---|"]
    for name, where, share in in_process["callees"][:10]:
        lines.append(f"| `{name}` | {where} | {share * 100:.0f} % | {share * in_process['respond_ms']:.2f} |")
    lines += ["", "Functions with the most own time inside `respond()`:", "", "| function | file | share |",
              "|---|---|---|"]
    for name, where, share in in_process["own"][:10]:
        lines.append(f"| `{name}` | {where} | {share * 100:.1f} % |")
    if workers:
        total = workers["samples"] or 1
        lines += ["", f"py-spy on both gunicorn workers under wrk -c{CONNECTIONS} ({ctx['plan'].profile_s} s, "
                  f"{total:,} samples taken while a thread held the GIL, i.e. CPU spent in Python; "
                  f"{workers['rps']:,.0f} req/s during sampling). Inclusive share of samples:", "",
                  "| frame | inclusive | own |", "|---|---|---|"]
        rows = [(fr, n) for fr, n in workers["inclusive"].most_common(60) if interesting(fr)][:22]
        for frame, n in rows:
            own = workers["own"].get(frame, 0) / total * 100
            lines.append(f"| `{frame}` | {n / total * 100:.1f} % | {own:.1f} % |")
        lines += ["", "Most own time (py-spy):", "", "| frame | own |", "|---|---|"]
        for frame, n in workers["own"].most_common(12):
            lines.append(f"| `{frame}` | {n / total * 100:.1f} % |")
    return "\n".join(lines)


def write_section(out: Path, section: str) -> None:
    """Replace the "## Benchmark" section of out (up to the next "## " heading), or insert it before the first
    other "## " section; everything else in the file is kept."""
    text = out.read_text(encoding="utf-8") if out.exists() else "# Performance\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        first = re.search(r"^## ", text, re.M)
        text = (text[:first.start()] + section + "\n" + text[first.start():]) if first else \
            text.rstrip() + "\n\n" + section
    out.write_text(text, encoding="utf-8")


# ----------------------------------------------------------------------------------------------------------- main

def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def run(plan: Plan, smoke: bool, workdir: Path, stack: ExitStack) -> dict[str, Any]:
    started = time.monotonic()
    ensure_wrk()
    today = date.today()
    knowledge = load_knowledge(Settings().knowledge_dir)  # the checkout's knowledge, as the service loads it
    ctx: dict[str, Any] = {"plan": plan, "date": today.isoformat()}

    def say(text: str) -> None:
        print(f"bench [{time.monotonic() - started:5.1f} s] {text}", file=sys.stderr, flush=True)

    say(f"scaling in process: sizes {', '.join(f'{n:,}' for n in plan.scaling_sizes)}")
    ctx["scaling"] = scaling(knowledge, plan, today)
    ctx["linearity"] = linearity(ctx["scaling"])

    chart, cramp = patient_view_chart(knowledge, today)
    standin_resources = {k: list(v) for k, v in chart.resources.items()}
    standin_resources.setdefault("conditions", []).append(cramp)
    standin = stack.enter_context(FhirStandIn(chart.patient_id, standin_resources,
                                              {**chart.by_reference, f"Condition/{cramp['id']}": cramp},
                                              FHIR_DELAY_S))
    capture, ctx["capture_added"] = capture_request(knowledge, standin.base_url)
    requests = [capture, patient_view_request(knowledge, today), order_request(knowledge, today)]
    for r in requests:
        r.resources = count_resources(r.body)
        r.path = workdir / f"{r.key}.json"
        r.path.write_text(json.dumps(r.body))
    ctx["requests"] = requests

    # the service as deployed with default settings: no SPASM_CDS_* from this shell, only a private data folder
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPASM_CDS_")}
    env.update({"PYTHONUNBUFFERED": "1", "SPASM_CDS_DATA_DIR": str(workdir / "service-data")})
    service = Server("service", [sys.executable, "-m", "cds_service", "serve", "--host", "127.0.0.1", "--port",
                                 "{port}", "--workers", str(WORKERS)], workdir, env)
    floor = Server("floor", [sys.executable, str(REPO / "bench" / "floor.py"), "--port", "{port}", "--workers",
                             str(WORKERS)], workdir, env)
    # the service parses with orjson; this floor does too, so the share of a faster parser can be read off
    floor_orjson = Server("floor-orjson", [sys.executable, str(REPO / "bench" / "floor.py"), "--port", "{port}",
                                           "--workers", str(WORKERS), "--orjson"], workdir, env)
    for server in (service, floor, floor_orjson):
        stack.callback(server.stop)
        server.start()
    for server in (service, floor, floor_orjson):
        server.wait_ready()
    say(f"service on {service.url} (pid {service.pid}), floor on {floor.url} (pid {floor.pid}), "
        f"FHIR stand-in on {standin.base_url}")
    cold = {p: rss_mib(p) for p in service.workers()}
    ctx["gunicorn"] = gunicorn_settings()

    for r in requests:
        check_once(r, service, floor, standin)
    ctx["loads"] = {}
    for r in requests:
        say(f"wrk: {r.label}: service and floor, {plan.rounds} round(s) of {plan.duration_s} s")
        hits = standin.hits
        loads = measure(r, (service, floor), plan)
        if standin.hits != hits:
            raise BenchError(f"{r.label}: the service made {standin.hits - hits} FHIR call(s) under load")
        ctx["loads"][r.key] = loads
        s, f = loads
        say(f"  p50 {s.p50:.1f} vs {f.p50:.1f} ms, p99 {s.p99:.1f} vs {f.p99:.1f} ms, "
            f"{s.rps:.0f} vs {f.rps:.0f} req/s")
    pv = requests[1]
    check_once(pv, service, floor_orjson, standin)
    say(f"wrk: {pv.label}: service and the orjson floor, {plan.rounds} round(s) of {plan.duration_s} s")
    ctx["orjson_floor"] = measure(pv, (service, floor_orjson), plan)

    say("fetch mode")
    fetch_body = {k: v for k, v in requests[1].body.items() if k != "prefetch"}
    fetch_body["fhirServer"] = standin.base_url
    ctx["fetch"] = fetch_mode(fetch_body, service, standin, workdir, plan)

    say(f"soak: {plan.soak_requests:,} requests")
    ctx["soak"] = soak(requests[1], service, plan, cold)
    ctx["targets"] = targets(ctx)

    missed = [name for name, _, met in ctx["targets"] if not met and not name.startswith(REFERENCE)]
    if missed and not smoke:
        say("profiling request (2): targets missed: " + "; ".join(missed))
        in_process = profile_in_process(knowledge, requests[1], today)
        apps = app_cost(requests[1], workdir)
        workers = profile_workers(service, requests[1], plan.profile_s, workdir) if plan.profile_s else None
        ctx["profile"] = profile_text(ctx, in_process, workers, apps)
    ctx["elapsed"] = time.monotonic() - started
    ctx["machine"] = machine()
    ctx["commit"] = commit()
    return ctx


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="every part briefly; write nothing; never judge timings")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "performance.md",
                        help="file whose '## Benchmark' section is replaced (default docs/performance.md)")
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    load_before, cpu_before = load_average(), CpuMark.now()
    workdir = Path(tempfile.mkdtemp(prefix="spasm-cds-bench-"))
    try:
        with ExitStack() as stack:
            ctx = run(plan, args.smoke, workdir, stack)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; every server started here was stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ctx["share"] = machine_share(cpu_before, CpuMark.now(), load_before)  # every server stopped and waited for
    section = report(ctx)
    print(section)
    if args.smoke:
        print(f"bench: smoke run finished in {time.monotonic() - started:.1f} s (nothing written)", file=sys.stderr)
    else:
        write_section(args.out, section)
        print(f"bench: wrote the {SECTION!r} section of {args.out} in {time.monotonic() - started:.0f} s",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
