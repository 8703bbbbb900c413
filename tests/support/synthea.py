"""Synthea bundles (shared test data) as CDS Hooks patient-view calls: charts, and prefetch built the way a FHIR
server would answer the service's own templates (cds_service.bundles, which the evaluate command uses too)."""
from __future__ import annotations

import csv
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from fhir.resources.R4B.servicerequest import ServiceRequest

import tests.conftest
from cds_service.bundles import answer_template, cramp_condition, rewrite_references
from cds_service.gather.facts import PatientFacts, extract_facts
from cds_service.knowledge.model import Criterion, Knowledge, Service

# cramp_condition is re-exported for the tests that build charts from these bundles
__all__ = ["BUNDLE_DIR", "SyntheaChart", "all_prefetched", "codings", "cramp_condition", "criterion", "day_of",
           "effective", "expected_missing_labs", "facts_of", "lab_observations", "manifest", "prefetch_request",
           "searchset", "synthea_chart", "view_day"]

SYNTHEA = Path(tests.conftest.SHARED) / "synthea"
BUNDLE_DIR = SYNTHEA / "bundles"

_VOID_OBSERVATION = {"cancelled", "entered-in-error"}
# the resource types each data kind of the service is made of (Medications travel with the requests, as _include does)
KIND_OF_TYPE = {"Patient": "patient", "MedicationRequest": "medication-requests", "Medication": "medication-requests",
                "MedicationStatement": "medication-statements", "Condition": "conditions",
                "Observation": "observations"}
# the search parameters of the service's prefetch templates that as-queried mode carries out


@dataclass(frozen=True)
class SyntheaChart:
    """One bundle's patient: the resources of the service's data kinds, references rewritten to Type/id."""

    name: str
    patient_id: str
    user_id: str
    last_encounter: date | None
    resources: Mapping[str, tuple[dict[str, Any], ...]]  # data kind -> resources
    by_reference: Mapping[str, dict[str, Any]]  # "Type/id" -> resource, for _include


@cache
def synthea_chart(name: str) -> SyntheaChart:
    """Read one transaction bundle (once per session) and keep what a patient-view prefetch can hold."""
    bundle = json.loads((BUNDLE_DIR / name).read_text(encoding="utf-8"))
    entries = [e for e in bundle.get("entry") or () if isinstance(e.get("resource"), dict)]
    local = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries
             if "fullUrl" in e and "id" in e["resource"]}
    resources: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_reference: dict[str, dict[str, Any]] = {}
    encounter_days: list[date] = []
    practitioner_id = None
    for entry in entries:
        resource = entry["resource"]
        kind = KIND_OF_TYPE.get(resource["resourceType"])
        if kind:
            rewritten = rewrite_references(resource, local)
            resources[kind].append(rewritten)
            by_reference[f"{resource['resourceType']}/{resource.get('id')}"] = rewritten
        elif resource["resourceType"] == "Encounter":
            period = resource.get("period") or {}
            day = day_of(period.get("end") or period.get("start"))
            if day:
                encounter_days.append(day)
        elif resource["resourceType"] == "Practitioner" and practitioner_id is None:
            practitioner_id = resource.get("id")
    (patient,) = resources["patient"]
    return SyntheaChart(name=name, patient_id=patient["id"],
                        user_id=f"Practitioner/{practitioner_id or 'synthea-test-user'}",
                        last_encounter=max(encounter_days, default=None),
                        resources={k: tuple(v) for k, v in resources.items()}, by_reference=by_reference)


def day_of(value: Any) -> date | None:
    """The calendar day of a FHIR date or dateTime, or None."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def codings(concept: Any) -> list[dict[str, Any]]:
    """The codings of a CodeableConcept (none if it is missing or malformed)."""
    return [c for c in (concept or {}).get("coding") or () if isinstance(c, dict)] if isinstance(concept, dict) else []


def effective(observation: Mapping[str, Any]) -> str:
    """An Observation's clinically relevant time as sent (ISO text, so it sorts), or ''."""
    return (observation.get("effectiveDateTime") or (observation.get("effectivePeriod") or {}).get("start")
            or observation.get("issued") or "")


