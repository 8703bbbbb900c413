"""The criterion kinds: the one registry of the rule language.

Each kind declares, in one `Kind` entry of `KINDS` at the end of this module, its YAML shape (a JSON Schema
fragment that `spasm-cds docs` writes into schemas/rule.schema.json), the kinds of chart data it reads (from which
the services' prefetch is derived), the placeholders it lends to card text, the function that decides it, its
checks beyond the schema, and how the docs say it. The loader, the linter, the engine and the generated docs all
read this registry; adding a kind is one entry here plus the cases of a rule that uses it (CONTRIBUTING.md).

A kind's function returns a Match: True, False, or None (unknown: the data it needs could not be had)."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..gather.dosage import DailyDose
from ..gather.facts import LabResult, MedicationUse, PatientFacts, flag_of, shown_unit
from ..knowledge.model import Concept, Criterion
from ..terminology import Terminology
from ..vocabulary import MEDICATION_DATA, ORDER_HOOKS, DataKind

if TYPE_CHECKING:
    from ..knowledge.model import Knowledge

@dataclass(frozen=True)
class Match:
    """Whether a criterion holds, the card fields it binds, and (missing-lab) which labs were missing."""

    holds: bool | None
    fields: dict[str, str] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    ingredients: tuple[str, ...] = ()  # medication and draft-order: the drug that matched
    drafts: tuple[str, ...] = ()  # draft-order: ids of the drafts that matched
    unread: tuple[str, ...] = ()  # lab and missing-lab: labs present in the window whose value is unknown


Bound = dict[str, Match]  # alias -> what an earlier criterion of the same rule matched


UNKNOWN = Match(None)
NO = Match(False)


def medication(c: Criterion, facts: PatientFacts, terms: Terminology, bound: Bound) -> Match:
    """Holds when a medication (and with `with_drafts` a draft order) rolls up to one of the concepts. Every drug
    that matches is named ("A and B"). A draft order this rule already speaks about is never its own partner, nor
    is the same combination product on the medication list (a renewal): a combination of a relaxant and an opioid
    does not interact with itself."""
    wanted = set(c.concepts)
    avoid = set(bound[c.different_from].ingredients) if c.different_from in bound else set()
    own_drafts = {d for m in bound.values() for d in m.drafts}  # the drafts this rule speaks about
    own_products = {frozenset(d.ingredients) for d in facts.drafts if d.id in own_drafts}
    undated = False
    # a combination product on the list that is the one being ordered (a renewal) is not a partner
    candidates = [m for m in facts.medications
                  if not (len(m.ingredients) > 1 and own_products == {frozenset(m.ingredients)})]
    if c.with_drafts:  # the draft being ordered is not its own partner (another draft of the rule may be)
        candidates += [MedicationUse(d.concepts, d.ingredients, d.display, facts.today, doses=d.doses)
                       for d in facts.drafts if not (own_drafts and own_drafts <= {d.id})]
    # a draft whose drug is unidentified may be any drug: a rule that asks about drafts cannot say "none"
    unidentified = c.with_drafts and any(not d.identified for d in facts.drafts)
    names: dict[str, None] = {}
    labels: dict[str, None] = {}
    ingredients: dict[str, None] = {}
    doses: dict[str, None] = {}
    dose_unknown = False  # a drug of the concept whose daily dose could not be read
    for med in candidates:
        hit = wanted & med.concepts
        if not hit or (avoid and avoid & set(med.ingredients)):
            continue
        if c.since_days is not None:
            if med.started is None:
                undated = True
                continue
            if med.started > facts.today - timedelta(days=c.since_days):
                continue
        concept = terms.concept(sorted(hit)[0])
        # of a combination product, name the ingredient(s) that made the match
        matched = tuple(i for i in med.ingredients if i in concept.ingredients) or med.ingredients
        if c.dose_above is not None:
            above = dose_above(med.doses, matched, c.dose_above)
            dose_unknown = dose_unknown or above is None
            if not above:
                continue
            doses[" and ".join(med.doses[i].text() for i in matched if i in med.doses)] = None
        names[", ".join(matched) or med.display] = None
        labels[concept.label] = None
        ingredients.update(dict.fromkeys(med.ingredients))
    if names:
        name, label = " and ".join(names), " and ".join(labels)
        fields = {"name": name, "label": label, "evidence": f"{name} ({label})"}
        if doses:
            fields.update(daily_dose=" and ".join(doses), evidence=f"{name} {' and '.join(doses)} ({label})")
        return Match(True, fields, ingredients=tuple(ingredients))
    return UNKNOWN if undated or unidentified or dose_unknown or facts.unknown & set(MEDICATION_DATA) else NO


def dose_above(doses: Mapping[str, DailyDose], ingredients: tuple[str, ...], threshold: float) -> bool | None:
    """Whether the daily dose of one of the ingredients is above the threshold: True when one's whole range is
    above it, False when every one's whole range is at or below it, None (unknown) otherwise."""
    known = [doses[i] for i in ingredients if i in doses]
    if any(d.low > threshold for d in known):
        return True
    if ingredients and len(known) == len(ingredients) and all(d.high <= threshold for d in known):
        return False
    return None


