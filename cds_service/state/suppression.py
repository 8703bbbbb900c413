"""The card memory: which cards were issued to whom, and what suppresses a card for a patient (snoozes, 'not
relevant', acknowledgements). recall() reads it before cards are chosen; record() writes the cards issued, in one
batched INSERT. Patients and hook contexts are keyed with an HMAC under a server secret, never stored raw unless
configured."""
from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Select, and_, bindparam, delete, func, literal, null, or_, select, union_all
from sqlalchemy.exc import SQLAlchemyError

from ..errors import MemoryUnavailable
from ..memory import IssuedCard, Recall
from . import Database, Every, is_busy
from .tables import CardIssued, ServiceSecret, Suppression

SECRET_NAME = "patient-key"
_PRUNE_EVERY_S = 600.0
_DAY_S = 86_400


def read_secret(database: Database, configured: str = "") -> bytes:
    """The HMAC secret: the configured one, else the one migration 0002 stored in the database."""
    if configured:
        return configured.encode("utf-8")
    with database.reading() as conn:
        value = conn.execute(select(ServiceSecret.value).where(ServiceSecret.name == SECRET_NAME)).scalar_one()
    database.engine.dispose()  # read in the gunicorn master: workers must open their own connections
    return value.encode("utf-8")


def keyed(secret: bytes, *parts: str) -> str:
    """The HMAC-SHA256 of the parts under the secret: what is stored instead of a patient id (and, with a user and
    an encounter, a hook context)."""
    return hmac.new(secret, "\x1f".join(parts).encode("utf-8"), hashlib.sha256).hexdigest()


_RETRY_S = 1.0  # after a database failure, the next try is at most this often


class CardMemory:
    """Reads and writes the card memory of one database; safe to share across threads."""

    def __init__(self, database: Database, secret: bytes, clock: Callable[[], float] = time.time,
                 store_patient_ids: bool = False, retention_days: int = 90,
                 monotonic: Callable[[], float] = time.monotonic):
        self.database = database
        self._monotonic = monotonic
        self._retry_at = 0.0  # after a failure (not a busy lock), calls skip the database until then
        self._secret = secret
        self._clock = clock
        self._store_patient_ids = store_patient_ids
        self._retention_s = retention_days * _DAY_S
        self._prune_schedule = Every(_PRUNE_EVERY_S)
        # built once per shape: constructing SQL expressions costs more per call than running them
        self._recall_statements = {(shown, at_select): _recall_statement(shown, at_select)
                                   for shown in (False, True) for at_select in (False, True)}
        self._insert = database.insert(CardIssued).on_conflict_do_nothing(index_elements=["card_uuid"])

    def compile_statements(self) -> None:
        """Run each statement a hook call runs (the four recalls; the insert of one card and of several) in a
        transaction that is rolled back, so that the engine holds them compiled: done in the preloading gunicorn
        master, every worker inherits them and its first call does not compile them. It waits for a write lock no
        longer than a hook call does (Database.brief_transaction). Then the master's connection is closed (workers
        open their own). A database fault or a busy lock here is left for the calls to meet."""
        row: dict[str, Any] = {
            "card_uuid": "warm-up", "service_id": "", "hook": "", "hook_instance": "", "card_key": "",
            "fingerprint": "", "rules": {}, "rule_versions": None, "suggestions": None, "indicator": "info",
            "patient_key": "", "context_key": "", "user_key": None, "patient_id": None, "issued_at": 0}
        params = {"patient_key": "", "user_key": "", "service_id": "", "since": 0, "hook_instance": "",
                  "context_key": "", "select_service": "", "select_since": 0}
        try:
            with self.database.reading() as conn:
                for statement in self._recall_statements.values():
                    conn.execute(statement, params).all()
            with self.database.brief_transaction() as conn:
                conn.execute(self._insert, [row])
                conn.execute(self._insert, [{**row, "card_uuid": "warm-up-2"}, row])
                transaction = conn.get_transaction()
                if transaction is not None:
                    transaction.rollback()
        except SQLAlchemyError:
            pass
        finally:
            self.database.engine.dispose()

    def now(self) -> int:
        """The memory's clock, in epoch seconds."""
        return int(self._clock())

    def key(self, *parts: str) -> str:
        """The keyed hash of the parts (a patient id; or patient, user and encounter for a hook context)."""
        return keyed(self._secret, *parts)

    def recall(self, patient_key: str, service_id: str, hook_instance: str, shown_since: int | None,
               select_service: str | None = None, context_key: str = "", select_since: int = 0,
               user_key: str = "") -> Recall:
        """Everything that may hold a card back for this patient and clinician (`user_key`: repeats and
        acknowledgements are the clinician's). Raises MemoryUnavailable if the database fails, or failed less
        than a second ago (so an unreachable database costs one call a second its timeout, not every call)."""
        self._backing_off()
        try:
            return self._recall(patient_key, service_id, hook_instance, shown_since, select_service, context_key,
                                select_since, user_key)
        except SQLAlchemyError as exc:
            raise self._failed(exc) from exc

    def _recall(self, patient_key: str, service_id: str, hook_instance: str, shown_since: int | None,
                select_service: str | None, context_key: str, select_since: int, user_key: str) -> Recall:
        statement = self._recall_statements[(shown_since is not None, bool(select_service))]
        params = {"patient_key": patient_key, "user_key": user_key, "service_id": service_id, "since": shown_since,
                  "hook_instance": hook_instance, "context_key": context_key, "select_service": select_service,
                  "select_since": select_since}
        with self.database.reading() as conn:
            rows = conn.execute(statement, params).all()
        suppressions = tuple(tuple(r[1:]) for r in rows if r[0] == "s")
        last_shown = {(r[1], r[3]): r[4] for r in rows if r[0] == "c"}
        at_select = frozenset((r[1], r[3]) for r in rows if r[0] == "a")
        return Recall(suppressions, last_shown, at_select)

    def record(self, cards: Iterable[IssuedCard], service_id: str, hook: str, hook_instance: str, patient_id: str,
               patient_key: str, context_key: str, user_key: str | None = None) -> int:
        """Remember the cards issued by one call, in one INSERT (a card uuid seen before is kept as it was);
        now and then, forget records older than the retention. On the hook path, so it waits only briefly for
        SQLite's write lock (Database.brief_transaction). Raises MemoryUnavailable if the database fails or is busy."""
        now = self.now()
        rows: list[dict[str, Any]] = [
            {"card_uuid": c.card_uuid, "service_id": service_id, "hook": hook, "hook_instance": hook_instance,
             "card_key": c.card_key, "fingerprint": c.fingerprint, "rules": c.rules,
             "rule_versions": c.rule_versions or None, "suggestions": c.suggestions or None,
             "indicator": c.indicator,
             "patient_key": patient_key, "context_key": context_key, "user_key": user_key,
             "patient_id": patient_id if self._store_patient_ids else None, "issued_at": now} for c in cards]
        if not rows:
            return 0
        self._backing_off()
        try:
            with self.database.brief_transaction() as conn:
                conn.execute(self._insert, rows)
                if self._prune_schedule.due(now):
                    self._prune(conn, now)
        except SQLAlchemyError as exc:
            raise self._failed(exc) from exc
        return len(rows)

    def _backing_off(self) -> None:
        if self._monotonic() < self._retry_at:
            raise MemoryUnavailable("database failed less than a second ago; not tried")

    def _failed(self, exc: SQLAlchemyError) -> MemoryUnavailable:
        """The error to raise for a database failure; a failure other than a busy write lock starts a back-off."""
        if is_busy(exc):
            return MemoryUnavailable("write lock busy", busy=True)
        self._retry_at = self._monotonic() + _RETRY_S
        return MemoryUnavailable(type(exc).__name__)

    def _prune(self, conn, now: int) -> None:
        old = now - self._retention_s
        conn.execute(delete(CardIssued).where(CardIssued.issued_at < old))
        # 'not relevant' lasts until the data changes, however long that takes, so it is never pruned
        conn.execute(delete(Suppression).where(or_(
            and_(Suppression.kind == "snooze", Suppression.until_at < now),
            and_(Suppression.kind == "acknowledged", Suppression.set_at < old))))


