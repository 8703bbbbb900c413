"""The development SMART launcher under /smart-launcher: what an EHR's authorization server does for a SMART app
launched from a card, in front of an open FHIR server on loopback (SPASM_CDS_SMART_FHIR_URL, e.g. `spasm-cds
demo-fhir`). Launch registration in the shape the CDS Hooks Sandbox posts, .well-known/smart-configuration, an
authorize endpoint without a login (PKCE S256, one-time codes), a token endpoint, and a read-only FHIR passthrough
that wants the access token and keeps to the launch's patient. Off unless SPASM_CDS_SMART_LAUNCHER allows; state is
files under SPASM_CDS_DATA_DIR (one host). Development tooling: in a hospital the EHR launches the app."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

import requests
from flask import Blueprint, Response, jsonify, redirect, request
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response as WerkzeugResponse

from ..errors import InvalidRequest, Unauthorized, UnknownService, to_operation_outcome
from ..gather.fhir_urls import fhir_server_allowed, normalised_url
from ..launch_store import LaunchStore
from ..settings import LOCAL_FHIR_ALLOWED_URLS, Settings
from .current import state

bp = Blueprint("smart_launcher", __name__, url_prefix="/smart-launcher")
log = logging.getLogger(__name__)

FHIR_PATH = "/smart-launcher/fhir"
APP_PATH = "/smart/"  # the only place the launcher sends a browser back to: this service's own SMART app
LAUNCH_TTL_S = 600
CODE_TTL_S = 60
TOKEN_TTL_S = 900
# what the launcher can grant: the launch itself and reads of the launch patient's compartment
GRANTABLE = ("launch", "patient/Patient.r", "patient/Patient.rs", "patient/Observation.rs",
             "patient/MedicationRequest.rs")
_READABLE = {"Patient", "Observation", "MedicationRequest"}
_FHIR_PATH = re.compile(r"(?P<type>[A-Z][A-Za-z]{1,40})(?:/(?P<id>[A-Za-z0-9.-]{1,64}))?")
_FHIR_JSON = "application/fhir+json"


def check_settings(settings: Settings) -> None:
    """Refuse to start a launcher that would front a FHIR server off this machine. Raises ValueError."""
    if settings.smart_launcher_on and not fhir_server_allowed(settings.smart_fhir_url, LOCAL_FHIR_ALLOWED_URLS,
                                                              own_port=settings.port):
        raise ValueError(f"SPASM_CDS_SMART_FHIR_URL: {settings.smart_fhir_url!r} is not a loopback FHIR server (the "
                         "development SMART launcher fronts only open servers on this machine)")


@bp.record_once
def _check_setting(setup) -> None:
    settings = setup.app.extensions["spasm_cds"].settings
    check_settings(settings)
    if settings.smart_launcher_on and settings.auth_on:
        log.warning("the development SMART launcher is on while SPASM_CDS_AUTH=on: it authorizes without a login; "
                    "set SPASM_CDS_SMART_LAUNCHER=off in production")


@bp.before_request
def _only_when_on() -> None:
    if not state().settings.smart_launcher_on:
        raise NotFound("the development SMART launcher is off (SPASM_CDS_SMART_LAUNCHER)")


def store() -> LaunchStore:
    """The launcher's state, shared by the workers through the data directory."""
    return LaunchStore(state().settings.data_dir / "smart-launcher", clock=state().now)


def own_base() -> str:
    """This service's base URL as browsers reach it."""
    return (state().settings.public_url.strip() or request.host_url).rstrip("/")


def issuer() -> str:
    """The `iss` of launches: the launcher's FHIR base, where smart-configuration is found."""
    return own_base() + FHIR_PATH


def register_launch(patient: str, app_context: str | None) -> str:
    """A launch id for the patient (and the card's appContext), valid for LAUNCH_TTL_S seconds."""
    return store().put("launch", {"patient": patient, "appContext": app_context}, LAUNCH_TTL_S)


