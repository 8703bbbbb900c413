"""GET / and POST /try-it: a page to try the services without an EHR. Pick a synthetic demo patient (cds_service/demo)
or paste a FHIR Bundle, pick a hook (and a drug to order), and see the cards as an EHR shows them beside the request
and response JSON. POST /try-it/feedback sends a card's feedback the way an EHR does, through the code of
POST /cds-services/<id>/feedback. Served only when SPASM_CDS_TRY_IT allows (it is not behind JWT verification)."""
from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, redirect, render_template, request
from werkzeug.exceptions import NotFound, RequestEntityTooLarge
from werkzeug.wrappers import Response as WerkzeugResponse

from ..bundles import InputError
from ..demo import Demo, Order, demo_bundle, hook_request, load_demos, order_from_rxnorm
from ..errors import ServiceError
from ..pipeline import respond
from ..render.cards import OVERRIDE_SYSTEM
from ..vocabulary import ORDER_HOOKS, Hook
from . import smart_launcher
from .current import prefetch_resource_count, state
from .feedback import record_feedback
from .safe_markdown import safe_html, safe_url

bp = Blueprint("tryit", __name__, template_folder="templates")
log = logging.getLogger(__name__)
PASTE = "paste"
_CHOICES = ("patient", "hook", "order", "rxnorm", "bundle")  # the run form's fields, echoed back into it
_INDICATOR_LABELS = {"critical": "Critical", "warning": "Warning", "info": "Info"}


