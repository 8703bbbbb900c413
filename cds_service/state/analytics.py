"""Feedback read back, counted in the database: cards issued per rule, rule version and period (UTC week or month),
and the last outcome each card got. Everything is a GROUP BY on the server (the same statements on SQLite and
PostgreSQL, both have json_each; only the month of a timestamp is spelled per dialect), so a report over millions of
cards moves a few rows per rule and period."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import JSON, Connection, String, Text, and_, case, cast, column, func, null, select, true

from . import Database
from .tables import CardIssued, Feedback

DAY_S = 86_400
WEEK_S = 7 * DAY_S
_FIRST_MONDAY = date(1970, 1, 5)
REPORT_TIMEOUT_S = 120.0  # a report is an administrator's occasional read, not a hook call
_FIRST_MONDAY_S = 4 * DAY_S  # weeks are counted from it, so each starts on a Monday at 00:00 UTC


@dataclass(frozen=True, order=True)
class IssuedCount:
    """Cards that showed a rule (at a version), issued in one period: its Monday (YYYY-MM-DD) or month (YYYY-MM)."""

    rule: str
    version: int
    period: str
    cards: int


@dataclass(frozen=True)
class OutcomeCount:
    """Cards issued in one period that showed a rule and whose last feedback was this outcome and reason."""

    rule: str
    version: int
    period: str
    outcome: str  # accepted | overridden
    reason_code: str | None
    cards: int


@dataclass(frozen=True, order=True)
class SuggestionCount:
    """One suggestion a rule's cards offered (at a rule version), over the window: its kind (order-lab:<concept> or
    remove-draft) and label, the cards issued that carried it, and of those the cards whose accepted feedback named
    it (each card once, however many outcomes named it)."""

    rule: str
    version: int
    kind: str
    label: str
    offered: int
    accepted: int


@dataclass(frozen=True)
class Counts:
    """What the database holds for a report's window."""

    issued: tuple[IssuedCount, ...]
    outcomes: tuple[OutcomeCount, ...]
    feedback_records: int  # every outcome received on a card of the window (a card may get several)
    unknown_card_feedback: int  # outcomes received in the window on cards this service has no record of
    suggestions: tuple[SuggestionCount, ...] = ()  # cards issued before revision 0007 recorded none


def count_feedback(database: Database, since: int | None = None, until: int | None = None,
                   by: str = "week", timeout_s: float = REPORT_TIMEOUT_S) -> Counts:
    """The counts for cards issued at or after `since` and before `until` (epoch seconds; None: no bound), per
    `week` or `month`. On PostgreSQL the statements may run up to timeout_s each, not the hook path's
    SPASM_CDS_DATABASE_TIMEOUT_S."""
    window = []
    if since is not None:
        window.append(CardIssued.issued_at >= since)
    if until is not None:
        window.append(CardIssued.issued_at < until)
    # each card once per rule it shows (a group card shows several), with that rule's version if it was recorded
    rules = func.json_each(CardIssued.rules).table_valued("key", name="r")
    # None was stored as JSON null, which PostgreSQL's json_each refuses: read it as SQL NULL (no rows)
    stored_versions = case((cast(CardIssued.rule_versions, Text) == "null", null()), else_=CardIssued.rule_versions)
    versions = func.json_each(stored_versions).table_valued("key", "value", name="v")
    version = cast(versions.c.value, String).label("version")
    day = _period(database.dialect, by).label("period")

    def per_rule(*columns):
        return (select(rules.c.key.label("rule"), version, day, *columns)
                .select_from(CardIssued)
                .join(rules, true())
                .outerjoin(versions, versions.c.key == rules.c.key))

    issued = (per_rule(func.count().label("cards")).where(*window)
              .group_by(rules.c.key, version, day))
    # a card's last outcome is the one counted: a clinician who overrode, then accepted, accepted
    ranked = (select(Feedback.service_id, Feedback.card_uuid, Feedback.outcome, Feedback.reason_code,
                     func.row_number().over(partition_by=(Feedback.service_id, Feedback.card_uuid),
                                            order_by=(Feedback.outcome_at_ms.desc(), Feedback.id.desc()))
                     .label("n"))
              .subquery("last"))
    outcomes = (per_rule(ranked.c.outcome, ranked.c.reason_code, func.count().label("cards"))
                .join(ranked, and_(ranked.c.card_uuid == CardIssued.card_uuid,
                                   ranked.c.service_id == CardIssued.service_id, ranked.c.n == 1))
                .where(*window)
                .group_by(rules.c.key, version, day, ranked.c.outcome, ranked.c.reason_code))
    records = (select(func.count()).select_from(Feedback)
               .join(CardIssued, and_(CardIssued.card_uuid == Feedback.card_uuid,
                                      CardIssued.service_id == Feedback.service_id))
               .where(*window))
    received = []
    if since is not None:
        received.append(Feedback.received_at >= since)
    if until is not None:
        received.append(Feedback.received_at < until)
    unknown = select(func.count()).select_from(Feedback).where(~Feedback.card_known, *received)
    suggestions = _suggestion_counts(database.dialect, window)
    with _report_reading(database, timeout_s) as conn:
        suggestion_rows = conn.execute(suggestions).all()
        issued_rows = conn.execute(issued).all()
        outcome_rows = conn.execute(outcomes).all()
        feedback_records = conn.execute(records).scalar_one()
        unknown_cards = conn.execute(unknown).scalar_one()
    return Counts(
        tuple(sorted(IssuedCount(r.rule, _version(r.version), _label(r.period, by), int(r.cards))
                     for r in issued_rows)),
        tuple(sorted((OutcomeCount(r.rule, _version(r.version), _label(r.period, by), r.outcome, r.reason_code,
                                   int(r.cards)) for r in outcome_rows),
                     key=lambda o: (o.rule, o.version, o.period, o.outcome, o.reason_code or ""))),
        int(feedback_records), int(unknown_cards),
        tuple(sorted(SuggestionCount(r.rule, _version(r.version), r.kind, r.label, int(r.offered), int(r.accepted))
                     for r in suggestion_rows)))


