"""GET /admin/feedback: the feedback report (feedback_page.py) as HTML, or JSON with ?format=json. Off (404) unless
SPASM_CDS_ADMIN_TOKEN is set; then only a request with `Authorization: Bearer <that token>` gets it (401 otherwise).
Rules and counts only, never patient data; the HTML runs no script and loads nothing from elsewhere (CSP)."""
from __future__ import annotations

import hmac
from datetime import UTC, date, datetime

from flask import Blueprint, Response, jsonify, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import NotFound

from ..errors import InvalidRequest, StoreUnavailable, Unauthorized
from ..feedback_formats import as_json
from ..feedback_page import render_page
from ..feedback_report import MIN_FEEDBACK, build_report, epoch
from ..state.analytics import count_feedback
from .current import state

bp = Blueprint("admin", __name__)
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; script-src 'none'; form-action 'none'; "
       "frame-ancestors 'none'; base-uri 'none'")


@bp.before_request
def _only_with_the_token() -> None:
    token = state().settings.admin_token
    if not token:
        raise NotFound("the admin pages are off (SPASM_CDS_ADMIN_TOKEN)")
    given = request.headers.get("Authorization", "")
    scheme, _, credential = given.partition(" ")
    # compare_digest on bytes: its time does not depend on where the two differ
    if scheme.lower() != "bearer" or not hmac.compare_digest(credential.strip().encode(), token.encode()):
        raise Unauthorized("the admin token is missing or wrong", 'Bearer realm="spasm-cds-admin"')


@bp.after_request
def _no_caching_no_framing(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/admin/feedback")
def feedback_report() -> Response | str:
    """The report for ?since, ?until (YYYY-MM-DD, UTC), ?by (week|month), ?min_feedback; ?format=json for JSON."""
    app = state()
    since, until = _day("since"), _day("until")
    by = request.args.get("by", "week")
    if by not in ("week", "month"):
        raise InvalidRequest("by: week or month")
    wanted = request.args.get("format", "html")
    if wanted not in ("html", "json"):
        raise InvalidRequest("format: html or json")
    try:
        min_feedback = int(request.args.get("min_feedback", MIN_FEEDBACK))
    except ValueError:
        raise InvalidRequest("min_feedback: a whole number") from None
    try:
        counts = count_feedback(app.database, epoch(since) if since else None, epoch(until) if until else None,
                                by)
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"the database could not be read ({type(exc).__name__})") from None
    report = build_report(counts, app.knowledge.override_effects,
                          {r.id: r.title for r in app.knowledge.rules.values()}, by, since, until, max(1, min_feedback))
    if wanted == "json":
        return jsonify(as_json(report))
    return render_page(report, datetime.fromtimestamp(app.now(), UTC).strftime("%Y-%m-%d %H:%M UTC"))


def _day(name: str) -> date | None:
    value = request.args.get(name)
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{name}: a day, YYYY-MM-DD") from None