class PageError(Exception):
    """Input the page cannot use: shown on the page itself with a 4xx status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


@bp.record_once
def _check_setting(setup) -> None:
    """Refuse a bad SPASM_CDS_TRY_IT at start; warn when the page is open beside JWT-guarded services."""
    settings = setup.app.extensions["spasm_cds"].settings
    if settings.try_it_on and settings.auth_on:
        log.warning("the try-it page at / is on while SPASM_CDS_AUTH=on: it runs hook calls and takes feedback "
                    "without a JWT; set SPASM_CDS_TRY_IT=off in production")


@bp.before_request
def _only_when_on() -> None:
    if not state().settings.try_it_on:
        raise NotFound("the try-it page is off (SPASM_CDS_TRY_IT)")


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(_exc: RequestEntityTooLarge) -> tuple[str, int]:
    """A pasted Bundle over SPASM_CDS_MAX_BODY_BYTES: said on the page (the form itself is not read)."""
    limit = state().settings.max_body_bytes
    return _page({**dict.fromkeys(_CHOICES, ""), "patient": PASTE, "hook": Hook.PATIENT_VIEW},
                 error=f"the pasted Bundle is larger than {limit:,} bytes (SPASM_CDS_MAX_BODY_BYTES)"), 413


@bp.get("/")
def page() -> str:
    """The form, with the first demo patient chosen."""
    return _page({**dict.fromkeys(_CHOICES, ""), "patient": load_demos().patients[0].id, "hook": Hook.PATIENT_VIEW})


@bp.post("/try-it")
def run() -> str | tuple[str, int]:
    """Run the chosen hook for the chosen patient in process and show the cards, request and response."""
    form = request.form
    chosen = {k: form.get(k, "") for k in _CHOICES}
    demo = load_demos().patient(form["run"]) if form.get("run") else None
    if demo is not None:  # "Run this example": the demo's own hook and order
        chosen.update(patient=demo.id, hook=demo.hook, order=demo.order or "", rxnorm="")
    try:
        service, body = _request_for(chosen)
        app = state()
        # every run shows every card (no de-duplication); snoozes and "not relevant" still apply, as in an EHR
        settings = dataclasses.replace(app.settings, deduplicate="off")
        response = respond(body, service, app.knowledge, settings, app.today(), app.fhir_calls,
                           base_url=request.host_url, memory=app.memory)
    except PageError as exc:
        return _page(chosen, error=exc.message), exc.status
    except (InputError, ServiceError) as exc:
        status = exc.status if isinstance(exc, ServiceError) and 400 <= exc.status < 500 else 400
        return _page(chosen, error=str(getattr(exc, "diagnostics", exc))), status
    cards = [_card_view(card, service.id, body["context"]["patientId"]) for card in response["cards"]]
    return _page(chosen, ran={"service": service, "cards": cards, "request": _pretty(body),
                              "response": _pretty(response)})


@bp.post("/try-it/feedback")
def feedback() -> str | tuple[str, int]:
    """Send one card's outcome as an EHR would (accepted with a suggestion, or overridden with a reason), through
    the code of POST /cds-services/<id>/feedback, and confirm it on the page."""
    form = request.form
    chosen = {k: form.get(k, "") if k in ("patient", "hook", "order") else "" for k in _CHOICES}
    try:
        service_id, body, said = _feedback_body(form)
        result, _rejected = record_feedback(service_id, body)  # the page sends one well-formed entry
    except PageError as exc:
        return _page(chosen, error=exc.message), exc.status
    except ServiceError as exc:
        return _page(chosen, error=exc.diagnostics), exc.status
    confirmation = {"said": said, "summary": form.get("summary", ""), "repeated": result.stored == 0,
                    "effect": _effect_text(body), "service": service_id, "body": _pretty(body)}
    return _page(chosen, confirmation=confirmation)


def _request_for(chosen: dict[str, str]) -> tuple[Any, dict[str, Any]]:
    demos, knowledge = load_demos(), state().knowledge
    hooks = {s.hook for s in knowledge.services.values()}
    if chosen["hook"] not in hooks:
        raise PageError(f"pick a hook: {', '.join(sorted(hooks))}")
    order = _order(chosen) if chosen["hook"] in ORDER_HOOKS else None
    if chosen["patient"] != PASTE:
        demo = demos.patient(chosen["patient"])
        if demo is None:
            raise PageError("pick a demo patient, or paste a FHIR Bundle")
        return hook_request(demo_bundle(demo, state().today()), knowledge, chosen["hook"], order, str(uuid.uuid4()))
    bundle = _pasted(chosen["bundle"])
    try:
        return hook_request(bundle, knowledge, chosen["hook"], order, str(uuid.uuid4()))
    except (TypeError, AttributeError, KeyError) as exc:  # a pasted Bundle can be any JSON at all
        raise PageError(f"the pasted Bundle could not be read as FHIR R4 ({type(exc).__name__})") from None


def _order(chosen: dict[str, str]) -> Order:
    if chosen["rxnorm"].strip():
        return order_from_rxnorm(chosen["rxnorm"])
    order = load_demos().order(chosen["order"])
    if order is None:
        raise PageError("the order hooks need a drug to order: pick one, or give an RxNorm code")
    return order


def _pasted(text: str) -> Any:
    if not text.strip():
        raise PageError("paste a FHIR R4 Bundle (JSON) into the box, or pick a demo patient")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PageError(f"the pasted text is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") \
            from None
    except RecursionError:
        raise PageError("the pasted JSON nests too deeply") from None
    if isinstance(document, dict) and "hook" in document and "resourceType" not in document:
        raise PageError("that is a CDS Hooks request; paste a FHIR Bundle (send requests to POST /cds-services/<id>)")
    count = prefetch_resource_count({"prefetch": {"bundle": document}})
    limit = state().settings.max_prefetch_resources
    if count > limit:
        raise PageError(f"the Bundle holds {count} resources; at most {limit} are accepted", 413)
    return document


def _card_view(card: dict[str, Any], service_id: str, patient_id: str) -> dict[str, Any]:
    """What the template shows of a card; every string is escaped by the template except detail_html. A SMART
    app link becomes a button that launches the app the way an EHR does (smart_launch)."""
    source = card.get("source") or {}
    links = [link for link in card.get("links", ()) if link.get("type") != "smart"]
    apps = [{"label": link["label"], "url": link["url"], "app_context": link.get("appContext", ""),
             "patient": patient_id, "token": _app_token(patient_id, link["url"], link.get("appContext", ""))}
            for link in card.get("links", ()) if link.get("type") == "smart" and safe_url(link.get("url"))]
    return {
        "uuid": card["uuid"], "token": _card_token(service_id, card["uuid"]),
        "indicator": card["indicator"], "indicator_label": _INDICATOR_LABELS.get(card["indicator"], card["indicator"]),
        "summary": card["summary"], "detail_html": safe_html(card.get("detail") or ""),
        "source_label": source.get("label", ""), "source_url": safe_url(source.get("url")),
        "suggestions": [{"uuid": s["uuid"], "label": s["label"]} for s in card.get("suggestions", ())
                        if s.get("uuid")],
        "links": [{"label": link["label"], "url": safe_url(link.get("url"))} for link in links
                  if safe_url(link.get("url"))],
        "apps": apps,
        "reasons": [{"code": r["code"], "display": r.get("display", r["code"])}
                    for r in card.get("overrideReasons", ())],
    }


def _app_token(patient_id: str, url: str, app_context: str) -> str:
    """A keyed hash that proves the page itself showed this SMART link for this patient, so the launch route
    sends the browser only to a link of a card it showed."""
    return state().memory.key("try-it-smart", patient_id, url, app_context)


@bp.post("/try-it/smart")
def smart_launch() -> WerkzeugResponse | tuple[str, int]:
    """Launch a card's SMART app as an EHR does: register the launch (patient, the card's appContext) with the
    development launcher, then open the app's URL with `iss` and `launch` (SMART App Launch, EHR launch)."""
    form = request.form
    patient, url, context = form.get("patient", ""), form.get("url", ""), form.get("app_context", "")
    chosen = {**dict.fromkeys(_CHOICES, ""), "hook": Hook.PATIENT_VIEW}
    if not hmac.compare_digest(form.get("token", ""), _app_token(patient, url, context)):
        return _page(chosen, error="that app link was not shown by this page; run a patient and use its card"), 400
    if not state().settings.smart_launcher_on:
        return _page(chosen, error="the development SMART launcher is off (SPASM_CDS_SMART_LAUNCHER): an EHR must "
                                   "launch this app"), 409
    launch_id = smart_launcher.register_launch(patient, context or None)
    sep = "&" if "?" in url else "?"
    return redirect(f"{url}{sep}{urlencode({'iss': smart_launcher.issuer(), 'launch': launch_id})}", 303)


