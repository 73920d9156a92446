"""model artefact digests, rejected label-outbox rows, replayed dead letters

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 04:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows from before digests were recorded have none; a worker refuses to serve such a row until re-registered.
    op.add_column("model_versions", sa.Column("artefact_digest", sa.String(length=64), nullable=True))
    op.add_column("label_outbox", sa.Column("rejected_reason", sa.Text(), nullable=True))
    op.create_table(
        "replayed_dead_letters",
        sa.Column("dead_letter_event_id", sa.String(length=36), nullable=False),
        sa.Column("original_topic", sa.String(length=255), nullable=False),
        sa.Column("original_event_id", sa.String(length=36), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("replayed_by", sa.String(length=64), nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("dead_letter_event_id"),
    )


def downgrade() -> None:
    op.drop_table("replayed_dead_letters")
    op.drop_column("label_outbox", "rejected_reason")
    op.drop_column("model_versions", "artefact_digest")
