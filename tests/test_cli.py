"""The spasm-cds command: serve refuses broken knowledge with every problem listed; prefetch can be overridden
in data."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib

import pytest
import yaml

from cds_service import create_app
from cds_service.cli import main
from cds_service.knowledge.loader import load_knowledge
from cds_service.settings import Settings
from tests.conftest import REPO


def test_serve_refuses_to_start_on_broken_knowledge(tmp_path):
    (tmp_path / "cards").mkdir()
    result = subprocess.run([sys.executable, "-m", "cds_service", "serve", "--port", "1"], cwd=REPO,
                            env={"SPASM_CDS_KNOWLEDGE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    for missing in ("mappings/systems.yaml: missing", "cards/services.yaml: missing", "cards/sources.yaml: missing"):
        assert missing in result.stderr


def test_service_prefetch_can_be_overridden_in_data(tmp_path, today):
    for folder in ("cards", "mappings"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    services_file = tmp_path / "cards" / "services.yaml"
    doc = yaml.safe_load(services_file.read_text())
    doc["services"][0]["prefetch"] = {
        "conditions": "Condition?patient={{context.patientId}}&category=problem-list-item"}
    services_file.write_text(yaml.safe_dump(doc))
    knowledge = load_knowledge(tmp_path)
    client = create_app(Settings(knowledge_dir=tmp_path), knowledge).test_client()
    entry = client.get("/cds-services").get_json()["services"][0]
    assert entry["prefetch"]["conditions"].endswith("&category=problem-list-item")
    assert "labResults" in entry["prefetch"]  # the other derived templates stay
    service = knowledge.services[entry["id"]]
    conditions = next(q for q in service.queries if q.kind == "conditions")
    assert conditions.template.endswith("&category=problem-list-item")


def test_serve_with_authentication_on_and_no_public_url_refuses_to_start_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cds_service", "serve", "--port", "1"], cwd=REPO,
                            env={"SPASM_CDS_AUTH": "on", "SPASM_CDS_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "spasm-cds: cannot start: SPASM_CDS_AUTH=on needs SPASM_CDS_PUBLIC_URL, the base URL EHRs call (e.g. "
        "https://cds.example.org): a JWT's aud is checked against it, never against the Host header"]


def test_version_is_the_package_version(capsys):
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"spasm-cds {version}\n"