def searchset(matches: list[dict[str, Any]], included: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """A FHIR searchset Bundle of the matches (and _include'd resources)."""
    entries = [{"resource": r, "search": {"mode": "match"}} for r in matches]
    entries += [{"resource": r, "search": {"mode": "include"}} for r in included]
    return {"resourceType": "Bundle", "type": "searchset", "total": len(matches), "entry": entries}


def prefetch_request(chart: SyntheaChart, service: Service, *, everything: bool = False,
                     extra: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """A patient-view request with every prefetch key of the service filled from the chart (plus extra resources).

    everything=False answers each template as a FHIR server would (only the asked-for lab codes, only active or
    on-hold medications); everything=True sends all the patient's resources of each kind."""
    extra = list(extra)
    prefetch: dict[str, Any] = {}
    for query in service.queries:
        found = list(chart.resources.get(query.kind, ()))
        found += [r for r in extra if KIND_OF_TYPE.get(r["resourceType"]) == query.kind]
        if query.kind == "patient":
            prefetch[query.key] = found[0]
        elif everything:
            prefetch[query.key] = searchset(found)
        else:
            prefetch[query.key] = answer_template(found, query.template, chart.by_reference)
    return {"hook": service.hook, "hookInstance": str(uuid.uuid5(uuid.NAMESPACE_URL, f"synthea:{chart.name}")),
            "context": {"userId": chart.user_id, "patientId": chart.patient_id}, "prefetch": prefetch}


def view_day(chart: SyntheaChart, clock: str, today: date) -> date:
    """The day the chart is viewed on under a clock of CLOCKS."""
    return (chart.last_encounter or today) if clock == "last-encounter" else today


def facts_of(chart: SyntheaChart, knowledge: Knowledge, day: date) -> PatientFacts:
    """What the service's fact extraction makes of all the chart's resources."""
    return extract_facts(chart.resources, (), knowledge.terminology, day)


def ordered_code(request: ServiceRequest) -> str | None:
    """The code a suggested ServiceRequest orders: its first coding's."""
    assert request.code is not None and request.code.coding, "a suggested order names its test"
    return request.code.coding[0].code


def criterion(knowledge: Knowledge, rule_id: str, kind: str) -> Criterion:
    """The one include criterion of this kind in the rule."""
    (found,) = [c for c in knowledge.rules[rule_id].include if c.kind == kind]
    return found


def lab_observations(chart: SyntheaChart, knowledge: Knowledge, concept_id: str) -> list[dict[str, Any]]:
    """The chart's Observations coded (LOINC) with one of the lab concept's codes, void ones left out."""
    loinc_systems = set(knowledge.systems["loinc"])
    codes = set(knowledge.concepts[concept_id].codes["loinc"])
    return [o for o in chart.resources.get("observations", ()) if o.get("status") not in _VOID_OBSERVATION
            and any(c.get("system") in loinc_systems and c.get("code") in codes for c in codings(o.get("code")))]


def expected_missing_labs(chart: SyntheaChart, knowledge: Knowledge, day: date, rule_id: str) -> list[str]:
    """The work-up rule's labs with no valued result in its window before `day`, read straight from the data."""
    missing = criterion(knowledge, rule_id, "missing-lab")
    assert missing.within_days is not None  # a missing-lab criterion has its window
    oldest = day - timedelta(days=missing.within_days)
    out = []
    for concept_id in missing.concepts:
        recent = [o for o in lab_observations(chart, knowledge, concept_id)
                  if isinstance((o.get("valueQuantity") or {}).get("value"), (int, float))
                  and (day_of(effective(o)) or date.min) >= oldest]
        if not recent:
            out.append(concept_id)
    return out


def manifest() -> dict[str, str]:
    """Bundle file name -> selection category, from the shared MANIFEST.csv."""
    with open(SYNTHEA / "MANIFEST.csv", encoding="utf-8", newline="") as f:
        return {row["file"]: row["selection_category"] for row in csv.DictReader(f)}


def all_prefetched(body: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every resource in a request's prefetch."""
    for value in body["prefetch"].values():
        if value.get("resourceType") == "Bundle":
            yield from (e["resource"] for e in value["entry"])
        else:
            yield value