def _card_token(service_id: str, card_uuid: str) -> str:
    """A keyed hash that proves the page itself showed this card, so the page's unauthenticated feedback route
    can speak only about its own cards."""
    return state().memory.key("try-it-card", service_id, card_uuid)


def _feedback_body(form) -> tuple[str, dict[str, Any], str]:
    """The service id, the CDS Hooks feedback body, and a phrase saying what was sent."""
    service_id, card = form.get("service", ""), form.get("card", "")
    if not hmac.compare_digest(form.get("token", ""), _card_token(service_id, card)):
        raise PageError("that card was not shown by this page; run a patient and use the buttons on its cards")
    entry: dict[str, Any] = {"card": card}
    if form.get("accept"):
        label = form.get(f"label:{form['accept']}", form["accept"])
        entry.update(outcome="accepted", acceptedSuggestions=[{"id": form["accept"]}])
        said = f"accepted “{label}”"
    else:
        entry["outcome"] = "overridden"
        reason: dict[str, Any] = {}
        code = form.get("reason", "")
        if code:
            service = state().knowledge.service(service_id)
            offered = dict(service.offered_reasons) if service is not None else {}
            if code not in offered:
                raise PageError("that override reason is not one this service offers")
            reason["reason"] = {"system": OVERRIDE_SYSTEM, "code": code, "display": offered[code]}
        if form.get("comment", "").strip():
            reason["userComment"] = form["comment"].strip()
        if reason:
            entry["overrideReason"] = reason
        said = "overridden" + (f" ({reason['reason']['display']})" if "reason" in reason else "")
    entry["outcomeTimestamp"] = datetime.fromtimestamp(int(state().now()), tz=UTC) \
        .strftime("%Y-%m-%dT%H:%M:%SZ")
    return service_id, {"feedback": [entry]}, said


def _effect_text(body: dict[str, Any]) -> str:
    """What the override reason changes for this patient, in words, or ''."""
    code = ((body["feedback"][0].get("overrideReason") or {}).get("reason") or {}).get("code")
    effect = state().knowledge.override_effects.get(code) if code else None
    if effect is None:
        return ""
    if effect.kind == "snooze":
        return (f"The card's rules are now snoozed for this patient for {effect.days} days: running the patient "
                "again shows no such card (start over with a fresh SPASM_CDS_DATA_DIR).")
    return "The card's rules are now held back for this patient until the data that triggered them changes."


def _pretty(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


def _page(chosen: dict[str, str], error: str | None = None, ran: dict[str, Any] | None = None,
          confirmation: dict[str, Any] | None = None) -> str:
    app = state()
    demos = load_demos()
    return render_template("try_it.html", demos=demos, services=list(app.knowledge.services.values()),
                           chosen=chosen, error=error, ran=ran, confirmation=confirmation, paste=PASTE,
                           demo_order=_demo_order, body_limit=app.settings.max_body_bytes)


def _demo_order(demo: Demo) -> str:
    order = load_demos().order(demo.order) if demo.order else None
    return f"{demo.hook}, ordering {order.label}" if order else demo.hook