@bp.get("/fhir/.well-known/smart-configuration")
def smart_configuration() -> Response:
    """What a SMART client reads first (SMART App Launch 2.0): endpoints, PKCE method, scopes, capabilities."""
    base = own_base()
    return jsonify({
        "issuer": issuer(),
        "authorization_endpoint": f"{base}/smart-launcher/authorize",
        "token_endpoint": f"{base}/smart-launcher/token",
        "grant_types_supported": ["authorization_code"],
        "token_endpoint_auth_methods_supported": ["none"],
        "code_challenge_methods_supported": ["S256"],
        "response_types_supported": ["code"],
        "scopes_supported": list(GRANTABLE),
        "capabilities": ["launch-ehr", "client-public", "context-ehr-patient", "permission-patient",
                         "permission-v2"],
    })


@bp.post("/fhir/_services/smart/Launch")
def launch() -> tuple[Response, int]:
    """Register a launch as the CDS Hooks Sandbox does: {launchUrl, parameters: {patient, appContext}} ->
    {launch_id}."""
    body = request.get_json(silent=True)
    parameters = body.get("parameters") if isinstance(body, dict) else None
    if not isinstance(parameters, dict):
        raise InvalidRequest("parameters: an object with the launch's patient is required")
    patient = parameters.get("patient")
    if not isinstance(patient, str) or not re.fullmatch(r"[A-Za-z0-9.-]{1,64}", patient):
        raise InvalidRequest("parameters.patient: a FHIR Patient id is required")
    app_context = parameters.get("appContext")
    if app_context is not None and not isinstance(app_context, str):
        raise InvalidRequest("parameters.appContext: must be a string")
    if app_context is not None and len(app_context) > 16_384:
        raise InvalidRequest("parameters.appContext: longer than 16384 characters")
    return jsonify({"launch_id": register_launch(patient, app_context)}), 201


@bp.get("/authorize")
def authorize() -> WerkzeugResponse:
    """The EHR launch's authorization request: no login (a development launcher), checks the client, redirect
    URI, audience, launch and PKCE challenge, then redirects back with a one-time code."""
    args = request.args
    redirect_uri = args.get("redirect_uri", "")
    normal = normalised_url(redirect_uri)
    if normal is None or not normal.startswith(own_base() + APP_PATH):
        raise InvalidRequest(f"redirect_uri: must be this service's SMART app under {own_base()}{APP_PATH}")
    if args.get("response_type") != "code":
        raise InvalidRequest("response_type: must be code")
    if args.get("client_id") != state().settings.smart_client_id:
        raise InvalidRequest("client_id: not a client of this launcher (SPASM_CDS_SMART_CLIENT_ID)")
    if (args.get("aud") or "").rstrip("/") != issuer():
        raise InvalidRequest(f"aud: must be the FHIR base {issuer()}")
    if args.get("code_challenge_method") != "S256" or not re.fullmatch(r"[A-Za-z0-9_-]{43}",
                                                                        args.get("code_challenge", "")):
        raise InvalidRequest("code_challenge: PKCE with code_challenge_method S256 is required")
    launched = store().take("launch", args.get("launch", ""))
    if launched is None:
        raise InvalidRequest("launch: unknown, used or expired launch id (register one first)")
    granted = [s for s in args.get("scope", "").split() if s in GRANTABLE]
    code = store().put("code", {**launched, "client_id": args["client_id"], "redirect_uri": redirect_uri,
                                "challenge": args["code_challenge"], "scope": " ".join(granted)}, CODE_TTL_S)
    sep = "&" if "?" in redirect_uri else "?"
    return redirect(f"{redirect_uri}{sep}{urlencode({'code': code, 'state': args.get('state', '')})}", 302)


@bp.post("/token")
def token() -> tuple[Response, int]:
    """Exchange a code (once) for an access token: the PKCE verifier must hash to the challenge. OAuth 2.0 error
    JSON (RFC 6749 section 5.2) on failure, which is what a SMART client reads."""
    form = request.form
    if form.get("grant_type") != "authorization_code":
        return _oauth_error("unsupported_grant_type", "grant_type must be authorization_code")
    granted = store().take("code", form.get("code", ""))
    if granted is None:
        return _oauth_error("invalid_grant", "unknown, used or expired code")
    verifier = form.get("code_verifier", "")
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    if not re.fullmatch(r"[A-Za-z0-9._~-]{43,128}", verifier) or not hmac.compare_digest(challenge,
                                                                                         granted["challenge"]):
        return _oauth_error("invalid_grant", "code_verifier does not match the code_challenge")
    if form.get("redirect_uri") != granted["redirect_uri"] or form.get("client_id") != granted["client_id"]:
        return _oauth_error("invalid_grant", "redirect_uri or client_id differ from the authorization request")
    access = store().put("token", {"patient": granted["patient"], "scope": granted["scope"]}, TOKEN_TTL_S)
    answer: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": TOKEN_TTL_S,
                              "scope": granted["scope"], "patient": granted["patient"]}
    if granted.get("appContext") is not None:
        answer["appContext"] = granted["appContext"]
    response = jsonify(answer)
    response.headers.update({"Cache-Control": "no-store", "Pragma": "no-cache"})
    return response, 200