def draft_order(c: Criterion, facts: PatientFacts, terms: Terminology, bound: Bound) -> Match:
    """Holds when a selected draft rolls up to one of the concepts (with `daily_dose`: and its daily dose of the
    concept's ingredient is above the threshold; unknown when that dose cannot be read)."""
    wanted = set(c.concepts)
    hits = [d for d in facts.drafts if d.selected and wanted & d.concepts]
    dose_unknown = False
    if c.dose_above is not None:
        verdicts = [(d, dose_above(d.doses, _ingredients_of(terms, wanted, d.concepts, d.ingredients),
                                   c.dose_above)) for d in hits]
        hits = [d for d, above in verdicts if above]
        dose_unknown = any(above is None for _d, above in verdicts)
    if not hits:
        return UNKNOWN if dose_unknown or any(d.selected and not d.identified for d in facts.drafts) else NO
    first = hits[0]
    concept = terms.concept(sorted(wanted & first.concepts)[0])
    label = concept.label
    name = ", ".join(i for i in first.ingredients if i in concept.ingredients) or first.display
    fields = {"name": name, "label": label, "evidence": f"{name} ({label}), being ordered"}
    if c.dose_above is not None:
        dose = " and ".join(first.doses[i].text() for i in _ingredients_of(terms, wanted, first.concepts,
                                                                           first.ingredients) if i in first.doses)
        fields.update(daily_dose=dose, evidence=f"{name} {dose} ({label}), being ordered")
    return Match(True, fields, ingredients=first.ingredients, drafts=tuple(d.id for d in hits))


def _ingredients_of(terms: Terminology, wanted: set[str], concepts: frozenset[str],
                    ingredients: tuple[str, ...]) -> tuple[str, ...]:
    """The ingredients of a drug that made it match one of the wanted concepts (all of them if none is named)."""
    concept = terms.concept(sorted(wanted & concepts)[0])
    return tuple(i for i in ingredients if i in concept.ingredients) or ingredients


def condition(c: Criterion, facts: PatientFacts, terms: Terminology, bound: Bound) -> Match:
    wanted = set(c.concepts)
    for cond in facts.conditions:
        hit = wanted & cond.concepts
        if hit and (cond.confirmed or not c.confirmed):
            label = terms.concept(sorted(hit)[0]).label
            name = cond.display or label
            return Match(True, {"name": name, "label": label, "evidence": name})
    return UNKNOWN if DataKind.CONDITIONS in facts.unknown else NO


