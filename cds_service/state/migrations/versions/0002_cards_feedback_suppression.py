"""Card memory and feedback: the cards issued, the feedback received, the suppressions it set, and the secret
that keys patient ids (made here, once, so every replica that shares the database shares it).

Revision 0002, after 0001."""
from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    secret = op.create_table(
        "service_secret",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
    )
    op.bulk_insert(secret, [{"name": "patient-key", "value": secrets.token_hex(32)}])
    op.create_table(
        "card_issued",
        sa.Column("card_uuid", sa.String(64), primary_key=True),
        sa.Column("service_id", sa.String(128), nullable=False),
        sa.Column("hook", sa.String(64), nullable=False),
        sa.Column("hook_instance", sa.String(200), nullable=False),
        sa.Column("card_key", sa.String(200), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("indicator", sa.String(16), nullable=False),
        sa.Column("patient_key", sa.String(64), nullable=False),
        sa.Column("context_key", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(128), nullable=True),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_card_issued_patient", "card_issued", ["patient_key", "issued_at"])
    op.create_index("ix_card_issued_context", "card_issued", ["context_key", "issued_at"])
    op.create_index("ix_card_issued_issued_at", "card_issued", ["issued_at"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("service_id", sa.String(128), nullable=False),
        sa.Column("card_uuid", sa.String(128), nullable=False),
        sa.Column("card_known", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("outcome_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("accepted_suggestions", sa.JSON(), nullable=True),
        sa.Column("reason_system", sa.String(512), nullable=True),
        sa.Column("reason_code", sa.String(128), nullable=True),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("card_uuid", "outcome", "outcome_at_ms", name="uq_feedback_outcome"),
    )
    op.create_table(
        "suppression",
        sa.Column("patient_key", sa.String(64), primary_key=True),
        sa.Column("card_key", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=True),
        sa.Column("until_at", sa.BigInteger(), nullable=True),
        sa.Column("set_at", sa.BigInteger(), nullable=False),
        sa.Column("card_uuid", sa.String(64), nullable=False),
        sa.Column("reason_code", sa.String(128), nullable=True),
    )
    op.create_index("ix_suppression_set_at", "suppression", ["set_at"])


def downgrade() -> None:
    op.drop_index("ix_suppression_set_at", table_name="suppression")
    op.drop_table("suppression")
    op.drop_table("feedback")
    for index in ("ix_card_issued_issued_at", "ix_card_issued_context", "ix_card_issued_patient"):
        op.drop_index(index, table_name="card_issued")
    op.drop_table("card_issued")
    op.drop_table("service_secret")
