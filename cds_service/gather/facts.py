"""Resources (plain dicts) -> PatientFacts: medications as concepts, labs normalised to canonical units,
active conditions, age and sex, and which kinds of data are unknown. Reads only the fields rules need."""
from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any

from ..terminology import Terminology
from ..vocabulary import MEDICATION_DATA, DataKind, Hook
from .dosage import NO_DOSES, DailyDose, daily_doses

log = logging.getLogger(__name__)

_ACTIVE_MED = {"active", "on-hold"}
_ACTIVE_CONDITION = {"active", "recurrence", "relapse"}
_VOID_VERIFICATION = {"refuted", "entered-in-error"}
_VOID_OBSERVATION = {"cancelled", "entered-in-error", "registered"}
_LOW_FLAGS = {"L", "LL", "LU"}
_HIGH_FLAGS = {"H", "HH", "HU"}
_ABNORMAL_FLAGS = {"A", "AA"}
_ANNOTATION = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class MedicationUse:
    """One active medication order or statement, rolled up to ingredients and concepts."""

    concepts: frozenset[str]
    ingredients: tuple[str, ...]
    display: str
    started: date | None = None  # authoredOn, or the statement's start
    route: str | None = None  # where it acts (mappings/routes.yaml); None: not told
    by: str = "code"  # how it was recognised: code, name or none
    unrecognised: tuple[str, ...] = ()  # its RxNorm codes the roll-up table does not know, when not by code
    # ingredient -> daily dose, for those its dosage tells
    doses: Mapping[str, DailyDose] = field(default_factory=lambda: NO_DOSES)


@dataclass(frozen=True)
class DraftOrder:
    """A medication being ordered in this session (draftOrders); `selected` is what the hook speaks about."""

    id: str
    concepts: frozenset[str]
    ingredients: tuple[str, ...]
    display: str
    selected: bool
    # False: the draft names its drug by a reference that could not be resolved, so nothing is known of what is
    # ordered (never read as "no interaction": rules that ask about it are unknown)
    identified: bool = True
    route: str | None = None
    # ingredient -> daily dose, for those its dosage tells
    doses: Mapping[str, DailyDose] = field(default_factory=lambda: NO_DOSES)


@dataclass(frozen=True)
class LabResult:
    """One result: value in the analyte's canonical unit for comparing, and as reported for showing."""

    concept: str
    value: float
    low: float | None  # the result's own reference range, canonical unit
    high: float | None
    interpretation: str | None  # L, H, N ... as sent
    when: date
    shown_value: str
    shown_unit: str
    shown_range: str
    corrected: float | None = None  # canonical unit; set when a same-day correction applies
    corrected_by: str = ""  # e.g. "albumin 3.0 g/dL"
    at: float = 0.0  # the full time stamp, for ordering results of one day
    code_rank: int = 0  # position of the result's code in the concept's list (preferred codes first)
    correction_unknown: bool = False  # the correcting analyte, measured the same day, has an unread unit


@dataclass(frozen=True)
class UnreadLab:
    """An analyte's newest result holds a number, but its unit is missing or cannot be converted: the test was
    done (never re-ordered as missing) and its value is unknown (never judged normal)."""

    concept: str
    when: date
    unit: str  # as sent, "" when missing: for the local evaluate report, never for logs or metrics


@dataclass(frozen=True)
class ConditionFact:
    """One active, not refuted condition; `confirmed` unless provisional, differential or unconfirmed."""

    concepts: frozenset[str]
    display: str
    confirmed: bool = True


@dataclass(frozen=True)
class IdentityCounts:
    """How a chart's medications were recognised, for /metrics and the evaluate report (codes, never PHI):
    RxNorm codes the roll-up table does not know, and drugs recognised by name only."""

    unrecognised_codes: tuple[str, ...] = ()
    by_name: int = 0


