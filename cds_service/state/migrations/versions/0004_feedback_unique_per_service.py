"""Feedback is unique per service: the same card, outcome and moment sent to two services is two rows. Before,
feedback sent first to the wrong service made the right service's copy look like a repeat, and it was dropped.

Revision 0004, after 0003. Downgrading fails (and changes nothing) while two services hold the same outcome."""
from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot drop a constraint in place, so the table is copied (PostgreSQL alters it)
    with op.batch_alter_table("feedback") as batch:
        batch.drop_constraint("uq_feedback_outcome", type_="unique")
        batch.create_unique_constraint("uq_feedback_service_outcome",
                                       ["service_id", "card_uuid", "outcome", "outcome_at_ms"])


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.drop_constraint("uq_feedback_service_outcome", type_="unique")
        batch.create_unique_constraint("uq_feedback_outcome", ["card_uuid", "outcome", "outcome_at_ms"])
