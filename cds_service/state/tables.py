"""The tables of the service database, as SQLAlchemy ORM models; migrations/ creates and changes them."""
from __future__ import annotations

from sqlalchemy import BigInteger, Index, String
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
