"""The class registry: names validated, compared without case, created at most once."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from infra.db.classes import add_class
from infra.db.models import WasteClass

MAX_CLASS_NAME = 64
_WHITESPACE = re.compile(r"\s+")


class ClassNameError(ValueError):
    """A class name that can never be accepted as it is."""


def normalise_class_name(raw: str) -> str:
    """Trim and collapse whitespace; refuse empty, over-long or control-character names."""
    name = _WHITESPACE.sub(" ", raw or "").strip()
    if not name:
        raise ClassNameError("a class name is required")
    if len(name) > MAX_CLASS_NAME:
        raise ClassNameError(f"a class name has at most {MAX_CLASS_NAME} characters, got {len(name)}")
    if any(unicodedata.category(char) in {"Cc", "Cf", "Cs", "Co", "Cn"} for char in name):
        raise ClassNameError("a class name may not contain control or unassigned characters")
    return name


def list_classes(session: Session) -> list[WasteClass]:
    """Every class in the order it was registered (the order of the digit shortcuts)."""
    return list(session.scalars(select(WasteClass).order_by(WasteClass.id)))


def find_class(session: Session, name: str) -> WasteClass | None:
    return session.scalars(select(WasteClass).where(func.lower(WasteClass.name) == name.lower())).one_or_none()


def ensure_class(session: Session, raw_name: str, created_by: str) -> tuple[WasteClass, bool]:
    """The registered class of that name (any case), created if missing; True when this call created it."""
    name = normalise_class_name(raw_name)
    inserted = add_class(session, name, created_by)
    found = find_class(session, name)
    assert found is not None  # inserted now or by someone else before
    return found, inserted


def register_classes(session: Session, names: Iterable[str], created_by: str) -> None:
    """Add the classes a model knows, so operators can pick them; existing names are left alone."""
    for name in names:
        ensure_class(session, name, created_by)