@dataclass(frozen=True)
class PatientFacts:
    """What the rules may know about the patient; `unknown` names data kinds that could not be had."""

    today: date
    age: int | None
    sex: str | None
    medications: tuple[MedicationUse, ...]
    labs: Mapping[str, LabResult]  # concept -> its newest usable result
    conditions: tuple[ConditionFact, ...]
    unknown: frozenset[str]
    drafts: tuple[DraftOrder, ...] = ()
    unread_labs: Mapping[str, UnreadLab] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def identity(self) -> IdentityCounts:
        """What of the medications was not recognised by code."""
        return IdentityCounts(tuple(c for m in self.medications for c in m.unrecognised),
                              sum(1 for m in self.medications if m.by == "name"))


def condition_facts(resources: Mapping[str, Sequence[dict[str, Any]]], terminology: Terminology, today: date
                    ) -> tuple[ConditionFact, ...]:
    """The active, not refuted conditions alone: enough for a service's relevance gate, so that a chart without a
    documented cramp costs no medication or lab extraction. A concept with a maximum age no longer counts that
    many days after the condition's onset."""
    patient = next((r for r in resources.get(DataKind.PATIENT, ()) if r.get("resourceType") == "Patient"), None)
    born = _date(patient.get("birthDate")) if patient else None
    return tuple(_conditions(resources.get(DataKind.CONDITIONS, ()), terminology, today, born))


def extract_facts(resources: Mapping[str, Sequence[dict[str, Any]]], unknown: Iterable[str],
                  terminology: Terminology, today: date, drafts: tuple[DraftOrder, ...] = (),
                  conditions: tuple[ConditionFact, ...] | None = None) -> PatientFacts:
    """Build PatientFacts from gathered resources; unparseable pieces are skipped, never guessed. `conditions`,
    when given, are condition_facts of the same resources, already read for the gate."""
    patient = next((r for r in resources.get(DataKind.PATIENT, ()) if r.get("resourceType") == "Patient"), None)
    medications_by_id = {r.get("id"): r for rs in resources.values() for r in rs
                         if r.get("resourceType") == "Medication"}
    meds = tuple(m for kind in MEDICATION_DATA
                 for m in _medications(resources.get(kind, ()), medications_by_id, terminology))
    labs, unread = _labs(resources.get(DataKind.OBSERVATIONS, ()), terminology)
    return PatientFacts(
        today=today,
        age=_age(patient.get("birthDate"), today) if patient else None,
        sex=patient.get("gender") if patient else None,
        medications=meds,
        labs=labs,
        conditions=condition_facts(resources, terminology, today) if conditions is None else conditions,
        unknown=frozenset(unknown),
        drafts=drafts,
        unread_labs=unread)


def extract_drafts(context: Mapping[str, Any], hook: str, terminology: Terminology,
                   medications: Mapping[str, Mapping[str, Any]] = MappingProxyType({})) -> tuple[DraftOrder, ...]:
    """The draft MedicationRequests of an order hook; order-select marks the selected ones, order-sign all.
    `medications` are the Medications gathered for drafts that name their drug by reference (by reference); a
    draft whose reference is not among them (nor contained), or whose Medication has no code, is unidentified."""
    bundle = context.get("draftOrders")
    if not isinstance(bundle, dict):
        return ()
    selections = {s for s in _list(context.get("selections")) if isinstance(s, str)}
    drafts = []
    for entry in _list(bundle.get("entry")):
        r = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(r, dict) or r.get("resourceType") != "MedicationRequest":
            continue
        ident = str(r.get("id") or "")
        selected = hook != Hook.ORDER_SELECT or f"MedicationRequest/{ident}" in selections
        ref = _draft_reference(r)
        in_request = ref is None or ref.startswith("#")  # inline or contained; else gathered by reference
        medication = medications.get(ref) if ref is not None and not in_request else _medication_resource(r, {})
        concept = _medication_concept(r, {}) if in_request else _obj(medication).get("code")
        if ref is not None and not _names_a_drug(concept):
            log.info("a draft order's medicationReference could not be resolved to a coded Medication; unidentified")
            drafts.append(DraftOrder(ident, frozenset(), (), "medication", selected, identified=False))
            continue
        if not isinstance(concept, dict):
            log.info("a draft order has no medication code; not matched")
            continue
        codings = _codings(concept)
        found = terminology.identify(codings, _str(concept.get("text")), route=_route(r),
                                     form=_obj(medication).get("form"))
        if not found.concepts:
            log.info("a draft order's medication matched no concept")
        display = _str(concept.get("text")) or next((_str(c.get("display")) for c in codings
                                                     if _str(c.get("display"))), "")
        drafts.append(DraftOrder(ident, found.concepts, found.ingredients, display or "medication", selected,
                                 route=found.route, doses=daily_doses(r, concept, found.ingredients, terminology,
                                                                     found.concepts)))
    return tuple(drafts)


