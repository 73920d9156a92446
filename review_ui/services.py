"""What the UI process runs besides the web app: stores, the outbox drainer, the count reader, the projection and
the scoring monitor."""

from __future__ import annotations

from dataclasses import dataclass

from minio import Minio
from sqlalchemy.orm import sessionmaker

from infra.clients import db_sessions, minio_client
from infra.retry import Degradation
from infra.settings import Settings
from review_ui.accuracy_publisher import AccuracyPublisher
from review_ui.counts_view import CountsView
from review_ui.imports import LabelledImporter
from review_ui.outbox import OutboxDrainer
from review_ui.projection import OodProjector
from review_ui.scoring_monitor import ScoringMonitor


@dataclass
class UiServices:
    settings: Settings
    sessions: sessionmaker
    storage: Minio
    drainer: OutboxDrainer
    counts: CountsView
    importer: LabelledImporter
    projector: OodProjector | None = None
    accuracy: AccuracyPublisher | None = None
    monitor: ScoringMonitor | None = None  # scoring tallies and camera drift; runs where the projection runs

    @classmethod
    def create(cls, settings: Settings, *, projection: bool = True) -> UiServices:
        """Everything wired, nothing running yet (see `start`)."""
        sessions = db_sessions(settings)
        storage = minio_client(settings)
        degradation = Degradation()  # what the outbox drainer and the projection wait for
        return cls(
            settings=settings,
            sessions=sessions,
            storage=storage,
            drainer=OutboxDrainer(settings, sessions, degradation=degradation),
            counts=CountsView(settings),
            importer=LabelledImporter(settings, storage, sessions),
            projector=OodProjector(settings, sessions, degradation) if projection else None,
            accuracy=AccuracyPublisher(settings, sessions, degradation),
            monitor=ScoringMonitor(settings, sessions, degradation) if projection else None,
        )

    def health(self) -> dict[str, object]:
        """{"status": "ok"} or {"status": "degraded", "waiting": [{"for", "reason", "since_s"}]}: what the
        outbox drainer and the projection wait for (a store down)."""
        degradations = {id(part.degradation): part.degradation
                        for part in (self.drainer, self.projector, self.accuracy, self.monitor) if part is not None}
        waiting = [item for degradation in degradations.values()
                   for item in degradation.report().get("waiting", [])]
        return {"status": "degraded", "waiting": waiting} if waiting else {"status": "ok"}

    def start(self) -> UiServices:
        """Start the background loops: outbox drainer, count reader, audited accuracy publisher and (if wanted)
        the projection and the scoring monitor."""
        for part in (self.drainer, self.counts, self.projector, self.accuracy, self.monitor):
            if part is not None:
                part.start()
        return self

    def stop(self) -> None:
        for part in (self.monitor, self.accuracy, self.projector, self.counts, self.drainer):
            if part is not None:
                part.stop()
