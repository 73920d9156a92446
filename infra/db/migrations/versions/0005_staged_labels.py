"""the version builder's staged labels

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 05:25:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staged_labels",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=True),
        sa.Column("object_key", sa.String(length=1024), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("operator_id", sa.String(length=64), nullable=False),
        sa.Column("log_partition", sa.Integer(), nullable=False),
        sa.Column("log_offset", sa.Integer(), nullable=False),
        sa.Column("pending", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_index("ix_staged_labels_pending", "staged_labels", ["sha256"], postgresql_where=sa.text("pending"))


def downgrade() -> None:
    op.drop_index("ix_staged_labels_pending", table_name="staged_labels")
    op.drop_table("staged_labels")