def lab(c: Criterion, facts: PatientFacts, terms: Terminology, bound: Bound) -> Match:
    if DataKind.OBSERVATIONS in facts.unknown:
        return UNKNOWN
    concept = terms.concept(c.concepts[0])
    latest = _latest_within(facts, concept.id, c.within_days)
    if latest is None:
        # a result whose unit cannot be read is present with an unknown value: never judged normal
        return Match(None, unread=(concept.id,)) if _unread_within(facts, concept.id, c.within_days) else NO
    spec = concept.lab_spec
    if c.corrected and latest.correction_unknown and spec.correction:
        return Match(None, unread=(spec.correction.by,))
    value = latest.corrected if c.corrected and latest.corrected is not None else latest.value
    # a corrected value is judged by the ranges only: the interpretation code described the measured value
    judged = replace(latest, value=value, interpretation=None) if value != latest.value else latest
    flag = flag_of(judged, spec.fallback_low, spec.fallback_high)
    holds = True
    if c.flag == "abnormal":
        holds = flag is not None
    elif c.flag:
        holds = flag == c.flag
    if c.below is not None:
        holds = holds and value < c.below
    if c.above is not None:
        holds = holds and value > c.above
    uln = latest.high if latest.high is not None else spec.fallback_high
    if c.times_uln is not None:
        holds = holds and uln is not None and value > c.times_uln * uln
    if not holds:
        return NO
    rng = latest.shown_range or _fallback_range(spec)
    corrected = (f"{latest.corrected:.1f} {shown_unit(spec.canonical_unit)} corrected for {latest.corrected_by}"
                 if latest.corrected is not None else "not corrected (no same-day low albumin)")
    evidence = f"{concept.label} {latest.shown_value} {latest.shown_unit} on {latest.when.isoformat()}"
    fields = {"name": concept.label, "value": latest.shown_value, "unit": latest.shown_unit,
              "date": latest.when.isoformat(), "range": rng or "not given", "flag": flag or "in range",
              "corrected": corrected, "times_uln": f"{value / uln:.0f}" if uln else "?",
              "evidence": f"{evidence} (reference {rng})" if rng else evidence}
    return Match(True, fields)


def missing_lab(c: Criterion, facts: PatientFacts, terms: Terminology, bound: Bound) -> Match:
    if DataKind.OBSERVATIONS in facts.unknown:
        return UNKNOWN
    missing: list[str] = []
    described: list[str] = []
    unread: list[str] = []
    for cid in c.concepts:
        if _latest_within(facts, cid, c.within_days) is not None:
            continue
        if _unread_within(facts, cid, c.within_days):
            unread.append(cid)  # done in the window, value unknown: not missing, never re-ordered
            continue
        missing.append(cid)
        label = terms.concept(cid).label
        last = facts.labs.get(cid) or facts.unread_labs.get(cid)
        described.append(f"{label} (last {last.when.isoformat()})" if last else f"{label} (none on file)")
    if not missing:
        return Match(False, unread=tuple(unread))
    labels = [terms.concept(cid).label for cid in missing]
    detail = "; ".join(described)
    return Match(True, {"labels": ", ".join(labels), "detail": detail, "evidence": detail}, tuple(missing),
                 unread=tuple(unread))


def age(c: Criterion, facts: PatientFacts, terms: Terminology, bound: Bound) -> Match:
    if facts.age is None:
        return UNKNOWN
    ok = (c.age_at_least is None or facts.age >= c.age_at_least) and (c.age_below is None or facts.age < c.age_below)
    return Match(True, {"age": str(facts.age), "evidence": f"age {facts.age}"}) if ok else NO


def sex(c: Criterion, facts: PatientFacts, terms: Terminology, bound: Bound) -> Match:
    if facts.sex is None:
        return UNKNOWN
    return Match(True, {"sex": facts.sex, "evidence": facts.sex}) if facts.sex == c.sex else NO


def any_of(c: Criterion, facts: PatientFacts, terms: Terminology, bound: Bound) -> Match:
    unknown = False
    unread: tuple[str, ...] = ()
    for sub in c.any_of:
        match = KINDS[sub.kind].evaluate(sub, facts, terms, bound)
        if match.holds:
            return Match(True, {"evidence": match.fields.get("evidence", "")}, match.missing, unread=match.unread)
        unknown = unknown or match.holds is None
        unread += match.unread
    return Match(None if unknown else False, unread=unread)


def _latest_within(facts: PatientFacts, concept_id: str, within_days: int | None) -> LabResult | None:
    newest = facts.labs.get(concept_id)
    if newest is None:
        return None
    if within_days is not None and newest.when < facts.today - timedelta(days=within_days):
        return None
    return newest


def _unread_within(facts: PatientFacts, concept_id: str, within_days: int | None) -> bool:
    """True when the analyte's newest result is within the window but its value could not be read."""
    unread = facts.unread_labs.get(concept_id)
    return unread is not None and (within_days is None or unread.when >= facts.today - timedelta(days=within_days))


