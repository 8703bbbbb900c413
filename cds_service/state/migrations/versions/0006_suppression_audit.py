"""An audit trail for suppressions cleared by an administrator (`spasm-cds snooze clear`): one row per clear, with
who, when, the reason given, what was asked and the keys of what was deleted (no patient id).

Revision 0006, after 0005. A new table: rows already stored are not touched."""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "suppression_audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("selector", sa.JSON(), nullable=False),
        sa.Column("cleared_count", sa.Integer(), nullable=False),
        sa.Column("cleared", sa.JSON(), nullable=False))
    op.create_index("ix_suppression_audit_at", "suppression_audit", ["at"])


def downgrade() -> None:
    op.drop_index("ix_suppression_audit_at", table_name="suppression_audit")
    op.drop_table("suppression_audit")
