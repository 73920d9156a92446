"""Import labelled images (files or folders with one class): MinIO objects plus label events, like any label.

Imported bytes go to the dataset store (`images/<sha256>.<ext>`), which retention never empties while a row
references them.

Importing the same bytes with the same class again has no effect; with another class it relabels them.
The bytes are stored first, so an event never points at a missing object; a storage failure leaves the
file unimported and reported, to be imported again.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from minio import Minio
from minio.error import MinioException
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker
from urllib3.exceptions import HTTPError as Urllib3Error

from infra.db import audit
from infra.db.models import ImportedImage
from infra.images import ImageRefused, check_image, store_image
from infra.settings import Settings
from review_ui.class_registry import ClassNameError, ensure_class, find_class, normalise_class_name
from review_ui.label_events import LabelContext, label_assigned
from review_ui.outbox import enqueue
from schemas.image_keys import DATASET_STORE

MAX_FILE_NAME = 255


@dataclass(frozen=True)
class ImportOutcome:
    file_name: str
    status: str  # imported | relabelled | already imported | refused | failed
    detail: str = ""
    sha256: str | None = None
    event_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in {"imported", "relabelled", "already imported"}


class ImportRefused(ValueError):
    """The import as a whole cannot start (unknown class, bad name); nothing was stored."""


def files_under(paths: Iterable[Path]) -> Iterator[Path]:
    """Every regular, non-hidden file of these files and folders (folders recursively, sorted)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file()
                              and not any(part.startswith(".") for part in p.relative_to(path).parts))
        elif path.is_file():
            yield path
        else:
            raise ImportRefused(f"{path}: no such file or folder")


class LabelledImporter:
    def __init__(self, settings: Settings, storage: Minio, sessions: sessionmaker) -> None:
        self._settings = settings
        self._storage = storage
        self._sessions = sessions

    def resolve_class(self, raw_label: str, create_class: bool, operator: str) -> tuple[str, bool]:
        """The registered name of the import's class, created first when asked; raises ImportRefused."""
        try:
            name = normalise_class_name(raw_label)
        except ClassNameError as error:
            raise ImportRefused(str(error)) from None
        with self._sessions() as session, session.begin():
            if create_class:
                found, created = ensure_class(session, name, operator)
                return found.name, created
            found = find_class(session, name)
        if found is None:
            raise ImportRefused(f"no class named {name!r}; pick an existing class or create it")
        return found.name, False

    def import_one(self, file_name: str, data: bytes, label: str, operator: str, *, new_class: bool) -> ImportOutcome:
        file_name = file_name[-MAX_FILE_NAME:]
        try:
            content_type = check_image(data, self._settings.max_image_bytes, self._settings.max_image_pixels)
        except ImageRefused as error:
            return ImportOutcome(file_name, "refused", str(error))
        try:
            stored = store_image(self._storage, self._settings.bucket_images, DATASET_STORE, data, content_type)
        except (MinioException, Urllib3Error) as error:
            sha256 = hashlib.sha256(data).hexdigest()
            return ImportOutcome(file_name, "failed", f"image store unavailable, nothing imported: {error}", sha256)
        sha256, key = stored.sha256, stored.key
        with self._sessions() as session, session.begin():
            row = session.scalars(select(ImportedImage).where(ImportedImage.sha256 == sha256)
                                  .with_for_update()).one_or_none()
            if row is not None and row.label.lower() == label.lower():
                return ImportOutcome(file_name, "already imported", f"as {row.label}", sha256, row.event_id)
            action_key = f"import/{sha256[:16]}/{uuid.uuid4().hex[:12]}"
            context = LabelContext(self._settings.bucket_images, key, sha256)
            event = label_assigned(context, label, operator, action_key, new_class=new_class)
            enqueue(session, event)
            status = "relabelled" if row is not None else "imported"
            if row is None:
                session.add(ImportedImage(sha256=sha256, object_key=key, file_name=file_name, label=label,
                                          operator=operator, event_id=event.event_id))
            else:
                row.label, row.operator, row.event_id, row.file_name = label, operator, event.event_id, file_name
        return ImportOutcome(file_name, status, f"as {label}", sha256, event.event_id)

    def import_files(self, files: Iterable[tuple[str, bytes]], raw_label: str, operator: str, *,
                     create_class: bool = False, audited_as: str | None = None) -> list[ImportOutcome]:
        """Import each file as `label`, given by `operator`; one audit row (default `operator`) counts the import."""
        label, created = self.resolve_class(raw_label, create_class, operator)
        announce_class = created
        outcomes = []
        for name, data in files:
            outcome = self.import_one(name, data, label, operator, new_class=announce_class)
            # Only the first label event of an import says "this import created the class".
            announce_class = announce_class and outcome.status not in {"imported", "relabelled"}
            outcomes.append(outcome)
        self._audit(outcomes, label, operator, audited_as or operator, class_created=created)
        return outcomes

    def _audit(self, outcomes: list[ImportOutcome], label: str, operator: str, audited_as: str, *,
               class_created: bool) -> None:
        """One row per import, after its files (each file commits apart, so a long import is not one transaction)."""
        counts = Counter(outcome.status for outcome in outcomes)
        if not (counts["imported"] or counts["relabelled"] or class_created):
            return  # nothing changed
        with self._sessions.begin() as session:
            audit.record(session, audited_as, "import", label,
                         {"files": len(outcomes), **dict(counts), "labels_by": operator,
                          "class_created": class_created})
