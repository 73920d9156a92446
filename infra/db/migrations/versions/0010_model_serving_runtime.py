"""the serving runtime of each model version, chosen by measurement at registration, and its figures

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 15:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null (every row registered before): the workers' default chain, LiteRT when exported, else Keras.
    op.add_column("model_versions", sa.Column("serving_runtime", sa.String(length=32), nullable=True))
    op.add_column("model_versions", sa.Column("runtime_check", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("model_versions", "runtime_check")
    op.drop_column("model_versions", "serving_runtime")
