"""spasm-cds: a CDS Hooks 2.0 service for muscle cramps and spasms. create_app is the factory."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Callable

from flask import Flask

from .errors import register_error_handlers
from .knowledge.model import Knowledge
from .settings import Settings


@dataclass(frozen=True)
class AppState:
    """What every request reads: settings, knowledge, the FHIR fetch pool, and the clock."""

    settings: Settings
    knowledge: Knowledge
    pool: ThreadPoolExecutor
    today: Callable[[], date]


def create_app(settings: Settings | None = None, knowledge: Knowledge | None = None,
               today: Callable[[], date] | None = None) -> Flask:
    """Build the Flask app; loads and validates knowledge unless given (raises KnowledgeError if broken)."""
    from .api import register_api
    from .knowledge.loader import load_knowledge
    from .telemetry import configure_logging

    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    knowledge = knowledge or load_knowledge(settings.knowledge_dir)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.extensions["spasm_cds"] = AppState(
        settings=settings, knowledge=knowledge,
        pool=ThreadPoolExecutor(max_workers=settings.fhir_max_parallel, thread_name_prefix="fhir"),
        today=today or date.today)
    register_error_handlers(app)
    register_api(app)
    return app
