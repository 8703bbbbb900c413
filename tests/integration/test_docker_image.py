"""The Docker image, built from this checkout with podman on a local python:3.11-slim stand-in
(tests/support/container_image.py) and run on 127.0.0.1: it serves behind nginx, refuses calls without a JWT and
answers a signed one (authentication is on in the image), runs as a non-root user, holds the dependencies at the
versions requirements.lock pins, stops at start in one line without SPASM_CDS_PUBLIC_URL, and its HEALTHCHECK
passes, on the port SPASM_CDS_PORT names.

Skipped only where podman cannot run (not installed and not installable, or no user namespaces), and never under CI,
whose install phase (.ci/run) installs podman and makes the base image. Bounded: the first build takes about a minute
(base image another minute and a bit, once per machine); each container starts within a few seconds and is removed
at the end, whatever happened."""
from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from cds_service.case_runner import build_request, service_for
from tests.support.container_image import (
    Container,
    PodmanUnavailable,
    build_image,
    ensure_base_image,
    ensure_podman,
    remove_stale_containers,
)
from tests.support.jwt_issuer import SANDBOX_ISS, ec_issuer, write_issuers
from tests.support.loopback import http_request, raw_exchange

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
TAG = "localhost/spasm-cds:test"  # kept between runs, so that a second build reuses podman's layer cache
PUBLIC_URL = "https://cds.example.org"
ISSUER = ec_issuer()
CONFIG = "/etc/spasm-cds"


@pytest.fixture(scope="module")
def image() -> str:
    try:
        ensure_podman()
    except PodmanUnavailable as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"podman cannot run here: {error}")
    remove_stale_containers()
    ensure_base_image()
    build_image(REPO, TAG)
    return TAG


@pytest.fixture(scope="module")
def issuers() -> Iterator[str]:
    """A trusted-issuers file and its JWK Set in a folder the container's user can read, as a read-only mount."""
    folder = Path(tempfile.mkdtemp(prefix="spasm-cds-image-"))
    try:
        write_issuers(folder, {SANDBOX_ISS: {"jwks_file": "jwks.json"}}, {"jwks.json": ISSUER.jwks()})
        folder.chmod(0o755)
        for item in folder.iterdir():
            item.chmod(0o644)
        yield f"{folder}:{CONFIG}:ro"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def served(image, issuers) -> Iterator[Container]:
    env = {"SPASM_CDS_PUBLIC_URL": PUBLIC_URL, "SPASM_CDS_TRUSTED_ISSUERS": f"{CONFIG}/issuers.yaml"}
    with Container(image, env, volumes=(issuers,)) as container:
        container.wait_ok()
        yield container


@pytest.fixture(scope="module")
def hook_call(knowledge) -> tuple[str, bytes]:
    case = next(c for c in knowledge.cases if c.expect == "card" and c.hook == "patient-view")
    service = service_for(knowledge, case)
    return f"/cds-services/{service.id}", json.dumps(build_request(knowledge, case, service, date.today())).encode()


def test_healthz_answers_through_nginx(served):
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"200"
    assert b"\r\nServer: nginx" in head  # gunicorn, on its private socket, is never reached directly
    assert json.loads(body)["status"] == "ok"


def test_calls_without_a_jwt_are_refused_and_a_signed_call_gets_cards(served, hook_call):
    path, body = hook_call
    headers = {"Content-Type": "application/json"}
    assert http_request("GET", f"{served.url}/cds-services") == (401, b"")
    assert http_request("POST", served.url + path, body, headers) == (401, b"")
    token = ISSUER.token(PUBLIC_URL + path)
    status, answer = http_request("POST", served.url + path, body, {**headers, "Authorization": f"Bearer {token}"})
    assert status == 200, answer[:300]
    assert json.loads(answer)["cards"]


def test_nginx_answers_an_oversized_body_itself_as_an_operation_outcome(served):
    request = b"POST /cds-services/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n"
    head, payload = raw_exchange(served.port, request)
    assert head.split(b" ")[1] == b"413"
    outcome = json.loads(payload)
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "too-long"


def test_the_service_runs_as_a_non_root_user(served):
    done = served.exec("id", "-u")
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) != 0
    # every process in the container, nginx's workers included
    ps = served.exec("sh", "-c", "for p in /proc/[0-9]*; do awk '/^Uid:/ {print $2}' $p/status; done")
    assert ps.returncode == 0 and ps.stdout.split() and "0" not in ps.stdout.split(), ps.stdout


def test_the_image_holds_exactly_the_locked_dependencies(served):
    frozen = served.exec("pip", "freeze", "--exclude", "spasm-cds")
    assert frozen.returncode == 0, frozen.stderr
    lock = (REPO / "requirements.lock").read_text(encoding="utf-8").splitlines()
    assert sorted(frozen.stdout.split()) == sorted(line for line in lock if line.strip() and not line.startswith("#"))


def test_the_healthcheck_passes(served):
    assert served.healthcheck() == (0, "healthy")


def test_the_healthcheck_follows_spasm_cds_port(image, issuers):
    env = {"SPASM_CDS_PUBLIC_URL": PUBLIC_URL, "SPASM_CDS_TRUSTED_ISSUERS": f"{CONFIG}/issuers.yaml",
           "SPASM_CDS_PORT": "9090"}
    with Container(image, env, port_inside=9090, volumes=(issuers,)) as moved:
        moved.wait_ok()
        nothing_on_8080 = moved.exec("python", "-c", "import socket; socket.create_connection(('127.0.0.1', 8080), 2)")
        assert nothing_on_8080.returncode != 0 and "Connection refused" in nothing_on_8080.stderr
        assert moved.healthcheck() == (0, "healthy")


def test_without_a_public_url_the_container_stops_at_start_in_one_line(image):
    with Container(image) as refused:
        assert refused.wait_exit(timeout_s=60) != 0
        lines = [line for line in refused.logs().splitlines() if line.strip()]
    assert len(lines) == 1 and "SPASM_CDS_AUTH=on needs SPASM_CDS_PUBLIC_URL" in lines[0], lines
