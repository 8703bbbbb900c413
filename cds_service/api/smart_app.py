"""GET /smart/timeline/launch and /smart/timeline/app: the timeline SMART app offered from cards (a link of type
smart, render/smart_link.py). One static page and script (api/static/smart/, no build step, nothing loaded from
elsewhere) that does the EHR launch with PKCE, reads results and medication orders from the EHR's FHIR server and
draws them; the service itself sees none of that data."""
from __future__ import annotations

from flask import Blueprint, Response, render_template, request

from .current import state

bp = Blueprint("smart_app", __name__, url_prefix="/smart", template_folder="templates", static_folder="static",
               static_url_path="/static")
# the page runs only its own script and styles; it may call any FHIR server and authorization server (the EHR's)
_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src *; "
           "base-uri 'none'; form-action 'none'; frame-ancestors *")


@bp.get("/timeline/launch")
@bp.get("/timeline/app")
def timeline() -> Response:
    """The app's page: the launch step (iss, launch) and the redirect target (code, state) are the same page."""
    base = (state().settings.public_url.strip() or request.host_url).rstrip("/")
    page = render_template("smart_timeline.html", client_id=state().settings.smart_client_id,
                           redirect_uri=f"{base}/smart/timeline/app")
    return Response(page, mimetype="text/html", headers={"Content-Security-Policy": _POLICY,
                                                          "Referrer-Policy": "no-referrer",
                                                          "Cache-Control": "no-store"})
