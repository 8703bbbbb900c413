"""STEP 1: the HTTP edge. The only package (with errors.py and the factory) that imports flask.

Every request gets a request id, CORS headers, then (under /cds-services) JWT verification and the prefetch cap."""
from __future__ import annotations

import re
import uuid

from flask import Flask, request
from flask_cors import CORS

from ..errors import PayloadTooLarge
from ..telemetry import request_id
from .current import prefetch_resource_count, state

_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


def register_api(app: Flask) -> None:
    """Attach the blueprints and the hooks: request id, JWT verification, prefetch cap, CORS."""
    from . import admin, discovery, feedback, knowledge_pages, openapi, ops, services, smart_app, smart_launcher, tryit

    @app.before_request
    def _assign_request_id() -> None:
        given = request.headers.get("X-Request-ID", "")
        request_id.set(given if _SAFE_ID.fullmatch(given) else uuid.uuid4().hex)

    @app.before_request
    def _authenticate() -> None:
        verifier = state().verifier
        # a browser's CORS preflight never carries the token, so it cannot be asked for one
        if verifier is None or request.method == "OPTIONS" or not _guarded(request.path):
            return
        verifier.verify(request.headers.get("Authorization"), audience=_called_url())

    @app.before_request
    def _take_cpu_turn() -> None:
        # a hook call computes in turn with the worker's other calls (cpu_gate.py), its body read included: a body
        # read while another thread computes costs both a GIL hand-over per socket read (+9% CPU per call on the
        # 290-resource bench request). Behind the bundled nginx the body arrives whole; without it, a client
        # sending its body slowly holds its worker's turn, as it held a single-threaded worker (docs/hardening.md)
        if request.endpoint == "services.call_service":
            state().cpu_gate.enter()

    @app.teardown_request
    def _end_cpu_turn(_error: BaseException | None) -> None:
        state().cpu_gate.leave()

    @app.before_request
    def _cap_prefetch() -> None:
        if request.endpoint != "services.call_service":
            return
        body = request.get_json(silent=True)  # orjson: too deep a nesting is invalid JSON, so None (then 400)
        limit = state().settings.max_prefetch_resources
        count = prefetch_resource_count(body)
        if count > limit:
            raise PayloadTooLarge(f"prefetch holds {count} resources; at most {limit} are accepted "
                                  "(SPASM_CDS_MAX_PREFETCH_RESOURCES)")

    @app.after_request
    def _echo_request_id(response):
        response.headers["X-Request-ID"] = request_id.get()
        return response

    origins = [o.strip() for o in app.extensions["spasm_cds"].settings.cors_origins.split(",") if o.strip()]
    CORS(app, origins=origins, send_wildcard=True, methods=["GET", "POST", "OPTIONS"],
         allow_headers=["Authorization", "Content-Type"],
         expose_headers=["X-Request-ID", "WWW-Authenticate", "Retry-After"], max_age=600)

    app.register_blueprint(discovery.bp)
    app.register_blueprint(services.bp)
    app.register_blueprint(feedback.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(knowledge_pages.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(tryit.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(smart_app.bp)
    app.register_blueprint(smart_launcher.bp)


def _guarded(path: str) -> bool:
    """Discovery, service calls and feedback need a JWT; /knowledge pages and /healthz do not."""
    return path == "/cds-services" or path.startswith("/cds-services/")


def _called_url() -> str:
    """The URL the client called (its JWT's aud): SPASM_CDS_PUBLIC_URL plus the path, never the Host header (the
    verifier is built only when SPASM_CDS_PUBLIC_URL is set)."""
    return state().settings.public_url.strip().rstrip("/") + request.path
