"""POST /cds-services/<id>/feedback (CDS Hooks 2.0): validated, stored durably, then answered 200 with no body.
A database fault is 503 (nothing kept; the client may send it again)."""
from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response

from ..errors import UnknownService
from ..feedback_request import parse_feedback
from ..state.feedback import StoredFeedback
from ..telemetry import FEEDBACK
from . import state
from .services import json_body

bp = Blueprint("feedback", __name__)
log = logging.getLogger(__name__)


@bp.post("/cds-services/<service_id>/feedback")
def post_feedback(service_id: str) -> Response:
    """Store each outcome (and what its override reason does) before answering."""
    record_feedback(service_id, json_body())
    return Response(status=200)


def record_feedback(service_id: str, body: Any) -> StoredFeedback:
    """Validate a feedback body and store it, counted and logged: the work of the route, shared with the try-it
    page. Raises UnknownService (404), InvalidRequest (400) or StoreUnavailable (503)."""
    app = state()
    service = app.knowledge.service(service_id)
    if service is None:
        raise UnknownService(f"no service {service_id!r}; see GET /cds-services")
    items = parse_feedback(body, service, app.knowledge)
    result = app.feedback.store(service.id, items)
    for item in items:
        FEEDBACK.labels(outcome=item.outcome).inc()
    log.info("service %s: feedback on %d card(s): %d stored, %d repeated, %d unknown card(s)", service.id,
             len(items), result.stored, result.repeated, result.unknown_cards)
    return result