def _draft_reference(r: Mapping[str, Any]) -> str | None:
    """The reference a draft names its drug by, when it has no medicationCodeableConcept; else None."""
    if r.get("medicationCodeableConcept") is not None or "medicationReference" not in r:
        return None
    return _str(_obj(r.get("medicationReference")).get("reference")) or ""


def _names_a_drug(concept: Any) -> bool:
    """Whether a medication CodeableConcept carries a code or a text to look the drug up by."""
    return isinstance(concept, dict) and (bool(_str(concept.get("text")))
                                          or any(_str(c.get("code")) for c in _codings(concept)))


def _medication_concept(r: Mapping[str, Any], medications_by_id: Mapping[str, Any]) -> Any:
    """The medication CodeableConcept of a request or statement: inline, contained (#id) or referenced."""
    concept = r.get("medicationCodeableConcept")
    if concept is None:
        concept = _obj(_medication_resource(r, medications_by_id)).get("code")
    return concept


def _medication_resource(r: Mapping[str, Any], medications_by_id: Mapping[str, Any]) -> Any:
    """The Medication a request or statement references (contained #id, or Medication/id among the resources)."""
    ref = _str(_obj(r.get("medicationReference")).get("reference")) or ""
    if ref.startswith("#"):
        return next((c for c in _list(r.get("contained")) if isinstance(c, dict)
                     and c.get("resourceType") == "Medication" and c.get("id") == ref[1:]), None)
    if ref.startswith("Medication/"):
        return medications_by_id.get(ref.split("/", 1)[1])
    return None


def _route(r: Mapping[str, Any]) -> Any:
    """The route of an order (dosageInstruction) or statement (dosage), as sent: the first one given."""
    for dosage in _list(r.get("dosageInstruction")) + _list(r.get("dosage")):
        if isinstance(dosage, dict) and isinstance(dosage.get("route"), dict):
            return dosage["route"]
    return None


