"""GET /cds-services: the discovery document, built from cards/services.yaml."""
from __future__ import annotations

from flask import Blueprint

from ..configuration import site_defaults
from .current import state

bp = Blueprint("discovery", __name__)


@bp.get("/cds-services", strict_slashes=False)  # "/cds-services/" too: EHRs are configured by hand
def list_services() -> dict:
    """Every service this deployment offers, with the configuration options an EHR may choose (site defaults)."""
    app = state()
    defaults = site_defaults(app.knowledge, app.settings.configuration_defaults)
    return {"services": [s.discovery_entry(defaults) for s in app.knowledge.services.values()]}
