"""The walkthroughs say what the service does: each trusted-issuers file docs/sandbox.md shows is accepted at start
and, with a key shaped like the Sandbox's, lets a Sandbox-shaped token through discovery (200) while a token from
any other key gets 401; the JWT values it quotes are the Sandbox's; docs/ehr-registration.md names every prefetch
key the services ask for, and every document the README links exists."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from cds_service import create_app
from cds_service.demo import load_demos
from cds_service.settings import Settings
from cds_service.tools.demo_fhir import sandbox_link
from tests.conftest import REPO
from tests.support.jwt_issuer import SANDBOX_ISS, SANDBOX_JKU, SANDBOX_KID, JwksServer, ec_issuer

SANDBOX_DOC = REPO / "docs" / "sandbox.md"
DISCOVERY = "http://localhost/cds-services"


def issuer_files(markdown: str) -> list[dict]:
    """Every ```yaml block of the document that is a trusted-issuers file."""
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", markdown, re.DOTALL)]
    return [b for b in blocks if isinstance(b, dict) and "issuers" in b]


@pytest.fixture(scope="module")
def documented():
    files = issuer_files(SANDBOX_DOC.read_text())
    assert len(files) == 2, "docs/sandbox.md shows the jku way and the jwks_file way"
    return {"jku" if "jku" in f["issuers"][SANDBOX_ISS] else "jwks_file": f for f in files}


def discovery_status(tmp_path, knowledge, issuers: dict, token: str | None) -> int:
    folder = tmp_path / "sandbox"
    folder.mkdir(exist_ok=True)
    (folder / "issuers.yaml").write_text(yaml.safe_dump(issuers))
    settings = Settings(knowledge_dir=REPO, data_dir=tmp_path / "data", auth="on", public_url="http://localhost",
                        trusted_issuers=str(folder / "issuers.yaml"))
    client = create_app(settings, knowledge).test_client()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get("/cds-services", headers=headers).status_code


def test_the_local_jwks_file_way_lets_the_sandbox_in_and_no_one_else(tmp_path, knowledge, documented):
    sandbox, stranger = ec_issuer(), ec_issuer()
    issuers = documented["jwks_file"]
    jwks_name = issuers["issuers"][SANDBOX_ISS]["jwks_file"]
    (tmp_path / "sandbox").mkdir()
    (tmp_path / "sandbox" / jwks_name).write_text(json.dumps(sandbox.jwks()))
    assert discovery_status(tmp_path, knowledge, issuers, sandbox.token(DISCOVERY)) == 200
    assert discovery_status(tmp_path, knowledge, issuers, stranger.token(DISCOVERY)) == 401
    assert discovery_status(tmp_path, knowledge, issuers, None) == 401


def test_the_jku_allow_list_way_fetches_only_the_listed_url(tmp_path, knowledge, documented):
    """The documented file with its one listed URL pointed at a loopback server holding the (simulated) key."""
    issuers = documented["jku"]
    (listed,) = issuers["issuers"][SANDBOX_ISS]["jku"]
    assert listed == SANDBOX_JKU
    with JwksServer() as served:
        sandbox = ec_issuer(jku=served.url)
        served.jwks = sandbox.jwks()
        local = {"issuers": {SANDBOX_ISS: {"jku": [served.url]}}}
        assert discovery_status(tmp_path, knowledge, local, sandbox.token(DISCOVERY)) == 200
        elsewhere = sandbox.token(DISCOVERY, header={"jku": served.url.replace("jwks.json", "other.json")})
        assert discovery_status(tmp_path, knowledge, local, elsewhere) == 401
        assert served.seen == ["/jwks.json"]  # the unlisted URL was never fetched


def test_the_quoted_jwt_values_are_the_sandboxs():
    text = SANDBOX_DOC.read_text()
    for value in (SANDBOX_ISS, SANDBOX_KID, SANDBOX_JKU, '"alg": "ES384"'):
        assert value in text


def test_ehr_registration_names_every_prefetch_key(client):
    text = (REPO / "docs" / "ehr-registration.md").read_text()
    keys = {key for s in client.get("/cds-services").get_json()["services"] for key in s.get("prefetch", {})}
    assert keys and all(f"`{key}`" in text for key in keys), sorted(keys)


def test_every_local_document_the_readme_links_exists():
    readme = (REPO / "README.md").read_text()
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)]+)\)", readme) if "://" not in t]
    assert {"docs/sandbox.md", "docs/ehr-registration.md", "cards/README.md"} <= set(targets)
    assert [t for t in targets if t and not (REPO / t).exists()] == []


def documented_commands(program: str) -> list[str]:
    """Each command line of the Sandbox walkthrough that runs `spasm-cds <program>`, continuation lines joined."""
    text = SANDBOX_DOC.read_text().replace("\\\n", " ")
    return [line for line in text.splitlines() if f"spasm-cds {program}" in line and not line.startswith("`")]


