"""A real FHIR R4 server (sekmet-fhir) for integration tests, run in its own virtualenv on 127.0.0.1.

ensure_sekmet() installs it once into a cache; FhirServer starts one throwaway instance and loads bundles.
"""

# What sekmet-fhir 0.1.1 answered when tried here (a bare patient id works in every patient= search):
# - Patient/<id>: the resource; an unknown id gives 404 with an OperationOutcome.
# - MedicationRequest?patient=<id>&status=active,on-hold: active and on-hold only (comma is OR); stopped is left out.
# - MedicationRequest?patient=<id>&_include=MedicationRequest:medication: the requests (search.mode "match") plus the
#   Medication named by medicationReference (search.mode "include"); total counts matches only. Combines with status=.
# - MedicationStatement?patient=<id> and Condition?patient=<id>: that patient's resources only.
# - Observation?patient=<id>&code=<sys>|<a>,<sys>|<b>&_sort=-date&_count=2: the newest two across both codes, with
#   total and absolute self/first/next/last links. Paging is by _offset; GET on next returns the following page (with a
#   previous link) and the last page has no next. `|` and `,` work raw or percent-encoded; a code without system works.
# - Default page size 20; _count=1000 returned all 25 of 25; _count=0 returns total with no entries.
# - An unknown search parameter is ignored, and the Bundle gains an entry with search.mode "outcome" holding an
#   OperationOutcome warning, so readers must skip that entry.
# - POST <Type>/_search with a form body gives the same result as GET.
# - A transaction answers 200 with a transaction-response whose entry[i].response.location is absolute and versioned,
#   e.g. http://127.0.0.1:P/fhir/Patient/<uuid>/_history/1; urn:uuid references are rewritten to Type/<id>.
#   With validation inbound "warn" malformed resources are stored; an unknown resourceType rolls back the whole
#   transaction (404 OperationOutcome).

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

SEKMET_REQUIREMENT = "sekmet-fhir==0.1.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
INSTALL_TIMEOUT_S = 600.0
POLL_INTERVAL_S = 0.1

SETTINGS_TEMPLATE = """\
base_url: {base_url}
host: 127.0.0.1
port: {port}
data_dir: {data_dir}
simulator:
  enabled: false
validation:
  inbound: warn
log_inbound: false
"""