def _fallback_range(spec) -> str:
    if spec.fallback_low is not None and spec.fallback_high is not None:
        return f"{spec.fallback_low:g}–{spec.fallback_high:g} {shown_unit(spec.canonical_unit)} (typical adult range)"
    return ""


# --- how the docs say each kind (the rule pages and docs/knowledge.md) ------------------------------------------

def _names(c: Criterion, knowledge: Knowledge, joiner: str = " or ") -> str:
    return joiner.join(knowledge.concepts[i].label for i in c.concepts if i in knowledge.concepts)


def _dose_words(c: Criterion) -> str:
    return " at a daily dose above the rule's threshold" if c.dose_above is not None else ""


def _describe_medication(c: Criterion, knowledge: Knowledge) -> str:
    since = f" for at least {c.since_days} days" if c.since_days else ""
    return f"an active {_names(c, knowledge)}{since}{_dose_words(c)}"


def _describe_draft_order(c: Criterion, knowledge: Knowledge) -> str:
    return f"an order for {_names(c, knowledge)} being placed{_dose_words(c)}"


def _describe_condition(c: Criterion, knowledge: Knowledge) -> str:
    return f"an active {_names(c, knowledge)} on the problem list"


def _describe_lab(c: Criterion, knowledge: Knowledge) -> str:
    spec = knowledge.concepts[c.concepts[0]].lab_spec
    parts = []
    if c.flag:
        parts.append({"low": "below", "high": "above", "abnormal": "outside"}[c.flag] + " its reference range")
    if c.below is not None:
        parts.append(f"below {c.below:g} {spec.canonical_unit}")
    if c.above is not None:
        parts.append(f"above {c.above:g} {spec.canonical_unit}")
    if c.times_uln is not None:
        parts.append(f"above {c.times_uln:g} times the upper limit of normal")
    value = "the albumin-corrected value of " if c.corrected else ""
    return f"{value}the latest {_names(c, knowledge)} within {c.within_days} days is " + " and ".join(parts)


def _describe_missing_lab(c: Criterion, knowledge: Knowledge) -> str:
    return f"no result within {c.within_days} days for at least one of: {_names(c, knowledge, ', ')}"


def _describe_age(c: Criterion, knowledge: Knowledge) -> str:
    bounds = [f"at least {c.age_at_least}" if c.age_at_least is not None else "",
              f"below {c.age_below}" if c.age_below is not None else ""]
    return "age " + " and ".join(b for b in bounds if b)


def _describe_sex(c: Criterion, knowledge: Knowledge) -> str:
    return f"recorded sex {c.sex}"


def _describe_any(c: Criterion, knowledge: Knowledge) -> str:
    return "any of: " + "; ".join(describe(sub, knowledge) for sub in c.any_of)


def describe(c: Criterion, knowledge: Knowledge) -> str:
    """One criterion in plain words."""
    return KINDS[c.kind].describe(c, knowledge)


# --- checks beyond the schema (the linter runs them on the rule's YAML) -----------------------------------------

def _check_medication(raw: Mapping[str, Any], concepts: Mapping[str, Concept], where: str,
                      rule: Mapping[str, Any]) -> list[str]:
    problems = []
    if "since_days" in raw and "within_days" in raw:
        problems.append(f"{where}: since_days and within_days do not go together")
    if raw.get("different_from") and raw["different_from"] not in {alias_of(c) for c in rule.get("include") or ()}:
        problems.append(f"{where}.different_from: {raw['different_from']!r} names no criterion of this rule")
    return problems


def _check_draft_order(raw: Mapping[str, Any], concepts: Mapping[str, Concept], where: str,
                       rule: Mapping[str, Any]) -> list[str]:
    if not set(rule["hooks"]) <= set(ORDER_HOOKS):
        return [f"{where}.draft-order: only {' and '.join(ORDER_HOOKS)} calls have draft orders"]
    return []


def _check_lab(raw: Mapping[str, Any], concepts: Mapping[str, Concept], where: str,
               rule: Mapping[str, Any]) -> list[str]:
    problems = []
    if not any(k in raw for k in ("flag", "below", "above", "times_uln")):
        problems.append(f"{where}: a lab criterion needs flag, below, above or times_uln")
    if raw.get("corrected") and raw["lab"] in concepts:
        spec = concepts[raw["lab"]].lab
        if spec is None or spec.correction is None:
            problems.append(f"{where}.corrected: lab {raw['lab']!r} has no correction in its mapping")
    return problems


