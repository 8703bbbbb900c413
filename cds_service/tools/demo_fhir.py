"""A local FHIR R4 server to try the service with the CDS Hooks Sandbox or in fetch mode: sekmet-fhir (PyPI)
installed into a virtualenv of its own (it pins its own FastAPI and fhir.resources), run on 127.0.0.1 with its
order simulator off, and loaded with the synthetic demo patients beside this file and any Synthea (or other FHIR
R4) Bundles. `spasm-cds demo-fhir` runs one; the test suite starts its FHIR servers with the same install,
settings and loading."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

from ..bundles import rewrite_references
from ..demo import demo_bundle, load_demos

SEKMET_REQUIREMENT = "sekmet-fhir==0.1.1"
INSTALL_TIMEOUT_S = 600.0
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
LOAD_TIMEOUT_S = 120.0
_POLL_S = 0.1

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


def sandbox_link(sandbox_url: str, fhir_base: str, discovery_url: str, patient_id: str) -> str:
    """A CDS Hooks Sandbox link (the public one or a local build) opening on this FHIR server, the service's
    discovery URL and a patient, through the Sandbox's URL parameters."""
    query = urlencode({"fhirServiceUrl": fhir_base, "serviceDiscoveryURL": discovery_url, "patientId": patient_id})
    return f"{sandbox_url}?{query}"


def default_cache() -> Path:
    """Where `spasm-cds demo-fhir` keeps sekmet-fhir's virtualenv unless told otherwise."""
    return Path.home() / ".cache" / "spasm-cds"


def sekmet_installed(cache: Path) -> bool:
    """Whether <cache>/venv-sekmet holds the pinned sekmet-fhir."""
    venv = cache / "venv-sekmet"
    name, version = SEKMET_REQUIREMENT.split("==")
    dist_info = f"{name.replace('-', '_')}-{version}.dist-info"
    return (venv / "bin" / "sekmet").exists() and any(venv.glob(f"lib/python*/site-packages/{dist_info}"))


def ensure_sekmet(cache: Path) -> Path:
    """The `sekmet` executable in <cache>/venv-sekmet, installed from PyPI on first use. Concurrent callers wait
    for one install. RuntimeError with pip's output when the install fails."""
    exe = cache / "venv-sekmet" / "bin" / "sekmet"
    if sekmet_installed(cache):
        return exe
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "venv-sekmet.lock", "w") as lock:
        _lock_exclusive(lock.fileno(), INSTALL_TIMEOUT_S)
        if not sekmet_installed(cache):  # another process may have installed it while this one waited
            python = cache / "venv-sekmet" / "bin" / "python"
            if not python.exists():
                _run_or_raise([sys.executable, "-m", "venv", str(cache / "venv-sekmet")])
            _run_or_raise([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                           SEKMET_REQUIREMENT])
    return exe


