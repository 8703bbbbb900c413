"""POST /cds-services/<id>/feedback (CDS Hooks 2.0): validated, stored durably, then answered 200 with no body.
A database fault is 503 (nothing kept; the client may send it again)."""
from __future__ import annotations

import logging

from flask import Blueprint, Response

from ..errors import UnknownService
from ..feedback_request import parse_feedback
from ..telemetry import FEEDBACK
from . import state
from .services import json_body

bp = Blueprint("feedback", __name__)
log = logging.getLogger(__name__)


@bp.post("/cds-services/<service_id>/feedback")
def post_feedback(service_id: str) -> Response:
    """Store each outcome (and what its override reason does) before answering."""
    app = state()
    service = app.knowledge.service(service_id)
    if service is None:
        raise UnknownService(f"no service {service_id!r}; see GET /cds-services")
    items = parse_feedback(json_body(), service, app.knowledge)
    result = app.feedback.store(service.id, items)
    for item in items:
        FEEDBACK.labels(outcome=item.outcome).inc()
    log.info("service %s: feedback on %d card(s): %d stored, %d repeated, %d unknown card(s)", service.id,
             len(items), result.stored, result.repeated, result.unknown_cards)
    return Response(status=200)
