"""compose.yaml agrees with the image and the service: every SPASM_CDS_ variable it sets is a setting, the issuers
file it names lies in its read-only mount, the database URL points at its PostgreSQL service with that service's
user and database, the service waits for PostgreSQL's healthcheck, and its healthcheck is the Dockerfile's word for
word. Compose itself is not run here: no registry is reachable for the postgres image (the image is tested on its
own by tests/integration/test_docker_image.py)."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml

from cds_service.settings import PREFIX, Settings

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text(encoding="utf-8")


def test_every_variable_set_is_a_setting(compose):
    names = {PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
    env = compose["services"]["spasm-cds"]["environment"]
    assert {"SPASM_CDS_PUBLIC_URL", "SPASM_CDS_DATABASE_URL", "SPASM_CDS_TRUSTED_ISSUERS"} <= set(env)
    assert set(env) - names == set()


def test_the_issuers_file_lies_in_a_read_only_mount(compose):
    service = compose["services"]["spasm-cds"]
    folder = PurePosixPath(service["environment"]["SPASM_CDS_TRUSTED_ISSUERS"]).parent
    assert any(volume.split(":")[1:] == [str(folder), "ro"] for volume in service["volumes"])


def test_the_database_is_the_postgres_service_and_started_first(compose):
    service, postgres = compose["services"]["spasm-cds"], compose["services"]["postgres"]
    # compose fills in ${POSTGRES_PASSWORD:?...}; its message would read as a query string here
    url = urlsplit(re.sub(r"\$\{[^}]*\}", "password", service["environment"]["SPASM_CDS_DATABASE_URL"]))
    assert url.scheme == "postgresql" and url.hostname == "postgres"
    assert url.username == postgres["environment"]["POSTGRES_USER"]
    assert url.path.lstrip("/") == postgres["environment"]["POSTGRES_DB"]
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert postgres["healthcheck"]["test"][0] == "CMD" and "pg_isready" in postgres["healthcheck"]["test"]


def test_the_healthcheck_is_the_images_and_the_port_is_published_on_loopback(compose, dockerfile):
    service = compose["services"]["spasm-cds"]
    image_check = re.search(r"^HEALTHCHECK .*? CMD (.+)$", dockerfile, re.MULTILINE).group(1)
    assert service["healthcheck"]["test"] == ["CMD-SHELL", image_check]
    port = re.search(r"SPASM_CDS_PORT=(\d+)", dockerfile).group(1)
    assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
