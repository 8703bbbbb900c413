"""A MedicationRequest's dosageInstruction (or a MedicationStatement's dosage) -> the daily dose of each of its
ingredients, as a range in the mass unit of mappings/dosing.yaml, or nothing when it cannot be read.

Read only from structured data (dose quantity, timing, the product's strength in its RxNorm name); free-text sigs
are never parsed. Every number is bounded, so a hostile or broken dosage costs little and never raises."""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from ..terminology import Terminology, normalise_words

MAX_DOSAGES = 8  # more dosage lines than this in one order is not a simple dosage: not read
MAX_VALUE = 1e6  # a dose quantity above this (in any unit) is not believed
MAX_PER_DAY = 1440.0  # administrations a day (once a minute): above this the timing is not believed
MAX_NAME_CHARS = 300  # the part of a product name or text searched for a strength


@dataclass(frozen=True)
class DailyDose:
    """The daily dose of one ingredient, `low` to `high` (equal when exact), in the mass unit of dosing.yaml."""

    low: float
    high: float
    unit: str

    def text(self) -> str:
        """As a clinician reads it: '40 mg/day', or '20–40 mg/day' for a range."""
        value = f"{self.low:g}" if self.low == self.high else f"{self.low:g}–{self.high:g}"
        return f"{value} {self.unit}/day"


NO_DOSES: Mapping[str, DailyDose] = MappingProxyType({})
_Range = tuple[float, float]


def daily_doses(resource: Mapping[str, Any], concept: Any, ingredients: tuple[str, ...],
                terminology: Terminology, concepts: frozenset[str] | None = None) -> Mapping[str, DailyDose]:
    """ingredient -> its daily dose, for the ingredients whose dose can be read from the resource's dosage.
    `concept` is the medication CodeableConcept (its RxNorm product names give strengths). Given the drug's
    `concepts`, a drug no rule tests the dose of is not read (every medication of every call passes here)."""
    if concepts is not None and not concepts & terminology.dose_concepts:
        return NO_DOSES
    dosages = resource.get("dosageInstruction") if resource.get("resourceType") != "MedicationStatement" \
        else resource.get("dosage")
    if not isinstance(dosages, list) or not dosages or not ingredients:
        return NO_DOSES
    dosages = [d for d in dosages if isinstance(d, dict)]
    if not dosages or len(dosages) > MAX_DOSAGES:
        return NO_DOSES
    table = terminology.dosing
    read: list[tuple[int | None, tuple[str, _Range], _Range]] = []
    for d in dosages:
        dose, per_day = _dose(d, terminology), _per_day(d.get("timing"), terminology)
        if dose is None or per_day is None:
            return NO_DOSES  # one line that cannot be read leaves the day's total unknown
        read.append((_sequence(d), dose, per_day))
    names = _strength_texts(concept, terminology)
    out: dict[str, DailyDose] = {}
    for ingredient in ingredients:
        lines = []
        for seq, (kind, amount), per_day in read:
            mass = _mass_per_dose(kind, amount, ingredient, ingredients, names, terminology)
            if mass is None:
                break
            lines.append((seq, (mass[0] * per_day[0], mass[1] * per_day[1])))
        else:
            total = _combine(lines)
            if total is not None:
                out[ingredient] = DailyDose(total[0], total[1], table.mass_unit)
    return MappingProxyType(out) if out else NO_DOSES


def _sequence(dosage: Mapping[str, Any]) -> int | None:
    seq = dosage.get("sequence")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def _combine(lines: list[tuple[int | None, _Range]]) -> _Range | None:
    """The day's dose from its lines: lines of one sequence (or none) add up; lines of different sequences may
    follow one another or run together, so the day is at least the largest sequence and at most all of them."""
    groups: dict[int | None, list[float]] = {}
    for seq, (low, high) in lines:
        group = groups.setdefault(seq, [0.0, 0.0])
        group[0] += low
        group[1] += high
    low = max(g[0] for g in groups.values())
    high = sum(g[1] for g in groups.values())
    return (low, high) if _finite(low) and _finite(high) else None


def _finite(value: float) -> bool:
    return math.isfinite(value) and 0 < value <= MAX_VALUE * MAX_PER_DAY


