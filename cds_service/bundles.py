"""Files a user hands to `spasm-cds evaluate` -> CDS Hooks requests.

A file is a CDS Hooks request (taken as it is) or a FHIR Bundle of one patient (transaction, collection or
searchset). A Bundle becomes a prefetch-mode request: bundle-local references (urn:uuid:...) are rewritten to
Type/id, and each prefetch key of the service is answered the way a FHIR server answers its template over this one
patient's data. What-if additions (a cramp Condition, a draft order) are built from the knowledge's codes."""
from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from .knowledge.model import Knowledge, Service
from .vocabulary import ORDER_HOOKS, DataKind, Hook

CRAMP_CONCEPT = "muscle-cramp"
_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
# the data kind each resource type belongs to (Medications travel with the requests, as _include brings them)
KIND_OF_TYPE = {"Patient": DataKind.PATIENT, "MedicationRequest": DataKind.MEDICATION_REQUESTS,
                "Medication": DataKind.MEDICATION_REQUESTS, "MedicationStatement": DataKind.MEDICATION_STATEMENTS,
                "Condition": DataKind.CONDITIONS, "Observation": DataKind.OBSERVATIONS}
_SEARCH_PARAMETERS = {"patient", "status", "code", "_sort", "_count", "_include"}


class InputError(ValueError):
    """A file that is neither a CDS Hooks request nor a one-patient FHIR Bundle, or options that do not fit it."""


@dataclass(frozen=True)
class Chart:
    """One patient's resources from a Bundle, grouped by data kind, references rewritten to Type/id."""

    patient_id: str
    user_id: str
    resources: Mapping[str, tuple[dict[str, Any], ...]]
    by_reference: Mapping[str, dict[str, Any]]


@dataclass(frozen=True)
class WhatIf:
    """Additions to every request: an active cramp Condition, and a draft MedicationRequest (RxNorm code)."""

    assume_cramps: bool = False
    draft_rxnorm: str | None = None


def is_request(document: Any) -> bool:
    """Whether a parsed JSON file is a CDS Hooks request (rather than a FHIR resource)."""
    return isinstance(document, dict) and "hook" in document and "resourceType" not in document


