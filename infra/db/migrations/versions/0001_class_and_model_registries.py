"""class and model registries

Revision ID: 0001
Revises:
Create Date: 2026-11-23 11:37:49.486284
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("artefact_uri", sa.String(length=512), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=False),
        sa.Column("tau_energy", sa.Float(), nullable=False),
        sa.Column("tau_softmax", sa.Float(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("version"),
    )
    op.create_table(
        "waste_classes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_waste_classes_name_ci", "waste_classes", [sa.literal_column("lower(name)")], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_waste_classes_name_ci", table_name="waste_classes")
    op.drop_table("waste_classes")
    op.drop_table("model_versions")
