"""Shared fixtures: the knowledge (loaded once), the app in process, and real servers on loopback."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from cds_service import create_app
from cds_service.knowledge.loader import load_knowledge
from cds_service.settings import Settings

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def knowledge():
    return load_knowledge(REPO)


@pytest.fixture(scope="session")
def app(knowledge, tmp_path_factory):
    """The app in process on a fresh database. De-duplication is off: the rule cases share one patient, and each
    must get its card however often it is sent (tests/integration/test_feedback.py tests de-duplication)."""
    return create_app(Settings(knowledge_dir=REPO, data_dir=tmp_path_factory.mktemp("app"), deduplicate="off"),
                      knowledge)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def today() -> date:
    return date.today()


@pytest.fixture(scope="session")
def fhir_server():
    """A real sekmet-fhir on 127.0.0.1, installed into its own venv on first use."""
    from tests.support.fhir_server import FhirServer

    with FhirServer() as server:
        yield server


@pytest.fixture(scope="session")
def service_server():
    """The service under gunicorn (2 workers) on 127.0.0.1, on the bundled knowledge, de-duplication off (as for
    `app`)."""
    from tests.support.service_server import ServiceServer

    with ServiceServer(workers=2, extra_env={"SPASM_CDS_DEDUPLICATE": "off"}) as server:
        yield server


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL cluster on 127.0.0.1 (installed from Debian if missing), run as a non-root user."""
    from tests.support.postgres import PostgresCluster

    with PostgresCluster() as cluster:
        yield cluster
