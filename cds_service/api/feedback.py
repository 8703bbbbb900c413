"""POST /cds-services/<id>/feedback (CDS Hooks 2.0): validated, stored durably, then answered 200 with no body (or,
when some entries were malformed and left out, an OperationOutcome naming them). A database fault is 503 (nothing
kept; the client may send it again)."""
from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify

from ..errors import UnknownService
from ..feedback_request import parse_feedback
from ..state.feedback import StoredFeedback
from ..telemetry import FEEDBACK
from .current import state
from .services import json_body

bp = Blueprint("feedback", __name__)
log = logging.getLogger(__name__)


@bp.post("/cds-services/<service_id>/feedback", strict_slashes=False)  # a trailing slash works too
def post_feedback(service_id: str) -> Response:
    """Store each outcome (and what its override reason does) before answering: 200 with no body; when some
    entries were malformed and left out, 200 with an OperationOutcome naming each of them (the others are kept)."""
    _result, rejected = record_feedback(service_id, json_body())
    if not rejected:
        return Response(status=200, mimetype="text/plain")  # the empty body, typed as the OpenAPI document says
    response = jsonify({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "invalid", "diagnostics": f"not stored: {problem}"} for problem in rejected]})
    response.mimetype = "application/fhir+json"
    return response


def record_feedback(service_id: str, body: Any) -> tuple[StoredFeedback, tuple[str, ...]]:
    """Validate a feedback body and store its well-formed entries, counted and logged: the work of the route, shared
    with the try-it page; also returns what was wrong with each entry left out. Raises UnknownService (404),
    InvalidRequest (400: not feedback, or no entry well-formed) or StoreUnavailable (503)."""
    app = state()
    service = app.knowledge.service(service_id)
    if service is None:
        raise UnknownService(f"no service {service_id!r}; see GET /cds-services")
    parsed = parse_feedback(body, service, app.knowledge)
    result = app.feedback.store(service.id, parsed.items)
    for item in parsed.items:
        FEEDBACK.labels(outcome=item.outcome).inc()
    log.info("service %s: feedback on %d card(s): %d stored, %d repeated, %d unknown card(s), %d malformed and "
             "left out", service.id, len(parsed.items), result.stored, result.repeated, result.unknown_cards,
             len(parsed.rejected))
    return result, parsed.rejected
