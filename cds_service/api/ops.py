"""Operations endpoints: /healthz (alive), /readyz (knowledge loaded and the database answering), /metrics
(Prometheus; CORS preflights are counted apart from the calls they precede)."""
from __future__ import annotations

import time

from flask import Blueprint, Response, g, request

from ..telemetry import LATENCY, REQUESTS, metrics_text
from .current import state

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> dict:
    """Alive, with the number of rules loaded."""
    return {"status": "ok", "rules": len(state().knowledge.rules)}


@bp.get("/readyz")
def readyz() -> tuple[dict, int]:
    """Knowledge loaded and every readiness check of the app passes (`database`: a SELECT 1 answered within
    SPASM_CDS_DATABASE_TIMEOUT_S). Hook calls still answer while the database is down: see docs/hardening.md."""
    app = state()
    checks = {"knowledge": bool(app.knowledge.services)}
    for name, check in app.readiness_checks.items():
        try:
            checks[name] = bool(check())
        except Exception:  # a failing dependency means not ready, whatever the error
            checks[name] = False
    ready = all(checks.values())
    return {"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics of all workers."""
    return Response(metrics_text(), mimetype="text/plain; version=0.0.4")


@bp.before_app_request
def _start_timer() -> None:
    g.spasm_started = time.perf_counter()


@bp.after_app_request
def _count(response: Response) -> Response:
    endpoint = _endpoint_label()
    REQUESTS.labels(endpoint=endpoint, status=str(response.status_code)).inc()
    started = g.get("spasm_started")
    if started is not None:
        LATENCY.labels(endpoint=endpoint).observe(time.perf_counter() - started)
    return response


def _endpoint_label() -> str:
    """A low-cardinality label: the service id for hook calls, else the route's name; a CORS preflight is never
    counted as the call it precedes."""
    if request.method == "OPTIONS":
        return "cors-preflight"
    if request.endpoint == "services.call_service" and request.view_args:
        service_id = request.view_args.get("service_id", "")
        return service_id if state().knowledge.service(service_id) else "unknown-service"
    return request.endpoint or "no-route"
