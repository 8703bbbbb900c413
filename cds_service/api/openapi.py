"""GET /openapi.json: the OpenAPI 3.1 document of this service, kept as a file (cds_service/openapi.json).

Needs no JWT: it describes the API and holds no patient data. A test keeps it in step with the app's routes."""
from __future__ import annotations

from functools import cache
from pathlib import Path

from flask import Blueprint, Response

DOCUMENT = Path(__file__).resolve().parent.parent / "openapi.json"

bp = Blueprint("openapi", __name__)


@cache
def _document() -> bytes:
    return DOCUMENT.read_bytes()


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The document as it is on disk."""
    return Response(_document(), mimetype="application/json")
