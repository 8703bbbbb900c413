"""`spasm-cds demo-fhir` as a user runs it: it starts a real sekmet-fhir on 127.0.0.1, loads the demo patients and
two Synthea bundles (each given a cramp Condition with --assume-cramps), answers FHIR searches with links under its
base URL, and a SIGTERM to the command alone stops the server too. Bundle conversion is checked without a server."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from cds_service.bundles import cramp_condition
from cds_service.demo import load_demos
from cds_service.tools.demo_fhir import as_transaction, bundle_files, patient_name, sandbox_link
from tests.conftest import REPO
from tests.support.fhir_server import ensure_sekmet, free_port, http_request
from tests.support.synthea import BUNDLE_DIR

START_TIMEOUT_S = 180.0
TWO_BUNDLES = sorted(BUNDLE_DIR.glob("*.json"), key=lambda p: p.stat().st_size)[:2]


def get_json(url: str) -> dict:
    status, body = http_request("GET", url, headers={"Accept": "application/fhir+json"})
    assert status == 200, body[:500]
    return json.loads(body)


def the_patient(bundle_file: Path) -> dict:
    """The one Patient of a Bundle file."""
    (patient,) = [e["resource"] for e in json.loads(bundle_file.read_text())["entry"]
                  if e["resource"]["resourceType"] == "Patient"]
    return patient


@pytest.mark.integration
def test_demo_fhir_loads_the_demo_patients_and_synthea_bundles_and_stops_on_sigterm(tmp_path, knowledge):
    cache = ensure_sekmet().parents[2]  # <cache>/venv-sekmet/bin/sekmet: the test cache, installed once
    port = free_port()
    log = tmp_path / "demo-fhir.out"
    command = [sys.executable, "-m", "cds_service", "demo-fhir", "--port", str(port), "--cache", str(cache),
               "--workdir", str(tmp_path / "work"), "--assume-cramps", *map(str, TWO_BUNDLES)]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Ctrl-C stops it" not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        printed = log.read_text()
        assert "Ctrl-C stops it" in printed, printed[-3000:]

        base = f"http://127.0.0.1:{port}/fhir"
        search = get_json(f"{base}/Patient?_count=100")
        names = {e["resource"]["id"]: patient_name(e["resource"]) for e in search["entry"]}
        expected_demo = {the_patient(REPO / "cds_service" / "demo" / d.file)["id"] for d in load_demos().patients}
        assert expected_demo <= set(names)
        synthea_names = {patient_name(the_patient(p)) for p in TWO_BUNDLES}
        synthea_ids = [pid for pid, name in names.items() if name in synthea_names]
        assert len(synthea_ids) == 2 and len(names) == len(expected_demo) + 2
        assert all(link["url"].startswith(f"http://localhost:{port}/fhir/") for link in search["link"])
        for pid in synthea_ids:
            assert pid in printed
            cramp_code = cramp_condition(knowledge, pid, date.today())["code"]["coding"][0]
            conditions = get_json(f"{base}/Condition?patient={pid}&_count=1000")["entry"]
            assert any(cramp_code in e["resource"]["code"].get("coding", []) for e in conditions)
        assert "https://sandbox.cds-hooks.org/?fhirServiceUrl=http%3A%2F%2Flocalhost" in printed

        os.kill(process.pid, signal.SIGTERM)  # the command only, not its process group
        process.wait(timeout=30)
        with pytest.raises(OSError):  # noqa: PT011 - refused, reset or timed out: any socket error means it is gone
            http_request("GET", f"{base}/metadata", timeout_s=2.0)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def test_a_collection_bundle_becomes_puts_under_its_own_ids_with_local_references_resolved():
    demo = load_demos().patients[0]
    bundle = json.loads((REPO / "cds_service" / "demo" / demo.file).read_text())
    transaction = as_transaction(bundle)
    assert transaction["type"] == "transaction"
    by_url = {e["request"]["url"]: e["resource"] for e in transaction["entry"]}
    assert all(e["request"]["method"] == "PUT" for e in transaction["entry"])
    patient_id = next(r["id"] for r in by_url.values() if r["resourceType"] == "Patient")
    references = json.dumps(transaction).count(f'"Patient/{patient_id}"')
    assert references >= 2 and "urn:uuid:" not in json.dumps([e["resource"] for e in transaction["entry"]])


def test_only_transaction_and_collection_bundles_load(tmp_path):
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    assert as_transaction(transaction) is transaction
    for bad in ({"resourceType": "Patient"}, {"resourceType": "Bundle", "type": "searchset"}, []):
        with pytest.raises(ValueError, match="Bundle"):
            as_transaction(bad)
    (tmp_path / "b.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("")
    assert bundle_files([tmp_path, Path("x.json")]) == [tmp_path / "b.json", Path("x.json")]


def test_the_sandbox_link_names_the_service_on_any_port_and_a_local_sandbox():
    link = sandbox_link("http://localhost:8000/", "http://localhost:18090/fhir",
                        "http://localhost:18097/cds-services", "try-it-alpha")
    sandbox, query = link.split("?", 1)
    assert sandbox == "http://localhost:8000/"
    assert parse_qs(query, strict_parsing=True) == {"fhirServiceUrl": ["http://localhost:18090/fhir"],
                                                    "serviceDiscoveryURL": ["http://localhost:18097/cds-services"],
                                                    "patientId": ["try-it-alpha"]}
