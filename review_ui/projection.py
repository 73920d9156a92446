"""The review-queue projection: ImageFlaggedOOD events from Kafka into PostgreSQL rows, once per event id.

Offsets are committed only after the rows are; a redelivered event hits the unique event id and changes
nothing. A record that is not a valid event goes to the dead letters (with the reason) and is skipped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from confluent_kafka import Consumer, Message
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from infra.clients import kafka_consumer
from infra.db.models import ReviewItem
from infra.publisher import EventPublisher
from infra.settings import Settings
from review_ui.class_registry import register_classes
from schemas.codec import InvalidEvent, dead_letter_event, decode_event
from schemas.events import Event, EventType, parse_timestamp
from schemas.topics import IMAGES_OOD

log = logging.getLogger(__name__)
SERVICE = "review_ui"
BATCH = 200
RESTART_DELAY_S = 5.0


def group_id(settings: Settings) -> str:
    return f"{settings.topic_prefix}review-ui-projection"


def project(session: Session, events: Iterable[Event]) -> int:
    """Insert queue rows for these ImageFlaggedOOD events; returns how many were new."""
    new = 0
    for event in events:
        payload = event.payload
        image = payload["image"]
        inserted = session.execute(
            insert(ReviewItem).values(
                source_event_id=event.event_id, bucket=image["bucket"], object_key=image["object_key"],
                sha256=image["sha256"], camera_id=payload["camera_id"], site_id=payload["site_id"],
                captured_at=parse_timestamp(payload["captured_at"]), flagged_at=parse_timestamp(event.occurred_at),
                model_version=payload["model_version"], predicted_class=payload["predicted_class"],
                confidence=payload["confidence"], energy=payload["energy"], reason=payload["reason"],
                classes=payload["classes"], probabilities=payload["probabilities"],
                thresholds=payload["thresholds"], status="pending",
            ).on_conflict_do_nothing(index_elements=[ReviewItem.source_event_id]).returning(ReviewItem.id)
        ).scalar_one_or_none()
        if inserted is not None:
            new += 1
            # The classes the flagging model knows become pickable classes.
            register_classes(session, payload["classes"], f"model:{payload['model_version']}")
    return new


class OodProjector:
    """Consumes images.ood in a consumer group (several UI processes share the partitions)."""

    def __init__(self, settings: Settings, sessions: sessionmaker) -> None:
        self._settings = settings
        self._sessions = sessions
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._publisher: EventPublisher | None = None
        self.projected = 0

    def _consumer(self) -> Consumer:
        consumer = kafka_consumer(self._settings, group_id(self._settings))
        consumer.subscribe([IMAGES_OOD.full_name(self._settings.topic_prefix)])
        return consumer

    def _decode(self, messages: list[Message]) -> list[Event]:
        """Valid ImageFlaggedOOD events; anything else is dead-lettered (acknowledged) before moving on."""
        events, rejected = [], []
        for message in messages:
            try:
                event = decode_event(message.value())
                if event.event_type is not EventType.IMAGE_FLAGGED_OOD:
                    raise InvalidEvent(f"{event.event_type} does not belong on {message.topic()}", path="event_type")
                events.append(event)
            except InvalidEvent as error:
                log.warning("dead-lettering %s[%d]@%d: %s", message.topic(), message.partition(), message.offset(),
                            error)
                rejected.append(dead_letter_event(message.value(), error, topic=message.topic(),
                                                  partition=message.partition(), offset=message.offset(),
                                                  key=message.key(), service=SERVICE))
        if rejected:
            self._publisher = self._publisher or EventPublisher(self._settings)
            for letter in rejected:
                self._publisher.publish(letter)
            self._publisher.flush()
        return events

    def poll_once(self, consumer: Consumer, timeout_s: float = 1.0) -> int:
        """One batch: decode, project, commit the offsets; returns how many rows were new."""
        messages = [m for m in consumer.consume(BATCH, timeout_s) if not m.error()]
        if not messages:
            return 0
        events = self._decode(messages)
        with self._sessions() as session, session.begin():
            new = project(session, events)
        consumer.commit(asynchronous=False)
        self.projected += new
        return new

    def run(self) -> None:
        """Project until stopped; a failure restarts the consumer from the committed offsets."""
        while not self._stop.is_set():
            consumer = self._consumer()
            try:
                while not self._stop.is_set():
                    self.poll_once(consumer)
            except Exception:
                log.exception("review-queue projection failed; restarting in %.0f s", RESTART_DELAY_S)
                self._stop.wait(RESTART_DELAY_S)
            finally:
                consumer.close()

    def start(self) -> OodProjector:
        self._thread = threading.Thread(target=self.run, name="ood-projection", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
