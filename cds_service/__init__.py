"""spasm-cds: a CDS Hooks 2.0 service for muscle cramps and spasms. create_app is the factory."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import date

from flask import Flask

from .app_state import AppState
from .cpu_gate import CpuGate
from .errors import register_error_handlers
from .knowledge.model import Knowledge
from .settings import Settings

__all__ = ["AppState", "create_app"]


def create_app(settings: Settings | None = None, knowledge: Knowledge | None = None,
               today: Callable[[], date] | None = None, now: Callable[[], float] | None = None) -> Flask:
    """Build the Flask app; loads and validates knowledge unless given (raises KnowledgeError if broken), migrates
    the database, and sets up JWT verification (raises ValueError on bad security or site settings).
    `today` and `now` (epoch seconds) are clocks tests may inject."""
    from .api import register_api
    from .api.jsonio import CappedRequest, OrjsonProvider
    from .auth import build_verifier
    from .configuration import site_defaults
    from .knowledge.loader import load_knowledge
    from .state import open_database
    from .state.feedback import FeedbackStore
    from .state.suppression import CardMemory, read_secret
    from .telemetry import configure_logging

    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    knowledge = knowledge or load_knowledge(settings.knowledge_dir)
    site_defaults(knowledge, settings.configuration_defaults)
    now = now or time.time
    gate = CpuGate(enabled=settings.cpu_gate_on)
    database = open_database(settings.effective_database_url, settings.database_timeout_s, settings.hook_lock_wait_s)
    memory = CardMemory(database, read_secret(database, settings.patient_key_secret), now,
                        settings.store_patient_ids_on, settings.card_retention_days)
    verifier = build_verifier(settings, database)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.request_class = CappedRequest
    app.json = OrjsonProvider(app)
    app.extensions["spasm_cds"] = AppState(
        settings=settings, knowledge=knowledge,
        fhir_calls=threading.BoundedSemaphore(max(1, settings.fhir_max_calls)),
        today=today or date.today, database=database, verifier=verifier, now=now, memory=memory,
        feedback=FeedbackStore(database, now), readiness_checks={"database": database.ping}, cpu_gate=gate)
    register_error_handlers(app)
    register_api(app)
    _compile_request_schemas()
    memory.compile_statements()
    return app


def _compile_request_schemas() -> None:
    """Check and compile the schemas every request is validated against now, at start: a broken schema stops the
    start instead of failing the first call with a 500, and under gunicorn the preloading master does it once
    (the first call of each worker took ~150 ms more, most of it checking the hook request schema)."""
    from .schemas import fast_validator, validator

    fast_validator("hook-request")
    for name in ("hook-request", "feedback"):
        validator(name)
