"""Turn a rule's compact case into FHIR resources and a CDS Hooks request, run it, and judge the result.

Used by `spasm-cds lint`, the knowledge tests (prefetch mode) and the integration tests (fetch mode)."""
from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from .errors import ServiceError
from .knowledge.model import Case, Knowledge, Service
from .pipeline import respond
from .render.cards import EXTENSION_KEY
from .settings import Settings
from .vocabulary import ORDER_HOOKS, DataKind, Hook

_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_UNRESOLVABLE = "spasm-cds-case-nowhere"  # the id of a Medication no case creates, here or on a FHIR server
CASE_BASE_URL = "http://spasm-cds.invalid"  # where cases' card links point (links are made only with a base URL)


@dataclass(frozen=True)
class CaseResult:
    """The cards a case produced, the card of its rule if any, and what is wrong (None when it passes)."""

    cards: list[dict[str, Any]]
    card: dict[str, Any] | None
    problem: str | None


def service_for(knowledge: Knowledge, case: Case) -> Service:
    """The service that runs the case's rule on the case's hook."""
    for service in knowledge.services.values():
        if service.hook == case.hook and any(r.id == case.rule for r in service.rules):
            return service
    raise LookupError(f"no service runs rule {case.rule} on {case.hook}")


def build_resources(knowledge: Knowledge, case: Case, patient_id: str, today: date) -> dict[str, list[dict]]:
    """The case's chart as FHIR R4 resources (plain dicts) grouped by data kind."""
    systems = {k: v[0] for k, v in knowledge.systems.items()}
    chart = case.chart
    subject = {"reference": f"Patient/{patient_id}"}
    patient: dict[str, Any] = {"resourceType": "Patient", "id": patient_id}
    person = chart.get("patient") or {}
    if "sex" in person:
        patient["gender"] = person["sex"]
    if "age" in person:
        patient["birthDate"] = date(today.year - person["age"], 1, 1).isoformat()
    out: dict[str, list[dict]] = {kind: [] for kind in DataKind}
    out[DataKind.PATIENT].append(patient)
    for i, med in enumerate(chart.get("medications") or ()):
        concept: dict[str, Any] = {}
        if "rxnorm" in med:
            concept["coding"] = [{"system": systems["rxnorm"], "code": str(med["rxnorm"])}]
        if "text" in med:
            concept["text"] = med["text"]
        kind = med.get("resource", "MedicationRequest")
        resource: dict[str, Any] = {"resourceType": kind, "id": f"med-{i}", "status": med.get("status", "active"),
                                    "subject": subject}
        if kind == "MedicationRequest":
            resource["intent"] = "order"
        if "started_days_ago" in med:
            started = (today - timedelta(days=med["started_days_ago"])).isoformat()
            if kind == "MedicationRequest":
                resource["authoredOn"] = started
            else:
                resource["effectivePeriod"] = {"start": started}
        dosage = _dosage(knowledge, med, systems)
        if dosage:
            resource["dosageInstruction" if kind == "MedicationRequest" else "dosage"] = [dosage]
        if med.get("reference"):
            medication = {"resourceType": "Medication", "id": f"medication-{i}", "code": concept}
            if "form" in med:
                medication["form"] = {"text": med["form"]}
            resource["medicationReference"] = {"reference": f"Medication/medication-{i}"}
            out[DataKind.MEDICATION_REQUESTS].append(medication)
        else:
            resource["medicationCodeableConcept"] = concept
        into = DataKind.MEDICATION_REQUESTS if kind == "MedicationRequest" else DataKind.MEDICATION_STATEMENTS
        out[into].append(resource)
    for i, draft in enumerate(chart.get("draft_orders") or ()):
        if draft.get("reference") == "server":
            # the EHR's own record: fetch mode loads it into the FHIR server; prefetch mode sends it with the
            # medication orders, as _include would (no case has a FHIR server in prefetch mode)
            out[DataKind.MEDICATION_REQUESTS].append(_draft_medication(knowledge, draft, i))
    for i, cond in enumerate(chart.get("conditions") or ()):
        system = "icd10cm" if "icd10cm" in cond else "snomed"
        resource = {"resourceType": "Condition", "id": f"cond-{i}", "subject": subject,
                    "clinicalStatus": {"coding": [{"system": _CLINICAL,
                                                   "code": cond.get("clinical_status", "active")}]},
                    "verificationStatus": {"coding": [{"system": _VERIFICATION,
                                                       "code": cond.get("verification_status", "confirmed")}]},
                    "code": {"coding": [{"system": systems[system], "code": str(cond[system]),
                                         **({"display": cond["display"]} if "display" in cond else {})}]}}
        if "onset_days_ago" in cond:
            resource["onsetDateTime"] = (today - timedelta(days=cond["onset_days_ago"])).isoformat()
        if "abatement_days_ago" in cond:
            resource["abatementDateTime"] = (today - timedelta(days=cond["abatement_days_ago"])).isoformat()
        out[DataKind.CONDITIONS].append(resource)
    for i, lab in enumerate(chart.get("labs") or ()):
        unit = lab.get("unit")
        quantity: dict[str, Any] = {"value": lab["value"]}
        if unit:
            quantity.update({"unit": unit, "system": systems["ucum"], "code": unit})
        when = today - timedelta(days=lab["days_ago"])
        resource = {"resourceType": "Observation", "id": f"obs-{i}", "status": "final", "subject": subject,
                    "code": {"coding": [{"system": systems["loinc"], "code": str(lab["loinc"])}]},
                    "effectiveDateTime": f"{when.isoformat()}T09:00:00Z", "valueQuantity": quantity}
        if "range" in lab:
            rng = {side: {"value": v, "unit": unit, "system": systems["ucum"], "code": unit}
                   for side, v in lab["range"].items()}
            resource["referenceRange"] = [rng]
        if "interpretation" in lab:
            resource["interpretation"] = [{"coding": [{"system": _INTERPRETATION, "code": lab["interpretation"]}]}]
        out[DataKind.OBSERVATIONS].append(resource)
    return out


