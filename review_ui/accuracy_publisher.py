"""AuditedAccuracyUpdated on counts.accuracy: the serving model's audited accuracy per site and camera.

Every few seconds the figures of the serving model (all days: audit answers and scoring tallies, see
audited_accuracy.py) are read; a site or camera whose figures changed since the last publication is published
again, keyed "<scope>:<key>" like counts.totals, so a count consumer keeps the latest record per key of both topics
and joins them by key. The topic is compacted and each record carries the whole figures, so publishing again (after
a restart everything is published once more) is harmless; an event id derives from the figures, so a repeat is
also recognisable by id. Passing failures (PostgreSQL or Kafka down) are waited out.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.orm import sessionmaker

from infra.retry import Degradation
from infra.settings import Settings
from review_ui.audited_accuracy import Figures, current_figures, serving_model
from review_ui.background_loop import RESTART_DELAY_S, BackgroundLoop
from schemas.codec import new_event
from schemas.events import Event, EventType, utc_now

log = logging.getLogger(__name__)
SOURCE = "review_ui"
_EVENT_IDS = uuid.UUID("3b1f7c44-8d2e-4f0a-9c6b-5e7d2a1f0b93")


def accuracy_event(scope: str, key: str, model_version: str, figures: Figures) -> Event:
    """One site's or camera's figures; the same figures always get the same event id."""
    payload = {"scope": scope, "key": key, "model_version": model_version, **figures.as_dict(), "as_of": utc_now()}
    identity = (f"{scope}:{key}:{model_version}:{figures.audited}:{figures.correct}:{figures.classified}:"
                f"{figures.ood}")
    return new_event(EventType.AUDITED_ACCURACY_UPDATED, payload, SOURCE,
                     event_id=str(uuid.uuid5(_EVENT_IDS, identity)))


class AccuracyPublisher(BackgroundLoop):
    """A background loop in the UI process; `publish_changed` is one round (tests call it directly)."""

    thread_name = "accuracy-publisher"

    def __init__(self, settings: Settings, sessions: sessionmaker, degradation: Degradation | None = None) -> None:
        super().__init__(settings, sessions, degradation)
        self._published: dict[str, tuple[str, int, int, int, int]] = {}  # "<scope>:<key>" -> what it said

    def _changed(self) -> list[Event]:
        with self._sessions() as session:
            model = serving_model(session)
            if model is None:
                return []
            current = current_figures(session, model)
        events = []
        for scope, by_key in current.items():
            for key, figures in by_key.items():
                said = (model, figures.audited, figures.correct, figures.classified, figures.ood)
                if self._published.get(f"{scope}:{key}") != said:
                    events.append(accuracy_event(scope, key, model, figures))
        return events

    def publish_changed(self) -> int:
        """Publish the sites and cameras whose figures changed; returns how many were published."""
        events = self._retrying(self._changed, "audited accuracy (PostgreSQL)")
        self._publish(events, "audited accuracy (Kafka)")
        for event in events:
            p = event.payload
            self._published[f"{p['scope']}:{p['key']}"] = (p["model_version"], p["audited"], p["correct"],
                                                          p["scored"] - p["ood"], p["ood"])
        return len(events)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.publish_changed()
            except InterruptedError:
                return
            except Exception:
                log.exception("audited accuracy publisher failed; trying again in %.0f s", RESTART_DELAY_S)
                self._stop.wait(RESTART_DELAY_S)
                continue
            self._stop.wait(self._settings.accuracy_publish_interval_s)
