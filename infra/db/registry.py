"""Reads of the model registry that several units need."""

from __future__ import annotations

from sqlalchemy import select

from infra.clients import db_sessions
from infra.db.models import ModelVersion
from infra.settings import Settings


def production_model(settings: Settings) -> ModelVersion | None:
    """The row of the model that serves now, if any."""
    with db_sessions(settings)() as session:
        return session.scalars(select(ModelVersion).where(ModelVersion.status == "production")).one_or_none()