def _dosage(knowledge: Knowledge, med: Mapping[str, Any], systems: dict[str, str]) -> dict[str, Any]:
    """The one Dosage of a case's medication or draft: its route, dose ({value, unit} as printed, and/or a `ucum`
    or `snomed` code) and timing ({code} of the timing code system, {text}, or {frequency, period, period_unit});
    empty when the case gives none of them."""
    dosage: dict[str, Any] = {}
    if "route" in med:
        dosage["route"] = _route(med["route"], systems)
    if "dose" in med:
        dose, quantity = med["dose"], {"value": med["dose"]["value"]}
        if "unit" in dose:
            quantity["unit"] = dose["unit"]
        for system in ("ucum", "snomed"):
            if system in dose:
                quantity.update({"system": systems[system], "code": str(dose[system])})
                quantity.setdefault("unit", str(dose[system]))
        dosage["doseAndRate"] = [{"doseQuantity": quantity}]
    timing = med.get("timing") or {}
    if "code" in timing or "text" in timing:
        code: dict[str, Any] = {"text": timing["text"]} if "text" in timing else {}
        if "code" in timing:
            code["coding"] = [{"system": knowledge.terminology.dosing.timing_system, "code": timing["code"]}]
        dosage["timing"] = {"code": code}
    elif timing:
        dosage["timing"] = {"repeat": {"frequency": timing.get("frequency", 1), "period": timing["period"],
                                       "periodUnit": timing["period_unit"]}}
    return dosage


def _route(route: dict[str, Any], systems: dict[str, str]) -> dict[str, Any]:
    """A route CodeableConcept from a case's {snomed, text}."""
    concept: dict[str, Any] = {}
    if "snomed" in route:
        concept["coding"] = [{"system": systems["snomed"], "code": str(route["snomed"])}]
    if "text" in route:
        concept["text"] = route["text"]
    return concept


def draft_context(knowledge: Knowledge, case: Case, patient_id: str,
                  placed: Mapping[str, str] | None = None) -> dict[str, Any]:
    """draftOrders (and, for order-select, selections) for the case's draft_orders. A draft with `reference`
    names its drug by medicationReference to a Medication: an entry of the draftOrders Bundle (by its urn:uuid
    fullUrl), contained in the draft (#id), the EHR's record (Medication/<id>; `placed` maps the case's ids to
    where a FHIR server put them), or a Medication that exists nowhere (unresolvable)."""
    entries, medications, selections = [], [], []
    placed = placed or {}
    systems = {k: v[0] for k, v in knowledge.systems.items()}
    for i, draft in enumerate(case.chart.get("draft_orders") or ()):
        resource: dict[str, Any] = {"resourceType": "MedicationRequest", "id": f"draft-{i}", "status": "draft",
                                    "intent": "order", "subject": {"reference": f"Patient/{patient_id}"}}
        how = draft.get("reference")
        medication = _draft_medication(knowledge, draft, i)
        if how == "bundle":
            full_url = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'spasm-cds:{case.rule}:{case.name}:{i}')}"
            medications.append({"fullUrl": full_url, "resource": medication})
            resource["medicationReference"] = {"reference": full_url}
        elif how == "contained":
            resource["contained"] = [{**medication, "id": "medication"}]
            resource["medicationReference"] = {"reference": "#medication"}
        elif how == "server":
            ref = f"Medication/{medication['id']}"
            resource["medicationReference"] = {"reference": placed.get(ref, ref)}
        elif how == "unresolvable":
            resource["medicationReference"] = {"reference": f"Medication/{_UNRESOLVABLE}-{i}"}
        elif draft.get("coded", True):
            resource["medicationCodeableConcept"] = medication["code"]
        dosage = _dosage(knowledge, draft, systems)
        if dosage:
            resource["dosageInstruction"] = [dosage]
        entries.append({"resource": resource})
        if draft.get("selected", True):
            selections.append(f"MedicationRequest/draft-{i}")
    context: dict[str, Any] = {"draftOrders": {"resourceType": "Bundle", "type": "collection",
                                               "entry": entries + medications}}
    if case.hook == Hook.ORDER_SELECT:
        context["selections"] = selections
    return context