# --- the YAML shapes (JSON Schema fragments; rule.schema.json's $defs hold id, ids, alias, quantity, daily_dose) --

_IDS = {"$ref": "#/$defs/ids"}
_ALIAS = {"$ref": "#/$defs/alias"}
_DAILY_DOSE = {"$ref": "#/$defs/daily_dose"}
_WITHIN_DAYS = {"type": "integer", "minimum": 1, "maximum": 3650}


def _shape(key: str, properties: dict[str, Any], also_required: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    """A criterion's object schema: the kind's key, its own fields, and if_unknown (which every kind accepts)."""
    head: dict[str, Any] = {"type": "object", "required": [key, *also_required], "additionalProperties": False}
    if "description" in extra:
        head["description"] = extra.pop("description")
    if_unknown = {"enum": ["ignore"], "description": "exclude only: when the data is unknown, treat the criterion as "
                  "not holding (e.g. an exclusion that only avoids a duplicate card)"}
    return {**head, "properties": {**properties, "if_unknown": if_unknown}, **extra}


# --- the registry -----------------------------------------------------------------------------------------------

Evaluator = Callable[[Criterion, PatientFacts, Terminology, Bound], Match]
Describer = Callable[[Criterion, "Knowledge"], str]
Checker = Callable[[Mapping[str, Any], Mapping[str, Concept], str, Mapping[str, Any]], list[str]]


@dataclass(frozen=True)
class Kind:
    """One kind of criterion: everything the loader, linter, engine, prefetch derivation and docs need of it."""

    name: str  # the YAML key that names the kind
    usage: str  # its YAML shape in brief (the table in cards/README.md)
    holds_when: str  # one line for cards/README.md
    schema: dict[str, Any]  # its member of rule.schema.json's criterion oneOf
    reads: tuple[DataKind, ...]  # the chart data it needs: the services that run it fetch these
    evaluate: Evaluator
    describe: Describer
    alias: str  # the default name of its placeholders ({alias.field})
    fields: frozenset[str]  # the placeholders it lends to card text
    concepts: str | None = None  # the concept domain its value names (medication, lab, condition)
    check: Checker | None = None  # problems beyond the schema, each naming the field
    per_draft: bool = False  # a rule with it in include is run once per selected draft order
    alias_shared: bool = False  # criteria of this kind may share their alias (their fields differ)


_NAMED = frozenset({"name", "label", "evidence"})
_DOSE_FIELDS = frozenset({"daily_dose"})  # added when the criterion has a daily_dose test

KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("medication", "`medication: <concept or list>`",
         "an active or on-hold MedicationRequest/MedicationStatement rolls up to one of the concepts (with "
         "`daily_dose`: and its daily dose is above the threshold; with `since_days`: in use that long; with "
         "`with_drafts`: orders being placed count too)",
         _shape("medication", {
             "medication": _IDS, "as": _ALIAS,
             "since_days": {"type": "integer", "minimum": 1, "description": "in use for at least this many days "
                            "(from authoredOn or the statement's start)"},
             "daily_dose": _DAILY_DOSE,
             "with_drafts": {"type": "boolean", "description": "also count medications being ordered in this "
                             "session (draftOrders)"},
             "different_from": {"$ref": "#/$defs/alias", "description": "ignore medications sharing an ingredient "
                                "with the drug bound to this alias (e.g. a renewal of the drug being ordered)"}}),
         MEDICATION_DATA, medication, _describe_medication, "medication", _NAMED, "medication", _check_medication),
    Kind("condition", "`condition: <concept or list>`",
         "an active (or recurrence/relapse), not refuted, not abated Condition matches, younger than the "
         "concept's `max_age_days` if it has one (with `confirmed: true`: provisional, differential or "
         "unconfirmed ones do not count)",
         _shape("condition", {
             "condition": _IDS,
             "confirmed": {"const": True, "description": "only a condition whose verificationStatus is confirmed "
                           "(or not given) counts: not provisional, differential or unconfirmed"},
             "as": _ALIAS}),
         (DataKind.CONDITIONS,), condition, _describe_condition, "condition", _NAMED, "condition"),
    Kind("lab", "`lab: <concept>` with `within_days` and `flag: low/high/abnormal`, `below`/`above: {value, unit}` "
         "and/or `times_uln`",
         "the latest result within the window meets it. `flag` uses the result's own reference range, then its "
         "interpretation code, then the fallback range in the lab's mapping",
         _shape("lab", {
             "lab": {"$ref": "#/$defs/id"}, "within_days": _WITHIN_DAYS,
             "flag": {"enum": ["low", "high", "abnormal"], "description": "outside the result's own reference "
                      "range, else its interpretation, else the fallback range"},
             "below": {"$ref": "#/$defs/quantity"}, "above": {"$ref": "#/$defs/quantity"}, "as": _ALIAS,
             "times_uln": {"type": "number", "exclusiveMinimum": 0, "description": "above this multiple of the "
                           "upper limit of normal (the result's own, else the fallback)"},
             "corrected": {"type": "boolean", "description": "compare the value corrected by the lab's correction "
                           "(e.g. for albumin) when it can be computed"}}, ("within_days",), minProperties=3),
         (DataKind.OBSERVATIONS,), lab, _describe_lab, "lab",
         frozenset({"name", "value", "unit", "date", "range", "flag", "corrected", "times_uln", "evidence"}),
         "lab", _check_lab),
    Kind("missing-lab", "`missing-lab: [labs]` with `within_days`",
         "at least one of the labs has no result in the window (a result whose value cannot be read counts as done)",
         _shape("missing-lab", {
             "missing-lab": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"$ref": "#/$defs/id"}},
             "within_days": _WITHIN_DAYS}, ("within_days",)),
         (DataKind.OBSERVATIONS,), missing_lab, _describe_missing_lab, "missing",
         frozenset({"labels", "detail", "evidence"}), "lab"),
    Kind("age", "`age: {at_least: 65}` / `age: {below: 18}`", "the patient's age is in range",
         _shape("age", {"age": {"type": "object", "additionalProperties": False, "minProperties": 1, "properties": {
             "at_least": {"type": "integer", "minimum": 0}, "below": {"type": "integer", "minimum": 1}}}}),
         (DataKind.PATIENT,), age, _describe_age, "patient", frozenset({"age", "evidence"}), alias_shared=True),
    Kind("sex", "`sex: female`", "the patient's recorded sex",
         _shape("sex", {"sex": {"enum": ["female", "male"]}}),
         (DataKind.PATIENT,), sex, _describe_sex, "patient", frozenset({"sex", "evidence"}), alias_shared=True),
    Kind("any", "`any: [criteria]` (two or more)", "one of the criteria holds (the first that does lends its evidence)",
         _shape("any", {"any": {"type": "array", "minItems": 2, "items": {"$ref": "#/$defs/criterion"}},
                        "as": _ALIAS}),
         (), any_of, _describe_any, "any", frozenset({"evidence"})),
    Kind("draft-order", "`draft-order: <concept or list>` (order hooks)",
         "a draft order the hook speaks about rolls up to one of the concepts (with `daily_dose`: and its daily "
         "dose is above the threshold); a rule with it runs once per selected draft",
         _shape("draft-order", {"draft-order": _IDS, "daily_dose": _DAILY_DOSE, "as": _ALIAS},
                description="a medication being ordered: order-select looks at the selected drafts, order-sign at "
                "all drafts"),
         (), draft_order, _describe_draft_order, "draft", _NAMED, "medication", _check_draft_order, per_draft=True),
)}


def kind_of(raw: Mapping[str, Any]) -> Kind:
    """The kind of a criterion as written in YAML (the one registry key among its fields)."""
    return next(k for name, k in KINDS.items() if name in raw)


def alias_of(raw: Mapping[str, Any]) -> str:
    """The name a criterion's placeholders go under: its `as`, else its kind's default."""
    return raw.get("as") or kind_of(raw).alias


def placeholder_fields(raw: Mapping[str, Any]) -> frozenset[str]:
    """The fields a criterion as written lends to card text (a daily_dose test adds daily_dose)."""
    return kind_of(raw).fields | (_DOSE_FIELDS if "daily_dose" in raw else frozenset())