def read_json(path: Path) -> Any:
    """The parsed file; InputError naming the file when it is not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable JSON file ({exc})") from None


def chart_of(bundle: Any) -> Chart:
    """The one patient of a Bundle; InputError if it is not a Bundle or holds no or several Patients."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InputError("not a FHIR Bundle and not a CDS Hooks request (no 'hook')")
    entries = [e for e in bundle.get("entry") or () if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    local = {e["fullUrl"]: f"{e['resource'].get('resourceType')}/{e['resource']['id']}" for e in entries
             if isinstance(e.get("fullUrl"), str) and "id" in e["resource"]}
    resources: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_reference: dict[str, dict[str, Any]] = {}
    practitioner = None
    for entry in entries:
        resource = entry["resource"]
        kind = KIND_OF_TYPE.get(resource.get("resourceType"))
        if kind:
            rewritten = rewrite_references(resource, local)
            resources[kind].append(rewritten)
            by_reference[f"{resource['resourceType']}/{resource.get('id')}"] = rewritten
        elif resource.get("resourceType") == "Practitioner" and practitioner is None:
            practitioner = resource.get("id")
    patients = resources.get(DataKind.PATIENT, [])
    if len(patients) != 1 or not patients[0].get("id"):
        raise InputError(f"the Bundle holds {len(patients)} Patient(s) with an id; evaluate needs exactly one")
    return Chart(patient_id=patients[0]["id"], user_id=f"Practitioner/{practitioner or 'spasm-cds-evaluate'}",
                 resources={k: tuple(v) for k, v in resources.items()}, by_reference=by_reference)


def rewrite_references(value: Any, local: Mapping[str, str]) -> Any:
    """A copy of value with every `reference` to a bundle fullUrl replaced by its Type/id."""
    if isinstance(value, dict):
        return {k: (local.get(v, v) if k == "reference" and isinstance(v, str) else rewrite_references(v, local))
                for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite_references(v, local) for v in value]
    return value


def answer_template(resources: Iterable[dict[str, Any]], template: str,
                    by_reference: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The searchset a FHIR server answers to a prefetch template over one patient's resources.

    Carries out status=, code= (token lists), _sort=date|-date, _count= and _include=<Type>:medication; any other
    parameter raises InputError, so a new template parameter is noticed rather than silently ignored."""
    path, _, query = template.partition("?")
    params = parse_qs(query, keep_blank_values=True)
    if set(params) - _SEARCH_PARAMETERS:
        raise InputError(f"cannot answer {sorted(set(params) - _SEARCH_PARAMETERS)} of the template {template!r}")
    resource_type = path.split("/")[0]
    matches = [r for r in resources if r.get("resourceType") == resource_type]
    if "status" in params:
        statuses = {s for value in params["status"] for s in value.split(",")}
        matches = [r for r in matches if r.get("status") in statuses]
    if "code" in params:
        # the token list is long (every code of a concept): look codings up in sets, not token by token
        tokens = [t for value in params["code"] for t in value.split(",")]
        bare = {t for t in tokens if "|" not in t}
        with_system = {(system, code) for system, _, code in (t.partition("|") for t in tokens if "|" in t)}
        matches = [r for r in matches if any(_coding_in(c, bare, with_system) for c in _codings(r.get("code")))]
    for sort in params.get("_sort", ()):
        if sort.lstrip("-") != "date":
            raise InputError(f"cannot sort by {sort!r} (only date) in the template {template!r}")
        matches.sort(key=_effective, reverse=sort.startswith("-"))
    if "_count" in params:
        matches = matches[: int(params["_count"][0])]
    included: list[dict[str, Any]] = []
    for include in params.get("_include", ()):
        if include != f"{resource_type}:medication":
            raise InputError(f"cannot carry out _include={include} of the template {template!r}")
        for r in matches:
            medication = by_reference.get((r.get("medicationReference") or {}).get("reference") or "")
            if medication is not None and medication not in included:
                included.append(medication)
    entries = [{"resource": r, "search": {"mode": "match"}} for r in matches]
    entries += [{"resource": r, "search": {"mode": "include"}} for r in included]
    return {"resourceType": "Bundle", "type": "searchset", "total": len(matches), "entry": entries}


def request_from_chart(chart: Chart, service: Service, hook_instance: str,
                       extra: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """A prefetch-mode request for the service with every prefetch key answered from the chart (plus extra)."""
    extra = list(extra)
    prefetch: dict[str, Any] = {}
    for query in service.queries:
        found = list(chart.resources.get(query.kind, ()))
        found += [r for r in extra if KIND_OF_TYPE.get(r.get("resourceType", "")) == query.kind]
        if query.kind == DataKind.PATIENT:
            prefetch[query.key] = found[0]
        else:
            prefetch[query.key] = answer_template(found, query.template, chart.by_reference)
    return {"hook": service.hook, "hookInstance": hook_instance,
            "context": {"userId": chart.user_id, "patientId": chart.patient_id}, "prefetch": prefetch}


def cramp_condition(knowledge: Knowledge, patient_id: str, recorded: date) -> dict[str, Any]:
    """An active, confirmed problem-list Condition coded with the cramp concept's first ICD-10-CM code."""
    return {"resourceType": "Condition", "id": "spasm-cds-what-if-cramp",
            "clinicalStatus": {"coding": [{"system": _CLINICAL, "code": "active"}]},
            "verificationStatus": {"coding": [{"system": _VERIFICATION, "code": "confirmed"}]},
            "category": [{"coding": [{"system": _CATEGORY, "code": "problem-list-item"}]}],
            "code": {"coding": [{"system": knowledge.systems["icd10cm"][0],
                                 "code": knowledge.concepts[CRAMP_CONCEPT].codes["icd10cm"][0]}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "onsetDateTime": recorded.isoformat(), "recordedDate": recorded.isoformat()}


def draft_order(knowledge: Knowledge, patient_id: str, rxnorm: str | None,
                text: str | None = None) -> dict[str, Any]:
    """A draft MedicationRequest for the RxNorm code, or the drug's name (as an EHR's free-text order), or both."""
    concept: dict[str, Any] = {}
    if rxnorm:
        concept["coding"] = [{"system": knowledge.systems["rxnorm"][0], "code": rxnorm}]
    if text:
        concept["text"] = text
    return {"resourceType": "MedicationRequest", "id": "spasm-cds-what-if-draft", "status": "draft",
            "intent": "order", "subject": {"reference": f"Patient/{patient_id}"},
            "medicationCodeableConcept": concept}


def service_for_hook(knowledge: Knowledge, hook: str) -> Service:
    """The first service (in services.yaml order) on this hook; InputError if none."""
    for service in knowledge.services.values():
        if service.hook == hook:
            return service
    raise InputError(f"no service answers the {hook} hook")


def request_for_file(path: Path, knowledge: Knowledge, hook: str | None, what_if: WhatIf,
                     today: date) -> tuple[Service, dict[str, Any]]:
    """The service and request body for one file, with the what-if additions applied."""
    document = read_json(path)
    try:
        if is_request(document):
            if hook and hook != document["hook"]:
                raise InputError(f"the request is a {document['hook']} call, not {hook}")
            service = service_for_hook(knowledge, str(document["hook"]))
            return service, _amend_request(document, service, knowledge, what_if, today)
        service = service_for_hook(knowledge, hook or Hook.PATIENT_VIEW)
        if service.hook in ORDER_HOOKS and not what_if.draft_rxnorm:
            raise InputError(f"an {service.hook} call from a Bundle needs --draft-order RXNORM")
        chart = chart_of(document)
        extra = [cramp_condition(knowledge, chart.patient_id, today)] if what_if.assume_cramps else []
        body = request_from_chart(chart, service, str(uuid.uuid5(uuid.NAMESPACE_URL, f"spasm-cds:{path.name}")),
                                  extra)
        return service, add_draft(body, knowledge, what_if.draft_rxnorm)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def _amend_request(body: dict[str, Any], service: Service, knowledge: Knowledge, what_if: WhatIf,
                   today: date) -> dict[str, Any]:
    body = json.loads(json.dumps(body))  # the caller's document stays as it was read
    patient_id = str((body.get("context") or {}).get("patientId", ""))
    if what_if.assume_cramps:
        key = next((q.key for q in service.queries if q.kind == DataKind.CONDITIONS), None)
        held = (body.get("prefetch") or {}).get(key) if key else None
        if not isinstance(held, dict) or held.get("resourceType") != "Bundle":
            raise InputError("--assume-cramps needs the request's conditions prefetch as a Bundle")
        held.setdefault("entry", []).append({"resource": cramp_condition(knowledge, patient_id, today)})
    return add_draft(body, knowledge, what_if.draft_rxnorm)


def add_draft(body: dict[str, Any], knowledge: Knowledge, rxnorm: str | None,
              text: str | None = None) -> dict[str, Any]:
    """The order-hook request with a draft MedicationRequest added to draftOrders (and, for order-select, to
    selections); the body as it is when no drug is named. InputError on a hook that takes no draft orders."""
    if not rxnorm and not text:
        return body
    if body["hook"] not in ORDER_HOOKS:
        raise InputError(f"a draft order needs an order hook ({' or '.join(ORDER_HOOKS)}), not {body['hook']}")
    context = body.setdefault("context", {})
    draft = draft_order(knowledge, str(context.get("patientId", "")), rxnorm, text)
    drafts = context.setdefault("draftOrders", {"resourceType": "Bundle", "type": "collection", "entry": []})
    drafts.setdefault("entry", []).append({"resource": draft})
    if body["hook"] == Hook.ORDER_SELECT:
        context.setdefault("selections", []).append(f"MedicationRequest/{draft['id']}")
    return body


def _codings(concept: Any) -> list[dict[str, Any]]:
    return [c for c in concept.get("coding") or () if isinstance(c, dict)] if isinstance(concept, dict) else []


def _coding_in(coding: Mapping[str, Any], bare: set[str], with_system: set[tuple[str, str]]) -> bool:
    """Whether a coding matches a token: `code` alone, or `system|code` (an empty system matches a coding with none)."""
    code, system = coding.get("code"), coding.get("system") or ""
    return isinstance(code, str) and isinstance(system, str) and (code in bare or (system, code) in with_system)


def _effective(observation: Mapping[str, Any]) -> str:
    return (observation.get("effectiveDateTime") or (observation.get("effectivePeriod") or {}).get("start")
            or observation.get("issued") or "")
