"""Feedback at rest: each outcome is stored, in one transaction per request, before the service answers 200.
A new outcome on a known card also acknowledges it, and an override reason with an effect snoozes the card's rules
or holds them back until their data changes. The same card, outcome and timestamp again changes nothing."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import SQLAlchemyError

from ..errors import StoreUnavailable
from ..knowledge.model import OverrideEffect
from . import Database
from .tables import CardIssued, Feedback, Suppression

_DAY_S = 86_400


@dataclass(frozen=True)
class FeedbackItem:
    """One validated feedback entry; `effect` is set when the reason is one this service's cards offer."""

    card: str
    outcome: str  # accepted | overridden
    outcome_at_ms: int
    accepted_suggestions: tuple[str, ...] = ()
    reason_system: str | None = None
    reason_code: str | None = None
    user_comment: str | None = None
    effect: OverrideEffect | None = None


@dataclass(frozen=True)
class StoredFeedback:
    """What one request changed: outcomes newly stored, repeats ignored, and how many named unknown cards."""

    stored: int
    repeated: int
    unknown_cards: int


class FeedbackStore:
    """Writes feedback and the suppressions it sets; shared by every thread of a worker."""

    def __init__(self, database: Database, clock: Callable[[], float] = time.time):
        self.database = database
        self._clock = clock
        # built once: constructing SQL expressions costs more per request than running them
        self._cards = (select(CardIssued.card_uuid, CardIssued.card_key, CardIssued.fingerprint, CardIssued.rules,
                              CardIssued.patient_key, CardIssued.user_key)
                       .where(CardIssued.card_uuid.in_(bindparam("cards", expanding=True)),
                              CardIssued.service_id == bindparam("service_id")))
        self._insert = (database.insert(Feedback)
                        .on_conflict_do_nothing(index_elements=["service_id", "card_uuid", "outcome", "outcome_at_ms"])
                        .returning(Feedback.id))

    def store(self, service_id: str, items: Sequence[FeedbackItem]) -> StoredFeedback:
        """Store every item or none. Raises StoreUnavailable (503) when the database fails."""
        try:
            return self._store(service_id, items)
        except SQLAlchemyError as exc:
            raise StoreUnavailable("feedback could not be stored; nothing was kept, send it again "
                                   f"({type(exc).__name__})") from None

    def _store(self, service_id: str, items: Sequence[FeedbackItem]) -> StoredFeedback:
        now = int(self._clock())
        # a fixed order, so that two requests touching the same rows cannot deadlock on PostgreSQL
        items = sorted(items, key=lambda i: (i.card, i.outcome, i.outcome_at_ms))
        stored = repeated = unknown = 0
        with self.database.durable_transaction() as conn:
            cards = {row.card_uuid: row for row in conn.execute(
                self._cards, {"cards": sorted({i.card for i in items}), "service_id": service_id})}
            changes: dict[tuple[str, str, str], dict[str, Any]] = {}
            for item in items:
                card = cards.get(item.card)
                unknown += card is None
                # RETURNING tells a new row from a repeat on both dialects (rowcount does not, with psycopg)
                inserted = conn.execute(
                    self._insert,
                    {"service_id": service_id, "card_uuid": item.card, "card_known": card is not None,
                     "outcome": item.outcome, "outcome_at_ms": item.outcome_at_ms,
                     "accepted_suggestions": list(item.accepted_suggestions) or None,
                     "reason_system": item.reason_system, "reason_code": item.reason_code,
                     "user_comment": item.user_comment, "received_at": now}).first()
                if inserted is None:
                    repeated += 1
                    continue
                stored += 1
                if card is not None:
                    # a clock ahead of ours must not stretch a snooze
                    at = min(item.outcome_at_ms // 1000, now)
                    for change in _suppressions(card, item, at):
                        key = (change["patient_key"], change["card_key"], change["kind"])
                        if key not in changes or changes[key]["set_at"] <= change["set_at"]:
                            changes[key] = change
            for key in sorted(changes):
                self._upsert(conn, changes[key])
        return StoredFeedback(stored, repeated, unknown)

    def _upsert(self, conn, row: dict[str, Any]) -> None:
        """Insert the suppression, or replace one of the same patient, card and kind that was set no later."""
        statement = self.database.insert(Suppression).values(**row)
        conn.execute(statement.on_conflict_do_update(
            index_elements=["patient_key", "card_key", "kind"],
            set_={c: statement.excluded[c] for c in ("fingerprint", "until_at", "set_at", "card_uuid",
                                                      "reason_code")},
            where=Suppression.set_at <= statement.excluded.set_at))


def _suppressions(card, item: FeedbackItem, at: int) -> list[dict[str, Any]]:
    """What one new outcome on a known card sets: an acknowledgement of the card, and its reason's effect on
    every rule the card shows (a group card shows several)."""
    base = {"patient_key": card.patient_key, "set_at": at, "card_uuid": item.card, "reason_code": item.reason_code}
    # the acknowledgement is the clinician's (patient and user): a colleague who has not seen the card still does
    out = [{**base, "patient_key": card.user_key or card.patient_key, "card_key": card.card_key,
            "kind": "acknowledged", "fingerprint": card.fingerprint, "until_at": None}]
    effect = item.effect if item.outcome == "overridden" else None
    for rule_id, fingerprint in sorted((card.rules or {}).items()):
        if effect is not None and effect.kind == "snooze":
            out.append({**base, "card_key": rule_id, "kind": "snooze", "fingerprint": None,
                        "until_at": at + (effect.days or 0) * _DAY_S})
        elif effect is not None and effect.kind == "until-data-changes":
            out.append({**base, "card_key": rule_id, "kind": "until-data-changes", "fingerprint": fingerprint,
                        "until_at": None})
    return out
