"""Label-log decisions staged per image, and versions built from them: parent + the staged delta.

Blocking (PostgreSQL, MinIO, Kafka acknowledgements): the Faust app calls these from its database thread.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from infra.db.dataset_versions import Change, VersionStore
from infra.db.models import DatasetVersion, StagedLabel
from infra.retry import is_transient
from schemas.events import Event, EventType, parse_timestamp
from stream_apps.builder.announcer import VersionAnnouncer
from stream_apps.builder.builder_metrics import UNRECORDED, BuilderMetrics
from stream_apps.builder.label_log import LabelLogReader, LogPosition

log = logging.getLogger(__name__)


def decided_label(event: Event) -> str | None:
    """The class a label-log event puts the image in; None leaves it out (discarded, or undone to no decision)."""
    return event.payload["label"] if event.event_type is EventType.LABEL_ASSIGNED else None


class VersionBuilder:
    def __init__(self, sessions: sessionmaker[Session], store: VersionStore, announcer: VersionAnnouncer,
                 label_log: LabelLogReader | None = None, snapshot_depth: int = 0,
                 metrics: BuilderMetrics = UNRECORDED) -> None:
        self._sessions = sessions
        self._store = store
        self._announcer = announcer
        self._label_log = label_log  # None: build from what is staged, without reading the log to its end
        self._snapshot_depth = snapshot_depth  # 0: never
        self._metrics = metrics

    def stage(self, event: Event, position: LogPosition) -> bool:
        """Stage the image's latest decision; False for a decision already seen (a redelivery)."""
        image = event.payload["image"]
        with self._sessions.begin() as session:
            row = session.get(StagedLabel, image["sha256"], with_for_update=True)
            if row is not None and row.log_partition == position.partition and row.log_offset >= position.offset:
                return False
            if row is None:
                row = StagedLabel(sha256=image["sha256"])
                session.add(row)
            row.label = decided_label(event)
            row.object_key = image["object_key"]
            row.event_id = event.event_id
            row.event_type = str(event.event_type)
            row.operator_id = event.payload["operator_id"]
            row.site_id = event.payload.get("site_id")  # only LabelAssigned carries it, and not for imports
            row.log_partition, row.log_offset = position.partition, position.offset
            row.pending = True
            row.decided_at = parse_timestamp(event.occurred_at)
        self._metrics.decision_staged()
        return True

    def _catch_up(self, label_log: LabelLogReader) -> None:
        """Stage what the label log holds beyond what is staged; a decision the database refuses for good is
        left out (the `stage` agent dead-letters it), a passing failure is raised."""
        for event, position in label_log.decisions_after(self.staged_upto()):
            try:
                self.stage(event, position)
            except Exception as error:
                if is_transient(error):
                    raise
                log.warning("label event %s not staged: %s", event.event_id, error)

    def _next_name(self, session: Session) -> str:
        number = (session.scalar(select(func.max(DatasetVersion.id))) or 0) + 1
        while session.scalar(select(DatasetVersion.id).where(DatasetVersion.name == f"v{number}")) is not None:
            number += 1
        return f"v{number}"

    def build(self, request: dict[str, Any]) -> DatasetVersion:
        """The version of a CreateVersionRequested: made once, announced (again, if a crash came between)."""
        started = time.monotonic()
        created = False
        version = self._store.by_request(request["request_id"])
        if version is None:
            if self._label_log is not None:
                self._catch_up(self._label_log)
            try:
                version = self.materialise(request)
                self._metrics.version_created()
                created = True
            except IntegrityError:  # another builder answered the same request first
                version = self._store.by_request(request["request_id"])
                if version is None:
                    raise
        if version.announced_at is None:
            self._announcer.announce(version.name)
        # Resolution reads every version down to a snapshot: cut long chains so it stays bounded.
        if self._snapshot_depth and self._store.chain_length(version.name) > self._snapshot_depth:
            self._store.snapshot(version.name)
        if created:  # built in one go; a build a passing failure interrupted is finished untimed by a retry
            self._metrics.version_built(time.monotonic() - started)
        return self._store.get(version.name)

    def materialise(self, request: dict[str, Any]) -> DatasetVersion:
        """The first half of `build`: version row, delta rows and the staging cleared, in one transaction
        (a crash leaves all or nothing); the announcement follows."""
        with self._sessions.begin() as session:
            staged = list(session.scalars(select(StagedLabel).where(StagedLabel.pending).with_for_update()))
            active = session.scalars(select(DatasetVersion).where(DatasetVersion.active)).one_or_none()
            parent = request.get("parent") or (active.name if active else None)
            version = self._store.create_in(
                session, request.get("name") or self._next_name(session), parent,
                [Change(row.sha256, row.label, row.object_key, site=row.site_id) for row in staged],
                created_by=request["requested_by"], notes=request.get("notes", ""),
                request_id=request["request_id"])
            if staged:
                session.execute(update(StagedLabel).where(StagedLabel.sha256.in_([r.sha256 for r in staged]))
                                .values(pending=False))
            # The newest version built on the active one becomes active: training follows the labels.
            if active is None or active.name == parent:
                if active is not None:
                    active.active = False
                    session.flush()
                version.active = True
            return version

    def staged_upto(self) -> dict[int, int]:
        """Per label-log partition, the offset of the last decision staged (pending or taken)."""
        with self._sessions() as session:
            query = select(StagedLabel.log_partition, func.max(StagedLabel.log_offset)).group_by(
                StagedLabel.log_partition)
            return {partition: offset for partition, offset in session.execute(query)}

    def announce_pending(self) -> list[str]:
        """Announce versions whose announcement a crash interrupted; their names."""
        names = [version.name for version in self._store.unannounced()]
        for name in names:
            self._announcer.announce(name)
        return names

    def last_version_at(self) -> datetime | None:
        with self._sessions() as session:
            return session.scalar(select(func.max(DatasetVersion.created_at)))
