"""Suppression administration (`spasm-cds snooze`): list what holds cards back, show one, clear some with an audit
row, and read the audit. A suppression is named by an id made of its keys, `<patient key prefix>/<rule>/<kind>`
(the patient key is already a keyed hash, so the id carries no patient data); any unambiguous prefix of the patient
key of at least 8 characters names it, as a short git hash does."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, insert, select, tuple_

from . import Database
from .tables import Suppression, SuppressionAudit

ADMIN_KINDS = ("snooze", "until-data-changes")  # set by override reasons; acknowledgements are a clinician's own
ALL_KINDS = (*ADMIN_KINDS, "acknowledged")
ID_KEY_CHARS = 12
MIN_KEY_CHARS = 8


class SelectionError(ValueError):
    """An id or selector that names nothing, or more than one thing when one is wanted."""


@dataclass(frozen=True)
class Held:
    """One suppression as an administrator sees it."""

    patient_key: str
    card_key: str
    kind: str
    set_at: int
    until_at: int | None
    reason_code: str | None
    card_uuid: str

    @property
    def id(self) -> str:
        return f"{self.patient_key[:ID_KEY_CHARS]}/{self.card_key}/{self.kind}"

    def active(self, now: int) -> bool:
        """A snooze holds until its end; 'not relevant' and acknowledgements until something else changes."""
        return self.kind != "snooze" or (self.until_at or 0) > now


@dataclass(frozen=True)
class AuditEntry:
    """One clear, as stored."""

    id: int
    at: int
    actor: str
    reason: str
    selector: dict[str, Any]
    cleared_count: int
    cleared: list[dict[str, Any]]


def parse_id(text: str) -> tuple[str, str, str]:
    """`<patient key prefix>/<rule>/<kind>` -> its parts; SelectionError when it is not one."""
    parts = text.strip().split("/")
    if len(parts) != 3 or not parts[1] or parts[2] not in ALL_KINDS:
        raise SelectionError(f"{text!r} is not a suppression id (<patient key prefix>/<rule>/<kind>, kind one of "
                             f"{', '.join(ALL_KINDS)}); see `spasm-cds snooze list`")
    prefix = parts[0].lower()
    if len(prefix) < MIN_KEY_CHARS or any(c not in "0123456789abcdef" for c in prefix):
        raise SelectionError(f"{text!r}: the patient key part must be at least {MIN_KEY_CHARS} hex characters")
    return prefix, parts[1], parts[2]


class SnoozeAdmin:
    """Lists, shows and clears the suppressions of one database; every clear is audited in the same transaction."""

    def __init__(self, database: Database, clock: Callable[[], float] = time.time):
        self.database = database
        self._clock = clock

    def find(self, patient_key: str | None = None, rule: str | None = None,
             kinds: Sequence[str] = ADMIN_KINDS, limit: int | None = None) -> list[Held]:
        """Suppressions of these kinds, for a patient key and/or a rule, newest first."""
        statement = self._select(kinds, patient_key, rule).order_by(Suppression.set_at.desc(), Suppression.card_key)
        if limit is not None:
            statement = statement.limit(limit)
        with self.database.reading() as conn:
            return [Held(*row) for row in conn.execute(statement)]

    def show(self, suppression_id: str) -> Held:
        """The one suppression an id names; SelectionError if none or several do."""
        prefix, card_key, kind = parse_id(suppression_id)
        statement = (self._select((kind,), None, card_key)
                     .where(Suppression.patient_key.startswith(prefix, autoescape=True)).limit(2))
        with self.database.reading() as conn:
            found = [Held(*row) for row in conn.execute(statement)]
        if not found:
            raise SelectionError(f"no suppression {suppression_id!r}; see `spasm-cds snooze list`")
        if len(found) > 1:
            raise SelectionError(f"{suppression_id!r} names more than one suppression; give more of the patient key")
        return found[0]

    def clear(self, actor: str, reason: str, patient_key: str | None = None, rule: str | None = None,
              suppression_id: str | None = None, kinds: Sequence[str] = ADMIN_KINDS) -> AuditEntry:
        """Delete the suppressions selected (an id; or a patient key and/or a rule, of these kinds) and write the
        audit row, in one transaction. A clear that finds nothing is audited too (cleared_count 0)."""
        if not reason.strip():
            raise SelectionError("a reason is required")
        if suppression_id and (patient_key or rule):
            raise SelectionError("give an id, or a patient and/or a rule, not both")
        if not (suppression_id or patient_key or rule):
            raise SelectionError("say what to clear: a patient key, a rule or an id")
        selector: dict[str, Any]
        if suppression_id:
            named = self.show(suppression_id)
            selector, statement = {"id": named.id}, self._select((named.kind,), named.patient_key, named.card_key)
        else:
            selector = {**{k: v for k, v in (("patient_key", patient_key), ("rule", rule)) if v}, "kinds": list(kinds)}
            statement = self._select(kinds, patient_key, rule)
        now = int(self._clock())
        with self.database.durable_transaction() as conn:
            found = [Held(*row) for row in conn.execute(
                statement.order_by(Suppression.patient_key, Suppression.card_key, Suppression.kind))]
            if found:
                conn.execute(delete(Suppression).where(tuple_(Suppression.patient_key, Suppression.card_key,
                                                              Suppression.kind).in_(
                    [(h.patient_key, h.card_key, h.kind) for h in found])))
            cleared = [{"patient_key": h.patient_key, "card_key": h.card_key, "kind": h.kind, "set_at": h.set_at,
                        "until_at": h.until_at, "reason_code": h.reason_code} for h in found]
            audit_id = conn.execute(insert(SuppressionAudit).returning(SuppressionAudit.id), {
                "at": now, "actor": actor, "reason": reason, "selector": selector, "cleared_count": len(cleared),
                "cleared": cleared}).scalar_one()
        return AuditEntry(int(audit_id), now, actor, reason, selector, len(cleared), cleared)

    def audit(self, limit: int = 50) -> list[AuditEntry]:
        """The newest clears first."""
        statement = (select(SuppressionAudit.id, SuppressionAudit.at, SuppressionAudit.actor, SuppressionAudit.reason,
                            SuppressionAudit.selector, SuppressionAudit.cleared_count, SuppressionAudit.cleared)
                     .order_by(SuppressionAudit.id.desc()).limit(limit))
        with self.database.reading() as conn:
            return [AuditEntry(*row) for row in conn.execute(statement)]

    @staticmethod
    def _select(kinds: Sequence[str], patient_key: str | None, rule: str | None) -> Select:
        conditions: list[ColumnElement[bool]] = [Suppression.kind.in_(list(kinds))]
        if patient_key:
            conditions.append(Suppression.patient_key == patient_key)
        if rule:
            # snoozes and 'not relevant' are keyed by rule; an acknowledgement by its card (a rule, or group:<name>)
            conditions.append(Suppression.card_key == rule)
        return select(Suppression.patient_key, Suppression.card_key, Suppression.kind, Suppression.set_at,
                      Suppression.until_at, Suppression.reason_code, Suppression.card_uuid).where(*conditions)