def _lock_exclusive(fd: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no lock on the sekmet cache after {timeout_s:.0f} s") from None
            time.sleep(_POLL_S)


def _run_or_raise(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}")


def write_settings(workdir: Path, port: int, base_url: str) -> Path:
    """sekmet's settings.yaml in workdir: 127.0.0.1:port, links written as base_url, SQLite under workdir/data."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "settings.yaml"
    path.write_text(SETTINGS_TEMPLATE.format(base_url=base_url, port=port, data_dir=workdir / "data"))
    return path


def serve_command(sekmet: Path, settings: Path, port: int) -> list[str]:
    """The command that runs sekmet with these settings on 127.0.0.1:port."""
    return [str(sekmet), "serve", "-c", str(settings), "--host", "127.0.0.1", "--port", str(port)]


def sekmet_environment() -> dict[str, str]:
    """This process's environment without SEKMET_* variables, which would override settings.yaml."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SEKMET_")}


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # the server is on loopback: never through a proxy from the environment
    return session


def post_transaction(base_url: str, bundle: dict[str, Any], timeout_s: float = LOAD_TIMEOUT_S) -> dict[str, str]:
    """POST a transaction Bundle; return each entry's fullUrl mapped to its `Type/id` on the server.
    RuntimeError with the answer on a non-2xx status."""
    with _session() as session:
        response = session.post(base_url, json=bundle, timeout=timeout_s,
                                headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"})
    if not 200 <= response.status_code < 300:
        raise RuntimeError(f"transaction failed with HTTP {response.status_code}: {response.text[:3000]}")
    ids: dict[str, str] = {}
    for sent, answered in zip(bundle.get("entry", []), response.json().get("entry", []), strict=True):
        location = answered.get("response", {}).get("location", "")
        if "fullUrl" in sent and location:
            ids[sent["fullUrl"]] = type_and_id(location)
    return ids


def type_and_id(location: str) -> str:
    """`Type/id` of a response location, which may be absolute and end in /_history/<version>."""
    parts = location.split("?", 1)[0].split("/_history/", 1)[0].rstrip("/").split("/")
    return f"{parts[-2]}/{parts[-1]}"


def as_transaction(bundle: Any) -> dict[str, Any]:
    """A transaction Bundle as it is; a collection Bundle as a transaction that PUTs each resource under its own id
    with bundle-local references rewritten to Type/id (loading it twice replaces rather than duplicates).
    ValueError for anything else."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise ValueError("not a FHIR Bundle")
    if bundle.get("type") == "transaction":
        return bundle
    if bundle.get("type") != "collection":
        raise ValueError(f"a {bundle.get('type')!r} Bundle; only transaction and collection Bundles can be loaded")
    resources = [e["resource"] for e in bundle.get("entry") or () if isinstance(e.get("resource"), dict)]
    if any(not r.get("id") for r in resources):
        raise ValueError("a collection Bundle whose resources all need an id")
    local = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
             for e in bundle["entry"] if isinstance(e.get("fullUrl"), str) and isinstance(e.get("resource"), dict)}
    entries = [{"resource": rewrite_references(r, local),
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


@dataclass(frozen=True)
class LoadedPatient:
    """A patient now on the server: its id there, its name, and where it came from (with what to expect)."""

    id: str
    name: str
    source: str


def patient_name(patient: dict[str, Any]) -> str:
    """A Patient's first name entry as `Given Family`, or its text, or '?'."""
    name = (patient.get("name") or [{}])[0]
    parts = [*name.get("given", []), name.get("family", "")]
    return " ".join(p for p in parts if isinstance(p, str) and p) or name.get("text") or "?"


def load_demo_patients(base_url: str, today: date) -> list[LoadedPatient]:
    """Load every demo patient (dates shifted as on the try-it page, so results are days old) under its own ids."""
    loaded = []
    for demo in load_demos().patients:
        bundle = demo_bundle(demo, today)
        post_transaction(base_url, as_transaction(bundle))
        (patient,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
        expect = "; ".join(demo.cards) if demo.cards else "no card"
        loaded.append(LoadedPatient(patient["id"], patient_name(patient), f"demo, {demo.hook}: {expect}"))
    return loaded


def bundle_files(paths: Iterable[Path]) -> list[Path]:
    """The files given, and the *.json files of the folders given (in name order)."""
    files: list[Path] = []
    for path in paths:
        files += sorted(path.glob("*.json")) if path.is_dir() else [path]
    return files


def load_bundle_file(base_url: str, path: Path,
                     extra: Callable[[str], list[dict[str, Any]]] | None = None) -> list[LoadedPatient]:
    """Load one Bundle file (a transaction as it is, a collection by PUT); then, for each of its Patients, the
    resources extra(patient id) makes (e.g. a cramp Condition). ValueError naming the file when it will not load."""
    try:
        bundle = as_transaction(json.loads(path.read_text(encoding="utf-8")))
        ids = post_transaction(base_url, bundle)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    loaded = []
    for entry in bundle.get("entry", []):
        resource = entry.get("resource") or {}
        if resource.get("resourceType") != "Patient":
            continue
        patient_id = ids.get(entry.get("fullUrl", ""), f"Patient/{resource.get('id')}").split("/", 1)[1]
        added = extra(patient_id) if extra else []
        if added:
            post_transaction(base_url, {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}} for r in added]})
        loaded.append(LoadedPatient(patient_id, patient_name(resource),
                                    path.name + (f" (+ {len(added)} added resource(s))" if added else "")))
    return loaded


class SekmetProcess:
    """One sekmet on 127.0.0.1 for as long as a `with` block runs, its database fresh at each start."""

    def __init__(self, sekmet: Path, workdir: Path, port: int, base_url: str | None = None) -> None:
        self.sekmet = sekmet
        self.workdir = workdir
        self.port = port
        self.local_url = f"http://127.0.0.1:{port}/fhir"
        self.base_url = base_url or self.local_url
        self.log_path = workdir / "sekmet.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SekmetProcess:
        shutil.rmtree(self.workdir / "data", ignore_errors=True)
        settings = write_settings(self.workdir, self.port, self.base_url)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(serve_command(self.sekmet, settings, self.port), cwd=self.workdir,
                                            env=sekmet_environment(), stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT)
        try:
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        with _session() as session:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"sekmet exited with code {self.process.returncode}; log tail:\n"
                                       f"{self.log_tail()}")
                try:
                    if session.get(f"{self.local_url}/metadata", timeout=2).status_code == 200:
                        return
                except requests.RequestException:
                    pass
                time.sleep(_POLL_S)
        raise RuntimeError(f"sekmet did not answer within {START_TIMEOUT_S:.0f} s; log tail:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        """The end of sekmet's output."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"

    def wait(self) -> int:
        """Block until sekmet exits (SIGTERM or Ctrl-C stops it first); its exit code."""
        previous = signal.signal(signal.SIGTERM, _raise_system_exit)
        try:
            assert self.process is not None
            return self.process.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.stop()

    def stop(self) -> None:
        """Stop sekmet: SIGTERM, then SIGKILL after STOP_TIMEOUT_S."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)


def _raise_system_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
