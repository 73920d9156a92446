"""model serving export flag; at most one production model

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:01:52.762276
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "model_versions", sa.Column("has_serving_export", sa.Boolean(), server_default=sa.text("false"), nullable=False)
    )
    op.create_index(
        "uq_model_versions_one_production",
        "model_versions",
        ["status"],
        unique=True,
        postgresql_where=sa.text("status = 'production'"),
    )


def downgrade() -> None:
    op.drop_index("uq_model_versions_one_production", table_name="model_versions")
    op.drop_column("model_versions", "has_serving_export")
