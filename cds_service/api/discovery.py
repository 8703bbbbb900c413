"""GET /cds-services: the discovery document, built from cards/services.yaml."""
from __future__ import annotations

from flask import Blueprint

from . import state

bp = Blueprint("discovery", __name__)


@bp.get("/cds-services")
def list_services() -> dict:
    """Every service this deployment offers."""
    return {"services": [s.discovery_entry() for s in state().knowledge.services.values()]}