def _suggestion_counts(dialect: str, window: list):
    """Per rule, version, kind and label of a suggestion: the cards that offered it, and those whose accepted
    feedback named its uuid. A suggestion is a key of card_issued.suggestions (json_each on both dialects); the
    uuids a feedback accepted are a JSON array, read by json_each on SQLite and json_array_elements_text on
    PostgreSQL (whose json_each reads objects only)."""
    stored = case((cast(CardIssued.suggestions, Text) == "null", null()), else_=CardIssued.suggestions)
    offered = func.json_each(stored).table_valued(column("key", String), column("value", JSON), name="s")
    accepted_ids = case((cast(Feedback.accepted_suggestions, Text) == "null", null()),
                        else_=Feedback.accepted_suggestions)
    elements = func.json_array_elements_text if dialect == "postgresql" else func.json_each
    named = elements(accepted_ids).table_valued("value", name="e")
    # each (card, suggestion) once, however many accepted outcomes named it
    accepted = (select(Feedback.service_id, Feedback.card_uuid, cast(named.c.value, String).label("suggestion"))
                .select_from(Feedback).join(named, true())
                .where(Feedback.outcome == "accepted").distinct().subquery("acc"))
    rule = offered.c.value["rule"].as_string().label("rule")
    kind = offered.c.value["kind"].as_string().label("kind")
    label = offered.c.value["label"].as_string().label("label")
    stored_versions = case((cast(CardIssued.rule_versions, Text) == "null", null()), else_=CardIssued.rule_versions)
    versions = func.json_each(stored_versions).table_valued("key", "value", name="v")
    version = cast(versions.c.value, String).label("version")
    return (select(rule, version, kind, label, func.count().label("offered"),
                   func.count(accepted.c.suggestion).label("accepted"))
            .select_from(CardIssued)
            .join(offered, true())
            .outerjoin(versions, versions.c.key == offered.c.value["rule"].as_string())
            .outerjoin(accepted, and_(accepted.c.service_id == CardIssued.service_id,
                                      accepted.c.card_uuid == CardIssued.card_uuid,
                                      accepted.c.suggestion == offered.c.key))
            .where(*window)
            .group_by(rule, version, kind, label))


@contextmanager
def _report_reading(database: Database, timeout_s: float) -> Iterator[Connection]:
    """A connection for the report's reads. On PostgreSQL, one read-only transaction (one snapshot for all four
    statements) whose statements may take timeout_s: the engine's statement_timeout is the hook path's."""
    if database.dialect != "postgresql":
        with database.reading() as conn:
            yield conn
        return
    with database.engine.connect() as conn, conn.begin():
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, int(timeout_s * 1000))}")
        yield conn


def _period(dialect: str, by: str):
    """The period of a card's issued_at, computed by the database: a week number (weeks since the first Monday of
    1970, integer arithmetic on both dialects) or the month as YYYY-MM (each dialect's own date function)."""
    if by == "week":
        return (CardIssued.issued_at - _FIRST_MONDAY_S) // WEEK_S
    if by != "month":
        raise ValueError(f"by: week or month, not {by!r}")
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", func.to_timestamp(CardIssued.issued_at)), "YYYY-MM")
    return func.strftime("%Y-%m", CardIssued.issued_at, "unixepoch")


def _label(value, by: str) -> str:
    """A week number as the date of its Monday; a month as it came."""
    return (_FIRST_MONDAY + timedelta(weeks=int(value))).isoformat() if by == "week" else str(value)


def _version(value: str | None) -> int:
    """A stored version (text of a JSON number); cards issued before revision 0005 carried none: version 1."""
    return int(value) if value is not None else 1