def _age(birth: Any, today: date) -> int | None:
    born = _date(birth)
    if born is None:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def _date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 4:
        return None
    text = value[:10]
    text += "-01-01"[len(text) - 4:] if len(text) < 10 else ""
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _obj(value: Any) -> Mapping[str, Any]:
    """value if it is a JSON object, else an empty one (EHR data is read defensively, never trusted)."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    """value if it is a JSON array, else an empty one."""
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    """value if it is a string, else None."""
    return value if isinstance(value, str) else None


def _codings(concept: Any) -> list[Mapping]:
    if not isinstance(concept, dict):
        return []
    return [c for c in _list(concept.get("coding")) if isinstance(c, dict)]


def _medications(items, medications_by_id, terminology: Terminology):
    for r in items:
        kind = r.get("resourceType")
        if kind not in ("MedicationRequest", "MedicationStatement"):
            continue
        if _str(r.get("status")) not in _ACTIVE_MED:
            continue
        concept = _medication_concept(r, medications_by_id)
        if not isinstance(concept, dict):
            log.info("a %s has no usable medication code; not matched", kind)
            continue
        codings = _codings(concept)
        found = terminology.identify(codings, _str(concept.get("text")), route=_route(r),
                                     form=_obj(_medication_resource(r, medications_by_id)).get("form"))
        display = _str(concept.get("text")) or next((_str(c.get("display")) for c in codings
                                                     if _str(c.get("display"))), "")
        started = _date(r.get("authoredOn") or _obj(r.get("effectivePeriod")).get("start")
                        or r.get("effectiveDateTime") or r.get("dateAsserted"))
        yield MedicationUse(found.concepts, found.ingredients, display or "medication", started, found.route,
                            found.by, found.unrecognised if found.by != "code" else (),
                            daily_doses(r, concept, found.ingredients, terminology, found.concepts))


# one coded result not yet converted: (sort key: newest first, then the concept's preferred code, then document
# order), its day, its time stamp, the part (Observation or component) holding the value, (concept id, code rank)
_Candidate = tuple[tuple[float, int, int], date, float, Mapping[str, Any], tuple[str, int]]


def _lab_candidates(items, terminology: Terminology) -> dict[str, list[_Candidate]]:
    """Each analyte's coded, dated results, newest first; values and units are not read yet (cheap)."""
    found: dict[str, list[_Candidate]] = defaultdict(list)
    for seq, r in enumerate(items):
        if r.get("resourceType") != "Observation" or _str(r.get("status")) in _VOID_OBSERVATION:
            continue
        # look the codes up first: most Observations in a chart are of analytes no rule reads
        code = terminology.lab_code(r.get("code"))
        coded = [(r, code)] if code is not None else []
        for part in _list(r.get("component")):
            if isinstance(part, dict) and (code := terminology.lab_code(part.get("code"))) is not None:
                coded.append((part, code))
        if not coded:
            continue
        stamp = (r.get("effectiveDateTime") or r.get("effectiveInstant")
                 or _obj(r.get("effectivePeriod")).get("start") or r.get("issued"))
        when = _date(stamp)
        if when is None:
            continue
        at = _instant(stamp, when)
        for part, code in coded:
            found[code[0]].append(((-at, code[1], seq), when, at, part, code))
    for candidates in found.values():
        candidates.sort(key=lambda c: c[0])
    return found


def _numeric(candidates: Iterable[_Candidate], terminology: Terminology) -> Iterable[LabResult | UnreadLab]:
    """The candidates that hold a number, in the candidates' order: converted, or unread when their unit cannot
    be converted. Results without a number (text, absent value) are passed over."""
    for _, when, at, part, code in candidates:
        result = _lab_result(part, code, when, at, terminology)
        if result is not None:
            yield result


def lab_results(items, terminology: Terminology) -> Mapping[str, tuple[LabResult, ...]]:
    """Every converted result of each analyte, newest first (rules read only the newest: see _labs)."""
    every = {cid: tuple(r for r in _numeric(candidates, terminology) if isinstance(r, LabResult))
             for cid, candidates in _lab_candidates(items, terminology).items()}
    return MappingProxyType({cid: results for cid, results in every.items() if results})


def _labs(items, terminology: Terminology) -> tuple[Mapping[str, LabResult], Mapping[str, UnreadLab]]:
    """The newest result with a number of each analyte (by the full time stamp; on a tie, the concept's preferred
    code first), with its same-day correction where one applies; or, when that newest result's unit cannot be
    converted, the analyte as present-but-unread. The newest result decides: an older result that converts is
    not used in its place, as it would be taken for the current value. Older results are never converted: rules
    judge the newest result, and a chart holds years of them."""
    candidates = _lab_candidates(items, terminology)
    latest: dict[str, LabResult] = {}
    unread: dict[str, UnreadLab] = {}
    for cid, found in candidates.items():
        newest = next(iter(_numeric(found, terminology)), None)
        if isinstance(newest, LabResult):
            latest[cid] = newest
        elif newest is not None:
            unread[cid] = newest
    for concept_id, result in latest.items():
        correction = terminology.concept(concept_id).lab_spec.correction
        if correction and correction.by in candidates:
            same_day = (c for c in candidates[correction.by] if c[1] == result.when)
            other = next(iter(_numeric(same_day, terminology)), None)
            if isinstance(other, LabResult):
                latest[concept_id] = _corrected(result, correction, other, terminology)
            elif other is not None:
                latest[concept_id] = replace(result, correction_unknown=True)
    return MappingProxyType(latest), MappingProxyType(unread)


