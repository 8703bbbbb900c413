"""STEP 1: the HTTP edge. The only package (with errors.py and the factory) that imports flask."""
from __future__ import annotations

import re
import uuid

from flask import Flask, current_app, request

from .. import AppState
from ..telemetry import request_id

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def state() -> AppState:
    """The running app's settings, knowledge, pool and clock."""
    return current_app.extensions["spasm_cds"]


def register_api(app: Flask) -> None:
    """Attach the blueprints and the request-id hooks."""
    from . import discovery, knowledge_pages, ops, services

    @app.before_request
    def _assign_request_id() -> None:
        given = request.headers.get("X-Request-ID", "")
        request_id.set(given if _SAFE_ID.match(given) else uuid.uuid4().hex)

    @app.after_request
    def _echo_request_id(response):
        response.headers["X-Request-ID"] = request_id.get()
        return response

    app.register_blueprint(discovery.bp)
    app.register_blueprint(services.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(knowledge_pages.bp)