def _recall_statement(shown: bool, at_select: bool):
    """One SELECT (a UNION ALL) for everything recall reads, its rows tagged by source: 's' suppressions of the
    patient, 'c' when each (card key, fingerprint) was last shown to this clinician by this service, 'a' what the
    order-select
    service issued in this hook context. One statement, one round trip, one snapshot."""
    # the patient's snoozes and 'not relevant'; acknowledgements by this clinician (and, from before revision
    # 0003, those keyed by patient)
    parts: list[Select[*tuple[Any, ...]]] = [
        select(literal("s"), Suppression.card_key, Suppression.kind, Suppression.fingerprint,
               Suppression.until_at, Suppression.set_at)
        .where(or_(Suppression.patient_key == bindparam("patient_key"),
                   and_(Suppression.patient_key == bindparam("user_key"), Suppression.kind == "acknowledged")))]
    if shown:
        parts.append(select(literal("c"), CardIssued.card_key, null(), CardIssued.fingerprint,
                            func.max(CardIssued.issued_at), null())
                     .where(CardIssued.user_key == bindparam("user_key"),
                            CardIssued.service_id == bindparam("service_id"),
                            CardIssued.issued_at >= bindparam("since"),
                            CardIssued.hook_instance != bindparam("hook_instance"))
                     .group_by(CardIssued.card_key, CardIssued.fingerprint))
    if at_select:
        parts.append(select(literal("a"), CardIssued.card_key, null(), CardIssued.fingerprint, null(), null())
                     .where(CardIssued.context_key == bindparam("context_key"),
                            CardIssued.service_id == bindparam("select_service"),
                            CardIssued.issued_at >= bindparam("select_since")))
    return union_all(*parts) if len(parts) > 1 else parts[0]