def _instant(stamp: Any, day: date) -> float:
    """Seconds since the epoch of a FHIR dateTime; a date alone counts as its midnight UTC."""
    if isinstance(stamp, str) and len(stamp) > 10:
        try:
            moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
        except ValueError:
            pass
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _corrected(result: LabResult, correction, other: LabResult, terminology: Terminology) -> LabResult:
    """The result with its correction applied when the other analyte, measured the same day, is low."""
    if other.value >= correction.reference:
        return result
    value = result.value + correction.factor * (correction.reference - other.value)
    label = terminology.concept(other.concept).label
    return replace(result, corrected=value, corrected_by=f"{label} {other.shown_value} {other.shown_unit}")


def _lab_result(part: Mapping, code: tuple[str, int], when: date, at: float,
                terminology: Terminology) -> LabResult | UnreadLab | None:
    """The result converted to its analyte's canonical unit; UnreadLab when it holds a number in a unit that is
    missing or cannot be converted; None when it holds no number."""
    quantity = part.get("valueQuantity")
    if not isinstance(quantity, dict) or not isinstance(quantity.get("value"), (int, float)) \
            or isinstance(quantity.get("value"), bool):
        return None
    concept_id, code_rank = code
    spec = terminology.concept(concept_id).lab_spec
    unit = quantity.get("code") if terminology.system_name(quantity.get("system")) == "ucum" else None
    unit = unit if isinstance(unit, str) and unit.strip() else quantity.get("unit")
    if not isinstance(unit, str) or not unit.strip():
        log.info("a %s result has no unit; present, value unknown", concept_id)
        return UnreadLab(concept_id, when, "")
    canonical = _to_canonical(unit, spec, terminology)
    value = canonical(quantity["value"])
    if value is None:
        log.info("a %s result has a unit that cannot be converted; present, value unknown", concept_id)
        return UnreadLab(concept_id, when, unit[:40])
    ref = next((rr for rr in _list(part.get("referenceRange")) if isinstance(rr, dict)), None) or {}
    low = canonical(_obj(ref.get("low")).get("value"))
    high = canonical(_obj(ref.get("high")).get("value"))
    interpretation = next((_str(c.get("code")) for i in _list(part.get("interpretation")) for c in _codings(i)), None)
    shown = shown_unit(str(quantity.get("unit") or unit))
    return LabResult(concept=concept_id, value=value, low=low, high=high, interpretation=interpretation,
                     when=when, shown_value=_number(quantity["value"]), shown_unit=shown,
                     shown_range=_range_text(ref, shown), code_rank=code_rank, at=at)


def _to_canonical(unit: str, spec, terminology: Terminology):
    """The function taking a number in `unit` to the analyte's canonical unit (None when it cannot): the lab's
    alternate units (a line) first, then, if the lab accepts the unit, UCUM conversion."""
    spelling = terminology.units.spelling(unit)
    line = next((a for a in spec.alternate_units if spelling is not None
                 and terminology.units.spelling(a.unit) == spelling), None)

    def canonical(v: Any) -> float | None:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return None
        if line is not None:
            return line.scale * float(v) + line.offset
        if spelling is None or (spec.accepted_units and spelling not in spec.accepted_units):
            return None
        return terminology.units.convert(float(v), spelling, spec.canonical_unit, spec.molar_mass_g_per_mol,
                                         spec.valence)
    return canonical


def shown_unit(unit: str) -> str:
    """A UCUM unit as a clinician reads it: annotations without braces (mL/min/{1.73_m2} -> mL/min/1.73 m2)."""
    return _ANNOTATION.sub(lambda m: m.group(1).replace("_", " "), unit)


def _number(v: float) -> str:
    return str(v)  # as the lab reported it: 3.0 stays 3.0


