"""The closed vocabulary of criterion kinds: one small function each, returning a Match.

A Match holds True, False, or None (unknown: the data it needs could not be had)."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta

from ..gather.dosage import DailyDose
from ..gather.facts import LabResult, MedicationUse, PatientFacts, flag_of, shown_unit
from ..knowledge.model import Criterion
from ..terminology import Terminology

MEDICATION_DATA = ("medication-requests", "medication-statements")


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
    return UNKNOWN if "conditions" in facts.unknown else NO


def lab(c: Criterion, facts: PatientFacts, terms: Terminology, bound: Bound) -> Match:
    if "observations" in facts.unknown:
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
    if "observations" in facts.unknown:
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
        match = KINDS[sub.kind](sub, facts, terms, bound)
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


KINDS: dict[str, Callable[[Criterion, PatientFacts, Terminology, Bound], Match]] = {
    "medication": medication, "condition": condition, "lab": lab, "missing-lab": missing_lab,
    "age": age, "sex": sex, "any": any_of, "draft-order": draft_order,
}
