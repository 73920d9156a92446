"""SQLAlchemy models of the one PostgreSQL schema. Changes go through an Alembic migration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, Index, String, false, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class WasteClass(Base):
    """The class registry: every class a model may predict or an operator may assign."""

    __tablename__ = "waste_classes"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_by: Mapped[str] = mapped_column(String(64), default="system")

    __table_args__ = (Index("uq_waste_classes_name_ci", func.lower(name), unique=True),)


class ModelVersion(Base):
    """The model registry: one row per model artefact, with the thresholds that travel with it."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    artefact_uri: Mapped[str] = mapped_column(String(512))
    classes: Mapped[list[str]] = mapped_column(JSON)
    tau_energy: Mapped[float] = mapped_column(Float)
    tau_softmax: Mapped[float] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    has_serving_export: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    status: Mapped[str] = mapped_column(String(16), default="candidate")  # candidate | production | retired
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    promoted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # At most one model serves: the database refuses a second production row.
    __table_args__ = (Index("uq_model_versions_one_production", status, unique=True,
                            postgresql_where=status == "production"),)
