"""POST /cds-services/<id>: where a hook call enters. The work itself is pipeline.respond."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from ..errors import InvalidRequest, UnknownService, UnsupportedMediaType
from ..pipeline import respond
from .current import state

bp = Blueprint("services", __name__)


@bp.post("/cds-services/<service_id>", strict_slashes=False)  # a trailing slash works too
def call_service(service_id: str) -> dict[str, Any]:
    """Answer one hook call with cards (possibly none)."""
    app = state()
    service = app.knowledge.service(service_id)
    if service is None:
        raise UnknownService(f"no service {service_id!r}; see GET /cds-services")
    return respond(json_body(), service, app.knowledge, app.settings, app.today(), app.fhir_calls,
                   base_url=request.host_url, memory=app.memory, gate=app.cpu_gate)


def json_body() -> Any:
    """The request's JSON body. Raises UnsupportedMediaType (415) or InvalidRequest (400)."""
    if not request.mimetype or not (request.mimetype == "application/json" or request.mimetype.endswith("+json")):
        raise UnsupportedMediaType("send the request as Content-Type: application/json")
    body = request.get_json(silent=True)
    if body is None:
        raise InvalidRequest("the request body is not valid JSON")
    return body
