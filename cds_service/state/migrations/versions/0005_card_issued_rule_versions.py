"""Cards issued remember the version of each rule they show (rule id -> version, from the rule's `version`), so
feedback can be read per version of a rule once its logic or text has changed.

Revision 0005, after 0004. Rows issued before it have none (NULL): they were version 1 of every rule, as no rule
carried a version before."""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("card_issued") as batch:
        batch.add_column(sa.Column("rule_versions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("card_issued") as batch:
        batch.drop_column("rule_versions")