def _number(value: Any) -> float | None:
    """A positive, finite, believable number, else None (JSON may carry anything, NaN included)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) and 0 < value <= MAX_VALUE else None


def _dose(dosage: Mapping[str, Any], terms: Terminology) -> tuple[str, _Range] | None:
    """(kind, amount range) of one administration: kind is mass (in the mass unit), volume (in the volume unit)
    or presentation (a count of tablets, capsules ...); None when the dose is missing or cannot be read."""
    rates = dosage.get("doseAndRate")
    first = next((r for r in rates if isinstance(r, dict)), None) if isinstance(rates, list) else None
    if first is None:
        return None
    if isinstance(first.get("doseQuantity"), dict):
        found = _quantity(first["doseQuantity"], terms)
        return (found[0], (found[1], found[1])) if found else None
    dose_range = first.get("doseRange")
    if isinstance(dose_range, dict) and isinstance(dose_range.get("low"), dict) \
            and isinstance(dose_range.get("high"), dict):
        low, high = _quantity(dose_range["low"], terms), _quantity(dose_range["high"], terms)
        if low and high and low[0] == high[0] and low[1] <= high[1]:
            return low[0], (low[1], high[1])
    return None


def _quantity(quantity: Mapping[str, Any], terms: Terminology) -> tuple[str, float] | None:
    """(kind, value) of a dose Quantity: a unit of presentation, else a mass or a volume in UCUM."""
    value = _number(quantity.get("value"))
    if value is None:
        return None
    table = terms.dosing
    system = terms.system_name(quantity.get("system"))
    code = quantity.get("code") if isinstance(quantity.get("code"), str) else None
    unit = quantity.get("unit") if isinstance(quantity.get("unit"), str) else None
    if system == "snomed" and code in table.presentation_snomed:
        return "presentation", value
    spelled = code if system == "ucum" and code else unit
    if not spelled or len(spelled) > 40:
        return None
    if spelled.strip() in table.presentation_ucum or spelled.strip().casefold() in table.presentation_words:
        return "presentation", value
    for kind, target in (("mass", table.mass_unit), ("volume", table.volume_unit)):
        converted = terms.units.convert(value, spelled, target)
        if converted is not None:
            return (kind, converted) if math.isfinite(converted) and converted > 0 else None
    return None


def _per_day(timing: Any, terms: Terminology) -> _Range | None:
    """Administrations per day (a range) from timing.repeat, else timing.code (code, then its text)."""
    if not isinstance(timing, dict):
        return None
    repeat = timing.get("repeat")
    if isinstance(repeat, dict) and ("frequency" in repeat or "period" in repeat):
        return _per_day_of_repeat(repeat, terms)
    code = timing.get("code")
    if not isinstance(code, dict):
        return None
    table = terms.dosing
    codings = code.get("coding")
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, dict) and coding.get("system") == table.timing_system:
            value = coding.get("code")
            per_day = table.per_day_by_code.get(value) if isinstance(value, str) else None
            if per_day is not None:
                return per_day, per_day
    text = code.get("text")
    if isinstance(text, str) and len(text) <= 60:
        per_day = table.per_day_by_text.get(normalise_words(text))
        if per_day is not None:
            return per_day, per_day
    return None


def _per_day_of_repeat(repeat: Mapping[str, Any], terms: Terminology) -> _Range | None:
    frequency = _number(repeat.get("frequency", 1))  # a period without a frequency: once per period
    frequency_max = _number(repeat.get("frequencyMax", frequency))
    period = _number(repeat.get("period"))
    period_max = _number(repeat.get("periodMax", period))
    unit = repeat.get("periodUnit")
    if frequency is None or frequency_max is None or period is None or period_max is None \
            or not isinstance(unit, str):
        return None
    day = terms.units.convert(1.0, unit, terms.dosing.day_unit)
    if not day:
        return None
    low, high = frequency / (period_max * day), frequency_max / (period * day)
    if not (math.isfinite(low) and math.isfinite(high)) or low > high or high > MAX_PER_DAY:
        return None
    return low, high


def _mass_per_dose(kind: str, amount: _Range, ingredient: str, ingredients: tuple[str, ...],
                   names: tuple[str, ...], terms: Terminology) -> _Range | None:
    """The ingredient's mass in one administration: a mass dose of a one-ingredient product as it is; a count of
    units times the strength per unit; a volume times the strength per volume."""
    if kind == "mass":
        return amount if len(ingredients) == 1 else None
    strength = _strength(ingredient, names, kind, terms)
    if strength is None:
        return None
    return amount[0] * strength, amount[1] * strength


def _strength_texts(concept: Any, terms: Terminology) -> tuple[str, ...]:
    """Where strengths are read: the RxNorm names of the product codes, else the medication's text and displays."""
    codings = [c for c in concept.get("coding") or () if isinstance(c, dict)] \
        if isinstance(concept, dict) and isinstance(concept.get("coding"), list) else []
    names = terms.product_names(codings)
    if names:
        return names
    texts: Iterable[Any] = [concept.get("text") if isinstance(concept, dict) else None] + \
        [c.get("display") for c in codings]
    return tuple(t[:MAX_NAME_CHARS] for t in texts if isinstance(t, str) and t)


def _strength(ingredient: str, names: tuple[str, ...], kind: str, terms: Terminology) -> float | None:
    """The ingredient's strength per unit of presentation (kind presentation) or per volume unit (kind volume),
    in the mass unit, from the first name that states it; None when none does."""
    table = terms.dosing
    pattern = _strength_pattern(ingredient, tuple(table.strength_units), tuple(table.strength_volume_units))
    for name in names:
        match = pattern.search(name[:MAX_NAME_CHARS].lower())
        if match is None:
            continue
        value, unit, per = _number(float(match.group(1))), match.group(2), match.group(3)
        if value is None or (kind == "volume") != (per is not None):
            return None  # a per-volume strength with a count dose, or the reverse: not read
        mass = terms.units.convert(value, table.strength_units[unit], table.mass_unit)
        if per is not None:
            volume = terms.units.convert(1.0, table.strength_volume_units[per], table.volume_unit)
            mass = mass / volume if mass is not None and volume else None
        return mass if mass is not None and math.isfinite(mass) and mass > 0 else None
    return None


@lru_cache(maxsize=1024)
def _strength_pattern(ingredient: str, units: tuple[str, ...], volumes: tuple[str, ...]) -> re.Pattern[str]:
    """The ingredient's name, up to three words of salt ("hydrochloride"), a number and a strength unit, perhaps
    per a volume unit, as RxNorm writes a product's name (lower-cased)."""
    unit = "|".join(map(re.escape, sorted(units, key=len, reverse=True))) or "(?!)"
    per = "|".join(map(re.escape, volumes)) or "(?!)"
    return re.compile(rf"(?<![a-z0-9]){re.escape(ingredient)}(?: [a-z]+){{0,3}}? (\d{{1,7}}(?:\.\d{{1,4}})?) "
                      rf"({unit})(?:/({per}))?(?![a-z0-9])")