def _draft_medication(knowledge: Knowledge, draft: Mapping[str, Any], i: int) -> dict[str, Any]:
    """The Medication of a case's draft order: its RxNorm code and/or text."""
    concept: dict[str, Any] = {}
    if "rxnorm" in draft:
        concept["coding"] = [{"system": knowledge.systems["rxnorm"][0], "code": str(draft["rxnorm"])}]
    if "text" in draft:
        concept["text"] = draft["text"]
    return {"resourceType": "Medication", "id": f"draft-medication-{i}", "code": concept}


def build_request(knowledge: Knowledge, case: Case, service: Service, today: date, patient_id: str = "case-patient",
                  mode: str = "prefetch", fhir_server: str | None = None,
                  placed: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A CDS Hooks request body for the case: data in prefetch, or (fetch mode) left to the FHIR server, which
    holds the case's resources under the ids `placed` maps them to (case Type/id -> server Type/id)."""
    body: dict[str, Any] = {"hook": case.hook, "hookInstance": str(uuid.uuid4()),
                            "context": {"userId": "Practitioner/case-user", "patientId": patient_id}}
    if case.hook in ORDER_HOOKS:
        body["context"].update(draft_context(knowledge, case, patient_id, placed))
    if fhir_server:
        body["fhirServer"] = fhir_server
    unavailable = set(case.chart.get("unavailable") or ())
    if mode == "prefetch":
        resources = build_resources(knowledge, case, patient_id, today)
        prefetch: dict[str, Any] = {}
        for query in service.queries:
            if query.key in unavailable:
                prefetch[query.key] = {"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "exception", "diagnostics": "fetch failed at the EHR"}]}
            elif query.kind == DataKind.PATIENT:
                prefetch[query.key] = resources[DataKind.PATIENT][0]
            else:
                prefetch[query.key] = {"resourceType": "Bundle", "type": "searchset",
                                       "entry": [{"resource": r} for r in resources[query.kind]]}
        body["prefetch"] = prefetch
    return body


def judge(knowledge: Knowledge, case: Case, response: dict[str, Any]) -> CaseResult:
    """Whether the response is what the case expects of its rule's card."""
    cards = response.get("cards", [])
    mine = [c for c in cards if case.rule in (c.get("extension") or {}).get(EXTENSION_KEY, {}).get("rules", ())]
    card = mine[0] if mine else None
    problem = None
    notice = any("missingData" in (c.get("extension") or {}).get(EXTENSION_KEY, {}) for c in cards)
    if case.notice is not None and notice != case.notice:
        problem = "expected the notice that data was missing or an order was not checked, got none" if case.notice \
            else "expected no notice that data was missing, got one"
    elif case.expect == "no-card" and mine:
        problem = f"expected no card, got: {mine[0]['summary']!r}"
    elif case.expect == "card":
        problem = _card_problem(knowledge, case, card)
    if problem is None and case.notice_contains:
        problem = _notice_problem(case, cards)
    shown = [c for c in cards if "missingData" not in (c.get("extension") or {}).get(EXTENSION_KEY, {})]
    if problem is None and case.cards is not None and len(shown) != case.cards:
        problem = f"expected {case.cards} card(s) in the response, got {len(shown)}: " + \
            "; ".join(repr(c["summary"]) for c in shown)
    for other in cards:  # every card the case gave, the notice included, must read well
        trouble = problem is None and next((f"{other.get('summary', '')!r}: {t}" for t in
                                            (text_problem(other.get(f, "")) for f in ("summary", "detail")) if t), None)
        if trouble:
            problem = f"card {trouble}"
    return CaseResult(cards, card, problem)


def text_problem(text: str) -> str | None:
    """What reads badly in rendered card text: brackets inside brackets, or a "(s)" plural."""
    depth = 0
    for i, ch in enumerate(text):
        if ch == "(" and not (i and text[i - 1] == "]"):
            depth += 1
            if depth > 1:
                return f"brackets inside brackets near {text[max(0, i - 40):i + 20]!r}"
        elif ch == ")" and depth:
            depth -= 1
    if "(s)" in text:
        return f"'(s)' near {text[max(0, text.index('(s)') - 30):text.index('(s)') + 3]!r}; say it in words"
    return None


def _notice_problem(case: Case, cards: list[dict[str, Any]]) -> str | None:
    notices = [c for c in cards if "missingData" in (c.get("extension") or {}).get(EXTENSION_KEY, {})]
    if not notices:
        return "expected the missing-data notice, got none"
    text = f"{notices[0]['summary']}\n{notices[0].get('detail', '')}"
    for wanted in case.notice_contains:
        if wanted not in text:
            return f"the missing-data notice {notices[0]['summary']!r} does not contain {wanted!r}"
    return None


def _card_problem(knowledge: Knowledge, case: Case, card: dict[str, Any] | None) -> str | None:
    if card is None:
        return "expected a card, got none"
    summary = card["summary"]
    if len(summary) > knowledge.max_summary_chars or summary.endswith("…"):
        return f"summary is longer than {knowledge.max_summary_chars} characters once filled in: {summary!r}"
    # a card that several rules share about one order leads with the most urgent; the others' summaries head
    # their sections in the detail
    shared = "order" in card["extension"][EXTENSION_KEY] and card["extension"][EXTENSION_KEY]["rules"][0] != case.rule
    for text in case.summary_contains:
        if text not in summary and not (shared and text in card.get("detail", "")):
            return f"summary {summary!r} does not contain {text!r}"
    for text in case.detail_contains:
        if text not in card.get("detail", ""):
            return f"detail does not contain {text!r}"
    for field in ("summary", "detail"):
        problem = text_problem(card.get(field, ""))
        if problem:
            return f"card {field}: {problem}"
    for pattern, why in knowledge.forbidden:
        for field in ("summary", "detail"):
            if re.search(pattern, card.get(field, ""), re.IGNORECASE):
                return f"card {field} matches forbidden {pattern!r} ({why})"
    if "{" in summary or "{" in card.get("detail", ""):
        return "card text has an unfilled placeholder"
    drafts = {f"MedicationRequest/draft-{i}" for i in range(len(case.chart.get("draft_orders") or ()))}
    for suggestion in card.get("suggestions", ()):
        for action in suggestion["actions"]:
            if action["type"] == "delete" and action.get("resourceId") not in drafts:
                return f"a delete action names {action.get('resourceId')!r}, which is not a draft of the request"
    problem = _smart_link_problem(knowledge, case, card)
    if problem:
        return problem
    if case.suggestions is not None:
        got = [a["resource"]["code"]["coding"][0]["code"] for s in card.get("suggestions", ()) for a in s["actions"]
               if a["type"] == "create"]
        if got != list(case.suggestions):
            return f"suggested orders {got} but the case expects {list(case.suggestions)}"
    return None


def _smart_link_problem(knowledge: Knowledge, case: Case, card: dict[str, Any]) -> str | None:
    """What is wrong with the card's SMART app link against the case and the rule: present when the case asks,
    absent when it forbids, and always an appContext that is JSON naming the rule's charted labs."""
    apps = [link for link in card.get("links", ()) if link.get("type") == "smart"]
    if case.smart_link is not None and bool(apps) != case.smart_link:
        return "expected the card to offer the timeline app, it does not" if case.smart_link \
            else "expected no timeline app link on the card, got one"
    wanted = knowledge.rules[case.rule].card.smart_link
    for app in apps:
        try:
            context = json.loads(app.get("appContext", ""))
        except ValueError:
            return "the timeline app link's appContext is not JSON"
        charted = [lab.get("id") for lab in context.get("labs", ())]
        if wanted and not set(wanted.labs) <= set(charted):
            return f"the timeline app link charts {charted}, not the rule's labs {list(wanted.labs)}"
    return None


def run_case(knowledge: Knowledge, case: Case, settings: Settings | None = None,
             today: date | None = None) -> CaseResult:
    """Run a case in prefetch mode, in process, and judge it."""
    today = today or date.today()
    service = service_for(knowledge, case)
    body = build_request(knowledge, case, service, today)
    try:
        response = respond(body, service, knowledge, settings or Settings(), today, base_url=CASE_BASE_URL)
    except ServiceError as exc:
        return CaseResult([], None, f"the service answered {exc.status}: {exc.diagnostics}")
    return judge(knowledge, case, response)
