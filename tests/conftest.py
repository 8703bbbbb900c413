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
def app(knowledge):
    return create_app(Settings(knowledge_dir=REPO), knowledge)


@pytest.fixture()
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
    """The service under gunicorn (2 workers) on 127.0.0.1, on the bundled knowledge."""
    from tests.support.service_server import ServiceServer

    with ServiceServer(workers=2) as server:
        yield server
