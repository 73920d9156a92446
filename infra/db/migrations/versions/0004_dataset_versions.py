"""delta dataset versions and their entries

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 05:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("snapshot", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("notes", sa.Text(), server_default="", nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("classes_introduced", sa.JSON(), nullable=False),
        sa.Column("manifest_uri", sa.String(length=512), nullable=True),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=True),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["parent_id"], ["dataset_versions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("request_id"),
    )
    op.create_index("uq_dataset_versions_one_active", "dataset_versions", ["active"], unique=True,
                    postgresql_where=sa.text("active"))
    op.create_table(
        "dataset_entries",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("present", sa.Boolean(), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=True),
        sa.Column("split", sa.String(length=8), nullable=True),
        sa.Column("object_key", sa.String(length=1024), nullable=True),
        sa.ForeignKeyConstraint(["version_id"], ["dataset_versions.id"]),
        sa.PrimaryKeyConstraint("version_id", "sha256"),
    )
    op.create_index("ix_dataset_entries_sha256_version", "dataset_entries", ["sha256", "version_id"])


def downgrade() -> None:
    op.drop_index("ix_dataset_entries_sha256_version", table_name="dataset_entries")
    op.drop_table("dataset_entries")
    op.drop_index("uq_dataset_versions_one_active", table_name="dataset_versions")
    op.drop_table("dataset_versions")
