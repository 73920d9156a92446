"""audit items and embeddings in the review queue, scoring tallies, camera drift, label sites, energy references

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 11:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Review items are OOD flags (as before) or audit samples of in-distribution images.
    op.add_column("review_items", sa.Column("kind", sa.String(length=8), server_default="ood", nullable=False))
    op.create_check_constraint("ck_review_items_kind", "review_items", "kind IN ('ood', 'audit')")
    op.add_column("review_items", sa.Column("embedding", sa.JSON(), nullable=True))
    op.create_index("ix_review_items_kind_status", "review_items", ["kind", "status"])
    op.create_index("ix_review_items_site_camera", "review_items", ["site_id", "camera_id"])

    # Where a label's image was captured: the trainer balances sites by it.
    op.add_column("staged_labels", sa.Column("site_id", sa.String(length=64), nullable=True))
    op.add_column("dataset_entries", sa.Column("site_id", sa.String(length=64), nullable=True))

    # The in-distribution reference a model's drift is measured against, and the review rate it was calibrated for.
    op.add_column("model_versions", sa.Column("energy_quantiles", sa.JSON(), nullable=True))
    op.add_column("model_versions", sa.Column("review_rate", sa.Float(), nullable=True))

    op.create_table(
        "scoring_tallies",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("classified", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("ood", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("day", "site_id", "camera_id", "model_version"),
    )
    op.create_table(
        "monitor_offsets",
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("topic", "partition"),
    )
    op.create_table(
        "camera_drift",
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("drifting", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("images", sa.Integer(), server_default="0", nullable=False),
        sa.Column("ood_rate", sa.Float(), nullable=True),
        sa.Column("energy_ks", sa.Float(), nullable=True),
        sa.Column("median_energy_shift", sa.Float(), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("drifting_since", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("camera_id"),
    )


def downgrade() -> None:
    op.drop_table("camera_drift")
    op.drop_table("monitor_offsets")
    op.drop_table("scoring_tallies")
    op.drop_column("model_versions", "review_rate")
    op.drop_column("model_versions", "energy_quantiles")
    op.drop_column("dataset_entries", "site_id")
    op.drop_column("staged_labels", "site_id")
    op.drop_index("ix_review_items_site_camera", table_name="review_items")
    op.drop_index("ix_review_items_kind_status", table_name="review_items")
    op.drop_column("review_items", "embedding")
    op.drop_constraint("ck_review_items_kind", "review_items", type_="check")
    op.drop_column("review_items", "kind")
