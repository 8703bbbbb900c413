"""The jti_seen table: JWT ids already accepted, kept until their token expires.

Revision 0001, the first."""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jti_seen",
        sa.Column("issuer", sa.String(512), primary_key=True),
        sa.Column("jti", sa.String(256), primary_key=True),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_jti_seen_expires_at", "jti_seen", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_jti_seen_expires_at", table_name="jti_seen")
    op.drop_table("jti_seen")