def test_each_documented_serve_command_with_auth_on_starts_and_takes_the_sandboxs_aud(tmp_path, knowledge):
    commands = [c for c in documented_commands("serve") if "SPASM_CDS_AUTH=on" in c]
    assert len(commands) == 2, "docs/sandbox.md shows the default port and another one"
    public_urls = []
    for n, command in enumerate(commands):
        env = dict(re.findall(r"(SPASM_CDS_[A-Z_]+)=(\S+)", command))
        port = re.search(r"serve --port (\d+)", command)
        assert env["SPASM_CDS_PUBLIC_URL"] == f"http://localhost:{port.group(1) if port else 8080}"
        public_urls.append(env["SPASM_CDS_PUBLIC_URL"])
        sandbox = ec_issuer()
        folder = tmp_path / str(n) / "sandbox"
        folder.mkdir(parents=True)
        (folder / "jwks.json").write_text(json.dumps(sandbox.jwks()))
        (folder / "issuers.yaml").write_text(yaml.safe_dump({"issuers": {SANDBOX_ISS: {"jwks_file": "jwks.json"}}}))
        env.update(SPASM_CDS_TRUSTED_ISSUERS=str(folder / "issuers.yaml"), SPASM_CDS_DATA_DIR=str(tmp_path / str(n)))
        client = create_app(Settings.from_env(env), knowledge).test_client()
        token = sandbox.token(f"{env['SPASM_CDS_PUBLIC_URL']}/cds-services")
        assert client.get("/cds-services", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert public_urls[0] == "http://localhost:8080" and public_urls[1] != public_urls[0]


def test_every_demo_fhir_option_the_walkthrough_uses_exists(tmp_path):
    used = {o for c in documented_commands("demo-fhir") for o in re.findall(r"(--[a-z-]+)", c)}
    assert {"--assume-cramps", "--service-url", "--sandbox-url"} <= used
    result = subprocess.run([sys.executable, "-m", "cds_service", "demo-fhir", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    offered = set(re.findall(r"(--[a-z-]+)", result.stdout))
    assert used - offered == set()


def test_the_link_quoted_for_other_ports_is_the_one_demo_fhir_prints_and_names_the_served_port():
    (other,) = [c for c in documented_commands("demo-fhir") if "--service-url" in c]
    service_url = re.search(r"--service-url (\S+)", other).group(1)
    sandbox_url = re.search(r"--sandbox-url (\S+)", other).group(1)
    first = json.loads((REPO / "cds_service" / "demo" / load_demos().patients[0].file).read_text())
    (patient_id,) = [e["resource"]["id"] for e in first["entry"] if e["resource"]["resourceType"] == "Patient"]
    link = sandbox_link(sandbox_url, "http://localhost:8090/fhir", service_url, patient_id)
    assert link in SANDBOX_DOC.read_text()
    (serve,) = [c for c in documented_commands("serve") if "serve --port" in c]
    public_url = re.search(r"SPASM_CDS_PUBLIC_URL=(\S+)", serve).group(1)
    port = re.search(r"serve --port (\d+)", serve).group(1)
    assert service_url == f"{public_url}/cds-services" and public_url.endswith(f":{port}")