def _oauth_error(error: str, description: str) -> tuple[Response, int]:
    response = jsonify({"error": error, "error_description": description})
    response.headers.update({"Cache-Control": "no-store", "Pragma": "no-cache"})
    return response, 400


@bp.get("/fhir/<path:path>")
def fhir_read(path: str) -> Response:
    """A read of the launch patient's data, forwarded to SPASM_CDS_SMART_FHIR_URL with the access token checked;
    links in the answer are rewritten to come back through here."""
    grant = _bearer_grant()
    match = _FHIR_PATH.fullmatch(path)
    if match is None or match["type"] not in _READABLE:
        raise UnknownService(f"{path.split('/')[0][:40]}: the launcher reads Patient, Observation and "
                             "MedicationRequest only")
    if not any(s.startswith(f"patient/{match['type']}.") for s in grant["scope"].split()):
        raise Unauthorized("scope does not cover this resource type", 'Bearer error="insufficient_scope"')
    patient = grant["patient"]
    query = parse_qsl(request.query_string.decode("utf-8", "replace"), keep_blank_values=True)
    if match["type"] == "Patient":
        if match["id"] != patient:
            raise Unauthorized("not the launch patient", 'Bearer error="insufficient_scope"')
    elif match["id"] is not None or not _patient_only(query, patient):
        raise InvalidRequest("a search of the launch patient's data is required: ?patient=<the launch patient>")
    return _forward(path, query)


def _bearer_grant() -> dict[str, Any]:
    header = request.headers.get("Authorization", "")
    grant = store().get("token", header[7:]) if header.startswith("Bearer ") else None
    if grant is None:
        raise Unauthorized("no valid access token", 'Bearer realm="smart-launcher"')
    return grant


def _patient_only(query: list[tuple[str, str]], patient: str) -> bool:
    """Whether the search names the patient, and only the patient, by `patient` or `subject`."""
    named = [v for k, v in query if k.split(":")[0] in ("patient", "subject")]
    return bool(named) and all(v in (patient, f"Patient/{patient}") for v in named)


def _forward(path: str, query: list[tuple[str, str]]) -> Response:
    settings = state().settings
    upstream = settings.smart_fhir_url.rstrip("/")
    url = f"{upstream}/{path}" + (f"?{urlencode(query)}" if query else "")
    limit = settings.fhir_max_answer_bytes
    try:
        with requests.Session() as session:
            session.trust_env = False  # loopback only: never through a proxy from the environment
            answer = session.get(url, headers={"Accept": _FHIR_JSON}, stream=True, allow_redirects=False,
                                 timeout=(settings.fhir_connect_timeout_s, settings.fhir_read_timeout_s))
            body = answer.raw.read(limit + 1, decode_content=True)
            status = answer.status_code
    except requests.RequestException as exc:
        log.warning("smart launcher: the FHIR server did not answer (%s)", type(exc).__name__)
        return to_operation_outcome(502, "transient", "the FHIR server behind the launcher did not answer")
    if len(body) > limit:
        return to_operation_outcome(502, "too-long",
                                    "the FHIR server's answer is larger than SPASM_CDS_FHIR_MAX_ANSWER_BYTES")
    try:
        document = json.loads(body)
    except ValueError:
        return to_operation_outcome(502, "invalid", "the FHIR server's answer is not JSON")
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        for link in document.get("link") or ():
            if isinstance(link, dict) and isinstance(link.get("url"), str) and link["url"].startswith(upstream):
                link["url"] = issuer() + link["url"][len(upstream):]
    return Response(json.dumps(document), status=status if status < 500 else 502, mimetype=_FHIR_JSON)
