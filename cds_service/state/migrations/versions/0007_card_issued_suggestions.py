"""Cards issued remember the suggestions they offered (suggestion uuid -> the rule offering it, its kind and its
label), so the feedback report can say which suggestions were accepted, per rule: the feedback names accepted
suggestions by uuid only, and a group card carries suggestions of several rules.

Revision 0007, after 0006. Rows issued before it have none (NULL): their accepted suggestions are not counted."""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("card_issued") as batch:
        batch.add_column(sa.Column("suggestions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("card_issued") as batch:
        batch.drop_column("suggestions")
