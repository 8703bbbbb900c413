"""One patient's evaluation, without HTTP: a Bundle file or a group of NDJSON resources -> one PatientRow per hook.

Pure and picklable both ways (a Job in, rows out), so a process pool or a Dask worker can run it; each process
loads the knowledge once. The row keeps no identifier unless asked (Job.show_ids): the patient key is a hash."""
from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from ..bundles import (
    KIND_OF_TYPE,
    ORDER_HOOKS,
    Chart,
    InputError,
    WhatIf,
    add_draft,
    chart_of,
    cramp_condition,
    is_request,
    read_json,
    request_for_file,
    request_from_chart,
    service_for_hook,
)
from ..errors import ServiceError
from ..gather.facts import PatientFacts
from ..knowledge.loader import load_knowledge
from ..knowledge.model import Knowledge
from ..pipeline import respond
from ..render.cards import EXTENSION_KEY
from ..settings import Settings
from ..vocabulary import Hook

INDICATORS = ("info", "warning", "critical")
_NO_USER = "Practitioner/spasm-cds-evaluate"


@dataclass(frozen=True)
class Job:
    """What every patient is evaluated with: the hooks (None: a Bundle's default, a request file's own), the
    what-if settings and the day, the settings (knowledge folder), and whether rows may carry patient ids."""

    hooks: tuple[str | None, ...]
    what_if: WhatIf
    today: date
    settings: Settings
    show_ids: bool = False


@dataclass(frozen=True)
class PatientRow:
    """One patient and hook: the cards and what they were made of. `error` is set when no response came."""

    patient: str  # a hash of the patient id (or the id itself with --show-ids)
    hook: str
    cards: int = 0
    indicators: tuple[tuple[str, int], ...] = ()
    rules: tuple[str, ...] = ()  # each rule once per card it is on
    missing_data: tuple[str, ...] = ()  # the data kinds the missing-data card names
    missing_data_cards: int = 0
    unrecognised_codes: tuple[str, ...] = ()  # RxNorm codes of medications not recognised, once per medication
    by_name: int = 0  # medications recognised by name only
    unread_units: tuple[tuple[str, str], ...] = ()  # (lab concept, unit as sent) that could not be converted
    error: str | None = None
    source: str = field(default="", compare=False)  # the file, for the failure list (never in the rows' files)


def patient_key(patient_id: str, show_ids: bool) -> str:
    """The key a row carries: the id itself when asked, else the first 16 hex digits of its SHA-256 (the same id
    gives the same key in every run, so reports can be compared; anyone holding the ids can recompute it)."""
    return patient_id if show_ids else hashlib.sha256(f"spasm-cds:{patient_id}".encode()).hexdigest()[:16]


@cache
def knowledge_in(knowledge_dir: Path) -> Knowledge:
    """The knowledge, loaded once per process (each worker of a pool or a cluster loads its own)."""
    return load_knowledge(knowledge_dir)


def evaluate_file(path: Path, job: Job, name: str) -> list[PatientRow]:
    """Rows for one file (a one-patient Bundle or a CDS Hooks request), one per hook of the job."""
    knowledge = knowledge_in(job.settings.knowledge_dir)
    rows = []
    try:
        document = read_json(path)
        ident = _file_patient(document, name)
    except InputError as exc:
        why = str(exc).removeprefix(f"{path}: ")
        return [PatientRow(patient=patient_key(name, job.show_ids), hook=h or Hook.PATIENT_VIEW, error=why,
                           source=name) for h in job.hooks]
    key = patient_key(ident, job.show_ids)
    for hook in job.hooks:
        try:
            service, body = request_for_file(path, knowledge, hook, _what_if(job, hook), job.today)
            rows.append(_row(key, service.hook, body, service, knowledge, job))
        except (InputError, ServiceError) as exc:
            why = str(getattr(exc, "diagnostics", exc))
            rows.append(PatientRow(patient=key, hook=hook or Hook.PATIENT_VIEW, error=why.removeprefix(f"{path}: ")))
    return [replace(r, source=name) for r in rows]


def evaluate_chart(chart: Chart, job: Job) -> list[PatientRow]:
    """Rows for one patient's resources (from NDJSON), one per hook of the job."""
    knowledge = knowledge_in(job.settings.knowledge_dir)
    key = patient_key(chart.patient_id, job.show_ids)
    rows = []
    for hook in job.hooks:
        try:
            service = service_for_hook(knowledge, hook or Hook.PATIENT_VIEW)
            if service.hook in ORDER_HOOKS and not job.what_if.draft_rxnorm:
                raise InputError(f"an {service.hook} call from a Bundle needs --draft-order RXNORM")
            extra = [cramp_condition(knowledge, chart.patient_id, job.today)] if job.what_if.assume_cramps else []
            instance = str(uuid.uuid5(uuid.NAMESPACE_URL, f"spasm-cds:{chart.patient_id}"))
            body = add_draft(request_from_chart(chart, service, instance, extra), knowledge,
                             _what_if(job, hook).draft_rxnorm)
            rows.append(_row(key, service.hook, body, service, knowledge, job))
        except (InputError, ServiceError) as exc:
            why = str(getattr(exc, "diagnostics", exc))
            rows.append(PatientRow(patient=key, hook=hook or Hook.PATIENT_VIEW, error=why))
    return [replace(r, source=f"Patient/{key}") for r in rows]