def ensure_sekmet(cache_dir: Path | None = None) -> Path:
    """Return the `sekmet` executable in its own cached virtualenv, installing it on first use."""
    cache = Path(cache_dir or os.environ.get("SPASM_CDS_TEST_CACHE") or Path.home() / ".cache" / "spasm-cds-test")
    venv = cache / "venv-sekmet"
    exe = venv / "bin" / "sekmet"
    if _sekmet_installed(venv):
        return exe
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "venv-sekmet.lock", "w") as lock:
        _lock_exclusive(lock.fileno(), INSTALL_TIMEOUT_S)
        # Another process may have finished the install while we waited for the lock.
        if not _sekmet_installed(venv):
            python = venv / "bin" / "python"
            if not python.exists():
                _run_or_raise([sys.executable, "-m", "venv", str(venv)])
            _run_or_raise(
                [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", SEKMET_REQUIREMENT]
            )
    return exe


def _sekmet_installed(venv: Path) -> bool:
    name, version = SEKMET_REQUIREMENT.split("==")
    dist_info = f"{name.replace('-', '_')}-{version}.dist-info"
    return (venv / "bin" / "sekmet").exists() and any(venv.glob(f"lib/python*/site-packages/{dist_info}"))


def _lock_exclusive(fd: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no lock on the sekmet cache after {timeout_s:.0f} s") from None
            time.sleep(POLL_INTERVAL_S)


def _run_or_raise(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_request(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout_s: float = 30.0
) -> tuple[int, bytes]:
    """Send one HTTP request and return (status, body), for any status including errors."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def wait_until_ok(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> str | None:
    """Poll url until it answers 200; return None then, or why it never did."""
    deadline = time.monotonic() + timeout_s
    last_answer = "no connection"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with code {process.returncode} before {url} answered"
        try:
            status = http_request("GET", url, timeout_s=2.0)[0]
            if status == 200:
                return None
            last_answer = f"HTTP {status}"
        except OSError as error:
            last_answer = str(error)
        time.sleep(POLL_INTERVAL_S)
    return f"{url} did not answer 200 within {timeout_s:.0f} s (last: {last_answer})"


def stop_process_group(process: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the process's group, then SIGKILL it if it has not exited within timeout_s."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout_s)
    except ProcessLookupError:
        process.wait(timeout=timeout_s)


def log_tail(path: Path, chars: int = 4000) -> str:
    """Return the last chars of a log file, or a note if there is none."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"


class FhirServer:
    """One sekmet-fhir instance with an empty database, for the duration of a `with` block."""

    def __init__(self, sekmet: Path | None = None) -> None:
        self._sekmet = sekmet
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self.port = 0
        self.base_url = ""

    def __enter__(self) -> FhirServer:
        sekmet = self._sekmet or ensure_sekmet()
        self._workdir = Path(tempfile.mkdtemp(prefix="spasm-cds-fhir-"))
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/fhir"
        settings = self._workdir / "settings.yaml"
        settings.write_text(
            SETTINGS_TEMPLATE.format(base_url=self.base_url, port=self.port, data_dir=self._workdir / "data")
        )
        self.log_path = self._workdir / "sekmet.log"
        try:
            with open(self.log_path, "wb") as log:
                self._process = subprocess.Popen(
                    [str(sekmet), "serve", "-c", str(settings), "--host", "127.0.0.1", "--port", str(self.port)],
                    cwd=self._workdir,
                    # sekmet lets SEKMET_* variables override settings.yaml; keep the run hermetic.
                    env={k: v for k, v in os.environ.items() if not k.startswith("SEKMET_")},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            problem = wait_until_ok(f"{self.base_url}/metadata", self._process, START_TIMEOUT_S)
            if problem:
                raise RuntimeError(f"sekmet-fhir {problem}; log tail:\n{log_tail(self.log_path)}")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            stop_process_group(self._process)
            self._process = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def load_transaction(self, bundle: dict) -> dict[str, str]:
        """POST a transaction Bundle; return each entry's fullUrl mapped to its new `Type/id`.

        Raises RuntimeError with the response body on a non-2xx answer.
        """
        status, body = http_request(
            "POST",
            self.base_url,
            json.dumps(bundle).encode(),
            {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
        )
        if not 200 <= status < 300:
            raise RuntimeError(f"transaction failed with HTTP {status}: {body.decode(errors='replace')[:3000]}")
        response_entries = json.loads(body).get("entry", [])
        ids: dict[str, str] = {}
        for sent, answered in zip(bundle.get("entry", []), response_entries, strict=True):
            location = answered.get("response", {}).get("location", "")
            if "fullUrl" in sent and location:
                ids[sent["fullUrl"]] = _type_and_id(location)
        return ids

    def get_json(self, path_and_query: str) -> dict:
        """GET `{base_url}/{path_and_query}` and return the JSON body; raise on a non-200 answer."""
        url = f"{self.base_url}/{path_and_query}"
        status, body = http_request("GET", url, headers={"Accept": "application/fhir+json"})
        if status != 200:
            raise RuntimeError(f"GET {path_and_query} answered HTTP {status}: {body.decode(errors='replace')[:3000]}")
        return json.loads(body)

    @staticmethod
    def patient_id(ids: dict[str, str]) -> str:
        """Return the bare id of the one Patient in a load_transaction() result."""
        (patient,) = [ref for ref in ids.values() if ref.startswith("Patient/")]
        return patient.split("/", 1)[1]


def _type_and_id(location: str) -> str:
    # Locations may be absolute and may end in /_history/<version>.
    parts = location.split("?", 1)[0].split("/_history/", 1)[0].rstrip("/").split("/")
    return f"{parts[-2]}/{parts[-1]}"
