"""Cards issued remember the clinician they were shown to (a keyed hash of patient and user), so that repeats and
acknowledgements count per clinician: a second clinician sees the card the first one saw.

Revision 0003, after 0002. Rows issued before it have no user key: they never count as shown to anyone."""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("card_issued") as batch:
        batch.add_column(sa.Column("user_key", sa.String(64), nullable=True))
    op.create_index("ix_card_issued_user", "card_issued", ["user_key", "issued_at"])


def downgrade() -> None:
    op.drop_index("ix_card_issued_user", table_name="card_issued")
    with op.batch_alter_table("card_issued") as batch:
        batch.drop_column("user_key")
