"""The alert-burden report: what a population of patients would see from the service, in a few figures.

Patients, patients with any card, cards per patient (median, 90th percentile, max), cards by indicator, and
findings by rule: a grouped card counts once for each rule on it, so the rule counts can exceed the card count.
Missing-data cards ("checks incomplete") are counted apart, as they belong to no rule. Lab results whose unit
could not be read are counted by lab and unit string (a local report: unit strings are not PHI)."""
from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .gather.facts import PatientFacts
from .render.cards import EXTENSION_KEY

if TYPE_CHECKING:
    from .population.patients import PatientRow

MISSING_DATA = "missingData"


@dataclass
class BurdenReport:
    """Running counts over the responses of many patients; add() one response at a time."""

    cards_per_patient: list[int] = field(default_factory=list)
    by_rule: Counter[str] = field(default_factory=Counter)
    by_indicator: Counter[str] = field(default_factory=Counter)
    missing_data_cards: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # file -> why it could not be evaluated
    unrecognised_codes: Counter[str] = field(default_factory=Counter)  # RxNorm code -> medications carrying it
    by_name: int = 0  # medications recognised by name only
    unread_units: Counter[tuple[str, str]] = field(default_factory=Counter)  # (lab, unit as sent) -> patients

    def add(self, response: Mapping[str, Any]) -> None:
        """Count one patient's response."""
        cards = response.get("cards") or []
        self.cards_per_patient.append(len(cards))
        for card in cards:
            self.by_indicator[card.get("indicator", "?")] += 1
            ours = (card.get("extension") or {}).get(EXTENSION_KEY) or {}
            if MISSING_DATA in ours:
                self.missing_data_cards += 1
            self.by_rule.update(ours.get("rules") or ())

    def observe(self, facts: PatientFacts) -> None:
        """Count one patient's labs whose newest result is in a unit that could not be read, and the drugs not
        recognised by code."""
        self.unread_units.update((u.concept, u.unit or "(no unit)") for u in facts.unread_labs.values())
        identity = facts.identity
        self.unrecognised_codes.update(identity.unrecognised_codes)
        self.by_name += identity.by_name

    def add_row(self, row: PatientRow) -> None:
        """Count one patient's row (population/patients.py): what add() and observe() count, or its failure."""
        if row.error is not None:
            self.fail(row.source, row.error)
            return
        self.cards_per_patient.append(row.cards)
        self.by_indicator.update(dict(row.indicators))
        self.missing_data_cards += row.missing_data_cards
        self.by_rule.update(row.rules)
        self.unread_units.update(row.unread_units)
        self.unrecognised_codes.update(row.unrecognised_codes)
        self.by_name += row.by_name

    def fail(self, name: str, why: str) -> None:
        """Note a file that gave no response."""
        self.failures[name] = why

    def figures(self) -> dict[str, Any]:
        """The report as plain data (what --json prints)."""
        counts = sorted(self.cards_per_patient)
        return {
            "patients": len(counts),
            "patients_with_cards": sum(1 for n in counts if n),
            "cards": sum(counts),
            "cards_per_patient": {"median": statistics.median(counts) if counts else 0,
                                  "p90": percentile(counts, 90), "max": max(counts, default=0)},
            "cards_by_indicator": dict(sorted(self.by_indicator.items())),
            "findings_by_rule": dict(sorted(self.by_rule.items(), key=lambda kv: (-kv[1], kv[0]))),
            "missing_data_cards": self.missing_data_cards,
            "unread_lab_units": [{"lab": lab, "unit": unit, "patients": n} for (lab, unit), n in
                                 sorted(self.unread_units.items(), key=lambda kv: (-kv[1], kv[0]))],
            "failed_files": dict(sorted(self.failures.items())),
            "medications_by_name_only": self.by_name,
            "unrecognised_rxnorm_codes": dict(sorted(self.unrecognised_codes.items(), key=lambda kv: (-kv[1], kv[0]))),
        }


def percentile(sorted_values: Iterable[int], pct: int) -> int:
    """Nearest-rank percentile: the smallest value with at least pct% of the values at or below it (0 if none)."""
    values = list(sorted_values)
    if not values:
        return 0
    return values[max(1, math.ceil(pct / 100 * len(values))) - 1]
