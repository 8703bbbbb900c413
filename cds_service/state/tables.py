"""The tables of the service database, as SQLAlchemy ORM models; migrations/ creates and changes them."""
from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Metadata shared by every table (alembic compares against it)."""


class JtiSeen(Base):
    """A JWT id accepted once, remembered until its token expires so that it is never accepted again."""

    __tablename__ = "jti_seen"

    issuer: Mapped[str] = mapped_column(String(512), primary_key=True)
    jti: Mapped[str] = mapped_column(String(256), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, nullable=False)  # epoch seconds

    __table_args__ = (Index("ix_jti_seen_expires_at", "expires_at"),)


class ServiceSecret(Base):
    """A secret the service made for itself on first start (migration 0002), shared by every replica."""

    __tablename__ = "service_secret"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256), nullable=False)


class CardIssued(Base):
    """One card returned to an EHR: what feedback links to, and what de-duplication looks back on.

    Patients and hook contexts are stored as keyed hashes; the raw patient id only when configured."""

    __tablename__ = "card_issued"

    card_uuid: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(128), nullable=False)
    hook: Mapped[str] = mapped_column(String(64), nullable=False)
    hook_instance: Mapped[str] = mapped_column(String(200), nullable=False)
    card_key: Mapped[str] = mapped_column(String(200), nullable=False)  # rule id, group:<name> or missing-data
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)  # of the card's triggering data
    rules: Mapped[dict] = mapped_column(JSON, nullable=False)  # rule id -> fingerprint of its finding
    rule_versions: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # rule id -> version (0005)
    # suggestion uuid -> {rule, kind, label} of each suggestion the card offered (0007): no patient data
    suggestions: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    indicator: Mapped[str] = mapped_column(String(16), nullable=False)
    patient_key: Mapped[str] = mapped_column(String(64), nullable=False)
    context_key: Mapped[str] = mapped_column(String(64), nullable=False)  # patient, user and encounter
    user_key: Mapped[str | None] = mapped_column(String(64), nullable=True)  # patient and user (revision 0003)
    patient_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    issued_at: Mapped[int] = mapped_column(BigInteger, nullable=False)  # epoch seconds

    __table_args__ = (Index("ix_card_issued_patient", "patient_key", "issued_at"),
                      Index("ix_card_issued_context", "context_key", "issued_at"),
                      Index("ix_card_issued_user", "user_key", "issued_at"),
                      Index("ix_card_issued_issued_at", "issued_at"))


class Feedback(Base):
    """One CDS Hooks feedback outcome as received; unknown cards are kept and flagged (card_known false)."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    service_id: Mapped[str] = mapped_column(String(128), nullable=False)
    card_uuid: Mapped[str] = mapped_column(String(128), nullable=False)
    card_known: Mapped[bool] = mapped_column(Boolean, nullable=False)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    outcome_at_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)  # outcomeTimestamp, epoch ms
    accepted_suggestions: Mapped[list | None] = mapped_column(JSON, nullable=True)
    reason_system: Mapped[str | None] = mapped_column(String(512), nullable=True)
    reason_code: Mapped[str | None] = mapped_column(String(128), nullable=True)
    user_comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    received_at: Mapped[int] = mapped_column(BigInteger, nullable=False)  # epoch seconds

    # per service (revision 0004): the same outcome sent to two services is two records
    __table_args__ = (UniqueConstraint("service_id", "card_uuid", "outcome", "outcome_at_ms",
                                       name="uq_feedback_service_outcome"),)


class Suppression(Base):
    """What keeps a card from a patient: a snooze (until until_at), 'not relevant' (while the fingerprint is
    unchanged), or an acknowledgement (a card with feedback is not repeated within its window). Snoozes and 'not
    relevant' are the patient's (patient_key); an acknowledgement is the clinician's, keyed by patient and user
    (card_issued.user_key), so it never hides a card from a colleague who has not seen it."""

    __tablename__ = "suppression"

    patient_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    card_key: Mapped[str] = mapped_column(String(200), primary_key=True)  # rule id; acknowledged: as card_issued
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)  # snooze | until-data-changes | acknowledged
    fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    until_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # epoch seconds (snooze)
    set_at: Mapped[int] = mapped_column(BigInteger, nullable=False)  # epoch seconds
    card_uuid: Mapped[str] = mapped_column(String(64), nullable=False)  # the card whose feedback set it
    reason_code: Mapped[str | None] = mapped_column(String(128), nullable=True)

    __table_args__ = (Index("ix_suppression_set_at", "set_at"),)


class SuppressionAudit(Base):
    """One administrative clear of suppressions (`spasm-cds snooze clear`, revision 0006): who, when, why, what was
    asked and what went. Keys and counts only: never a patient id."""

    __tablename__ = "suppression_audit"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    at: Mapped[int] = mapped_column(BigInteger, nullable=False)  # epoch seconds
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    selector: Mapped[dict] = mapped_column(JSON, nullable=False)  # what was asked: patient_key, rule or id
    cleared_count: Mapped[int] = mapped_column(Integer, nullable=False)
    cleared: Mapped[list] = mapped_column(JSON, nullable=False)  # [{patient_key, card_key, kind, until_at}, ...]

    __table_args__ = (Index("ix_suppression_audit_at", "at"),)
