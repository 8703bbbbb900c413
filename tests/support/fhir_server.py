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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.loopback import POLL_INTERVAL_S, LoopbackProcess, free_port, http_request

__all__ = ["FhirServer", "ensure_sekmet", "free_port"]

SEKMET_REQUIREMENT = "sekmet-fhir==0.1.1"
INSTALL_TIMEOUT_S = 600.0

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


class FhirServer(LoopbackProcess):
    """One sekmet-fhir instance with an empty database, for the duration of a `with` block."""

    def __init__(self, sekmet: Path | None = None) -> None:
        self._sekmet = sekmet
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
        # sekmet lets SEKMET_* variables override settings.yaml; keep the run hermetic.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEKMET_")}
        command = [str(sekmet), "serve", "-c", str(settings), "--host", "127.0.0.1", "--port", str(self.port)]
        self._start("sekmet", command, self._workdir, env, f"{self.base_url}/metadata")
        return self

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