def chart_of_resources(patient_id: str, resources: Iterable[Mapping[str, Any]],
                       medications: Mapping[str, Mapping[str, Any]]) -> Chart:
    """A Chart from one patient's resources (references already Type/id, as in a Bulk export), with the
    Medications its MedicationRequests reference taken from the export's shared Medication resources."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    by_reference: dict[str, dict[str, Any]] = {}
    for resource in resources:
        kind = KIND_OF_TYPE.get(str(resource.get("resourceType")))
        if kind:
            grouped.setdefault(kind, []).append(dict(resource))
            by_reference[f"{resource['resourceType']}/{resource.get('id')}"] = dict(resource)
    for request in grouped.get("medication-requests", ()):
        reference = str((request.get("medicationReference") or {}).get("reference"))
        if reference in medications and reference not in by_reference:
            medication = dict(medications[reference])
            grouped["medication-requests"].append(medication)
            by_reference[reference] = medication
    patients = grouped.get("patient", [])
    if len(patients) != 1:
        raise InputError(f"{len(patients)} Patient resources with the id of this patient's resources")
    return Chart(patient_id=patient_id, user_id=_NO_USER, resources={k: tuple(v) for k, v in grouped.items()},
                 by_reference=by_reference)


def combined(rows: Sequence[PatientRow]) -> PatientRow:
    """One patient's rows over several hooks as one (cards summed), for the whole-population figures."""
    if len(rows) == 1:
        return rows[0]
    failed = [r for r in rows if r.error]
    indicators: Counter[str] = Counter()
    for r in rows:
        indicators.update(dict(r.indicators))
    first = rows[0]
    return PatientRow(patient=first.patient, hook="+".join(r.hook for r in rows), cards=sum(r.cards for r in rows),
                      indicators=tuple(sorted(indicators.items())), rules=tuple(x for r in rows for x in r.rules),
                      missing_data=tuple(sorted({x for r in rows for x in r.missing_data})),
                      missing_data_cards=sum(r.missing_data_cards for r in rows),
                      unrecognised_codes=first.unrecognised_codes, by_name=first.by_name,
                      unread_units=first.unread_units, error=failed[0].error if failed else None, source=first.source)


def _what_if(job: Job, hook: str | None) -> WhatIf:
    """The job's what-if for one hook: with several hooks asked for, the draft order goes to the order hooks only
    (with one, a draft on patient-view is refused as a mistake)."""
    if len(job.hooks) > 1 and hook not in ORDER_HOOKS:
        return replace(job.what_if, draft_rxnorm=None)
    return job.what_if


def _row(key: str, hook: str, body: dict[str, Any], service: Any, knowledge: Knowledge, job: Job) -> PatientRow:
    seen: list[PatientFacts] = []
    response = respond(body, service, knowledge, job.settings, job.today, observe=seen.append)
    cards = response.get("cards") or []
    indicators: Counter[str] = Counter(card.get("indicator", "?") for card in cards)
    rules: list[str] = []
    missing: list[str] = []
    missing_cards = 0
    for card in cards:
        ours = (card.get("extension") or {}).get(EXTENSION_KEY) or {}
        rules += ours.get("rules") or ()
        if "missingData" in ours:
            missing_cards += 1
            missing += ours["missingData"]
    facts = seen[0] if seen else None
    return PatientRow(
        patient=key, hook=hook, cards=len(cards), indicators=tuple(sorted(indicators.items())), rules=tuple(rules),
        missing_data=tuple(sorted(set(missing))), missing_data_cards=missing_cards,
        unrecognised_codes=tuple(facts.identity.unrecognised_codes) if facts else (),
        by_name=facts.identity.by_name if facts else 0,
        unread_units=tuple((u.concept, u.unit or "(no unit)") for u in facts.unread_labs.values()) if facts else ())


def _file_patient(document: Any, name: str) -> str:
    """The patient id of a file (for its key): the request's patientId or the Bundle's one Patient."""
    if is_request(document):
        return str((document.get("context") or {}).get("patientId") or name)
    return chart_of(document).patient_id
