"""PostgreSQL through SQLAlchemy after the Alembic migrations."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import delete, inspect, select, text
from sqlalchemy.exc import IntegrityError

from infra.clients import db_engine, db_sessions
from infra.db.models import Base, ModelVersion, WasteClass
from infra.settings import Settings


def test_schema_is_at_the_latest_migration(settings: Settings) -> None:
    from alembic.script import ScriptDirectory

    from infra.db.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config(settings)).get_current_head()
    with db_engine(settings).connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == head
    assert set(Base.metadata.tables) <= set(inspect(db_engine(settings)).get_table_names())


def test_write_and_read_through_the_orm(settings: Settings) -> None:
    Session = db_sessions(settings)
    version = f"test-{uuid.uuid4().hex[:8]}"
    with Session.begin() as session:
        session.add(ModelVersion(version=version, artefact_uri=f"s3://models/{version}/model.keras",
                                 classes=["glass", "metal"], tau_energy=-4.3, tau_softmax=0.7,
                                 metrics={"macro_f1": 0.9}))
    with Session() as session:
        row = session.scalars(select(ModelVersion).where(ModelVersion.version == version)).one()
        assert (row.classes, row.metrics["macro_f1"], row.status) == (["glass", "metal"], 0.9, "candidate")
        assert row.created_at is not None
    with Session.begin() as session:
        session.execute(delete(ModelVersion).where(ModelVersion.version == version))


def test_class_names_are_unique_ignoring_case(settings: Settings) -> None:
    Session = db_sessions(settings)
    name = f"Glass-{uuid.uuid4().hex[:6]}"
    with Session.begin() as session:
        session.add(WasteClass(name=name))
    with pytest.raises(IntegrityError), Session.begin() as session:
        session.add(WasteClass(name=name.upper()))
    with Session.begin() as session:
        session.execute(delete(WasteClass).where(WasteClass.name == name))
