"""Writes to the class registry that several units make: the review UI, the version builder."""

from __future__ import annotations

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from infra.db.models import WasteClass


def add_class(session: Session, name: str, created_by: str) -> bool:
    """Register `name` unless a class of that name (in any case) exists; True when this call added it."""
    inserted = session.execute(
        insert(WasteClass).values(name=name, created_by=created_by[:64])
        .on_conflict_do_nothing(index_elements=[func.lower(WasteClass.name)])
        .returning(WasteClass.id)
    ).scalar_one_or_none()
    return inserted is not None
