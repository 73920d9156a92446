"""operator roles and session epochs, admin audit trail, sign-in failures, camera tokens

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 07:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("operators", sa.Column("role", sa.String(length=16), server_default="labeller", nullable=False))
    op.add_column("operators", sa.Column("session_epoch", sa.Integer(), server_default="0", nullable=False))
    # Accounts from before roles could do everything: they keep doing it until an admin says otherwise.
    op.execute("UPDATE operators SET role = 'admin'")
    op.create_check_constraint("ck_operators_role", "operators", "role IN ('labeller', 'admin')")
    op.create_table(
        "admin_audit",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("operator", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_admin_audit_action_at", "admin_audit", ["action", "at"])
    op.create_index("ix_admin_audit_subject", "admin_audit", ["subject"])
    op.create_table(
        "sign_in_failures",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sign_in_failures_username", "sign_in_failures", ["username", "failed_at"])
    op.create_index("ix_sign_in_failures_client", "sign_in_failures", ["client", "failed_at"])
    op.create_table(
        "camera_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=64), server_default="cli", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_sha256"),
    )


def downgrade() -> None:
    op.drop_table("camera_tokens")
    op.drop_table("sign_in_failures")
    op.drop_table("admin_audit")
    op.drop_constraint("ck_operators_role", "operators")
    op.drop_column("operators", "session_epoch")
    op.drop_column("operators", "role")