def _range_text(ref: Mapping, unit: str) -> str:
    low, high = _obj(ref.get("low")).get("value"), _obj(ref.get("high")).get("value")
    if isinstance(low, (int, float)) and isinstance(high, (int, float)):
        return f"{_number(low)}–{_number(high)} {unit}"
    if isinstance(low, (int, float)):
        return f"≥ {_number(low)} {unit}"
    if isinstance(high, (int, float)):
        return f"≤ {_number(high)} {unit}"
    return ref.get("text") or ""


def _conditions(items, terminology: Terminology, today: date, born: date | None):
    limits = terminology.condition_max_age_days
    for r in items:
        if r.get("resourceType") != "Condition":
            continue
        clinical = next((_str(c.get("code")) for c in _codings(r.get("clinicalStatus"))), None)
        verification = next((_str(c.get("code")) for c in _codings(r.get("verificationStatus"))), None)
        if verification in _VOID_VERIFICATION:
            continue
        if clinical is not None and clinical not in _ACTIVE_CONDITION:
            continue
        if _abated(r, today, born):
            continue
        codings = _codings(r.get("code"))
        concepts = terminology.conditions(codings)
        if concepts and any(c in limits for c in concepts):
            onset = _onset(r, born)
            if onset is not None:
                concepts = frozenset(c for c in concepts if c not in limits or (today - onset).days <= limits[c])
        if concepts:
            display = _str(_obj(r.get("code")).get("text")) or next(
                (shown for c in codings if (shown := _str(c.get("display")))), "")
            yield ConditionFact(concepts, display, verification in (None, "confirmed"))


_AGE_UNIT_DAYS = {"a": 365.25, "mo": 30.4375, "wk": 7.0, "d": 1.0, "h": 1 / 24, "min": 1 / 1440}


def _at_age(age: Any, born: date | None) -> date | None:
    """The date a patient born on `born` reached an Age quantity, None when either is unknown."""
    age = _obj(age)
    value, unit = age.get("value"), _str(age.get("code")) or _str(age.get("unit"))
    days = _AGE_UNIT_DAYS.get(unit or "")
    if born is None or days is None or not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        return born + timedelta(days=value * days)
    except OverflowError:
        return None


def _onset(r: Mapping[str, Any], born: date | None) -> date | None:
    """The earliest of the dates a Condition gives for its start (onset or recorded), None when it gives none."""
    found = [d for d in (_date(r.get("onsetDateTime")), _date(_obj(r.get("onsetPeriod")).get("start")),
                         _at_age(r.get("onsetAge"), born), _date(r.get("recordedDate"))) if d is not None]
    return min(found) if found else None


def _abated(r: Mapping[str, Any], today: date, born: date | None) -> bool:
    """Whether the Condition records an end that is not in the future: an abatement date, period, age or range
    (an age with no birth date known, a range and a text end are taken as past), or abatementBoolean true."""
    if r.get("abatementBoolean") is True or _str(r.get("abatementString")) or isinstance(
            r.get("abatementRange"), dict):
        return True
    period = _obj(r.get("abatementPeriod"))
    ends = [_date(r.get("abatementDateTime")), _date(period.get("end") or period.get("start"))]
    if isinstance(r.get("abatementAge"), dict):
        ends.append(_at_age(r["abatementAge"], born) or today)
    return any(end is not None and end <= today for end in ends)


def flag_of(result: LabResult, fallback_low: float | None, fallback_high: float | None) -> str | None:
    """'low', 'high', 'abnormal' or None (normal): judged by the result's reference range, then its
    interpretation code, then the fallback range. An undirected 'abnormal' code takes its direction from the
    fallback range when it can."""
    if result.low is not None or result.high is not None:
        return _side(result.value, result.low, result.high)
    code = result.interpretation
    if code in _LOW_FLAGS:
        return "low"
    if code in _HIGH_FLAGS:
        return "high"
    if code == "N":
        return None
    side = _side(result.value, fallback_low, fallback_high)
    if code in _ABNORMAL_FLAGS:
        return side or "abnormal"
    return side


def _side(value: float, low: float | None, high: float | None) -> str | None:
    if low is not None and value < low:
        return "low"
    if high is not None and value > high:
        return "high"
    return None
