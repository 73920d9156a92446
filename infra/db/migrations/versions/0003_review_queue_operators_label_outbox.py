"""review queue, operators, label outbox, imported images

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 14:14:36.945761
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imported_images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("object_key", sa.String(length=1024), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("operator", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sha256"),
    )
    op.create_table(
        "label_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index(
        "ix_label_outbox_unpublished",
        "label_outbox",
        ["id"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "operators",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("uq_operators_username_ci", "operators", [sa.literal_column("lower(username)")], unique=True)
    op.create_table(
        "review_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action_id", sa.String(length=48), nullable=False),
        sa.Column("operator", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=True),
        sa.Column("new_class", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("undoes_action_id", sa.Integer(), nullable=True),
        sa.Column("undone", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["undoes_action_id"],
            ["review_actions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("action_id"),
    )
    op.create_index(
        "ix_review_actions_operator_recent", "review_actions", ["operator", sa.literal_column("id DESC")], unique=False
    )
    op.create_table(
        "review_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_event_id", sa.String(length=36), nullable=False),
        sa.Column("bucket", sa.String(length=63), nullable=False),
        sa.Column("object_key", sa.String(length=1024), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("predicted_class", sa.String(length=64), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("energy", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=False),
        sa.Column("probabilities", sa.JSON(), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("label", sa.String(length=64), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("projected_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_event_id"),
    )
    op.create_index(op.f("ix_review_items_camera_id"), "review_items", ["camera_id"], unique=False)
    op.create_index(op.f("ix_review_items_predicted_class"), "review_items", ["predicted_class"], unique=False)
    op.create_index(op.f("ix_review_items_sha256"), "review_items", ["sha256"], unique=False)
    op.create_index(
        "ix_review_items_status_captured",
        "review_items",
        ["status", sa.literal_column("captured_at DESC"), sa.literal_column("id DESC")],
        unique=False,
    )
    op.create_index(
        "ix_review_items_status_energy",
        "review_items",
        ["status", sa.literal_column("energy DESC"), sa.literal_column("id DESC")],
        unique=False,
    )
    op.create_table(
        "review_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("previous_status", sa.String(length=16), nullable=False),
        sa.Column("previous_label", sa.String(length=64), nullable=True),
        sa.Column("new_status", sa.String(length=16), nullable=False),
        sa.Column("new_label", sa.String(length=64), nullable=True),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["action_id"],
            ["review_actions.id"],
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["review_items.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_review_decisions_action_id"), "review_decisions", ["action_id"], unique=False)
    op.create_index(op.f("ix_review_decisions_item_id"), "review_decisions", ["item_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_review_decisions_item_id"), table_name="review_decisions")
    op.drop_index(op.f("ix_review_decisions_action_id"), table_name="review_decisions")
    op.drop_table("review_decisions")
    op.drop_index("ix_review_items_status_energy", table_name="review_items")
    op.drop_index("ix_review_items_status_captured", table_name="review_items")
    op.drop_index(op.f("ix_review_items_sha256"), table_name="review_items")
    op.drop_index(op.f("ix_review_items_predicted_class"), table_name="review_items")
    op.drop_index(op.f("ix_review_items_camera_id"), table_name="review_items")
    op.drop_table("review_items")
    op.drop_index("ix_review_actions_operator_recent", table_name="review_actions")
    op.drop_table("review_actions")
    op.drop_index("uq_operators_username_ci", table_name="operators")
    op.drop_table("operators")
    op.drop_index(
        "ix_label_outbox_unpublished", table_name="label_outbox", postgresql_where=sa.text("published_at IS NULL")
    )
    op.drop_table("label_outbox")
    op.drop_table("imported_images")
