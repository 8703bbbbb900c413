"""What the card memory holds, as plain shapes free of SQL: screen.py reads a Recall and hands over IssuedCards;
state/suppression.py fills and stores them."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Recall:
    """What the memory holds for one call: suppressions of this patient, when each (card key, fingerprint) was
    last issued by this service, and what the order-select service issued in the same hook context."""

    suppressions: tuple[tuple[str, str, str | None, int | None, int], ...] = ()  # key, kind, fp, until, set_at
    last_shown: dict[tuple[str, str], int] = field(default_factory=dict)
    shown_at_select: frozenset[tuple[str, str]] = frozenset()

    def snoozed(self, rule_id: str, now: int) -> bool:
        """A snooze of this rule for this patient is running."""
        return any(k == rule_id and kind == "snooze" and (until or 0) > now
                   for k, kind, _fp, until, _set in self.suppressions)

    def not_relevant(self, rule_id: str, fingerprint: str) -> bool:
        """The rule was called not relevant for this patient and its triggering data has not changed since."""
        return any(k == rule_id and kind == "until-data-changes" and fp == fingerprint
                   for k, kind, fp, _until, _set in self.suppressions)

    def acknowledged_since(self, card_key: str, fingerprint: str, since: int) -> bool:
        """This card, with this data, got feedback at or after `since`."""
        return any(k == card_key and kind == "acknowledged" and fp == fingerprint and set_at >= since
                   for k, kind, fp, _until, set_at in self.suppressions)


@dataclass(frozen=True)
class IssuedCard:
    """One card about to be returned, as the memory records it."""

    card_uuid: str
    card_key: str
    fingerprint: str
    rules: dict[str, str]  # rule id -> finding fingerprint
    indicator: str
    rule_versions: dict[str, int] = field(default_factory=dict)  # rule id -> version (revision 0005)
    suggestions: dict[str, dict[str, str]] = field(default_factory=dict)  # uuid -> rule, kind, label (0007)
