"""The review-queue projection: ImageFlaggedOOD events, and the ImageClassified events sampled for audit
(`"audit": true`), from Kafka into PostgreSQL rows (kind ood / audit), once per event id.

images.classified carries every scored image: a record without the bytes `"audit"` is skipped before it is even
parsed, and any other ImageClassified is skipped once parsed; only audit samples are validated and projected.
Offsets are committed only after the rows are; a redelivered event hits the unique event id and changes
nothing. A record that is not a valid event, or that the database refuses (a NUL byte in a text field, say),
goes to the dead letters with the reason, on its own; a passing failure is waited out, never skipped.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable

from confluent_kafka import Consumer, Message
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from infra.clients import kafka_consumer
from infra.db.models import ReviewItem
from infra.image_retention import lock_image
from infra.retry import Degradation
from infra.settings import Settings
from review_ui.background_loop import ConsumerLoop
from review_ui.class_registry import register_classes
from schemas.codec import InvalidEvent, decode_event
from schemas.events import DeadLetterReason, Event, EventType, parse_timestamp
from schemas.topics import IMAGES_CLASSIFIED, IMAGES_OOD

log = logging.getLogger(__name__)
SERVICE = "review_ui"
BATCH = 200
_DEAD_LETTER_IDS = uuid.UUID("5d0c7b7e-2f4a-4d61-9a53-8c1e0b6f4a27")
PROJECTING = "review-queue projection (PostgreSQL)"  # what the projection waits for, in the log and /health


def group_id(settings: Settings) -> str:
    return f"{settings.topic_prefix}review-ui-projection"


def is_audit_sample(raw: bytes) -> bool:
    """Whether a record of images.classified is an audit sample, decided cheaply: most records are not."""
    if b'"audit"' not in raw:
        return False
    try:
        document = json.loads(raw)
    except ValueError:
        return False  # not this projection's to judge: the count consumers see the same record
    payload = document.get("payload") if isinstance(document, dict) else None
    return isinstance(payload, dict) and payload.get("audit") is True


def _review_row(event: Event) -> dict[str, object]:
    """The queue row of an ImageFlaggedOOD, or of an audit sample (which has no OOD reason and no thresholds)."""
    payload = event.payload
    image = payload["image"]
    audit = event.event_type is EventType.IMAGE_CLASSIFIED
    return {
        "source_event_id": event.event_id, "kind": "audit" if audit else "ood", "bucket": image["bucket"],
        "object_key": image["object_key"], "sha256": image["sha256"], "camera_id": payload["camera_id"],
        "site_id": payload["site_id"], "captured_at": parse_timestamp(payload["captured_at"]),
        "flagged_at": parse_timestamp(event.occurred_at), "model_version": payload["model_version"],
        "predicted_class": payload["predicted_class"], "confidence": payload["confidence"],
        "energy": payload["energy"], "reason": "audit" if audit else payload["reason"],
        "classes": payload["classes"], "probabilities": payload["probabilities"],
        "thresholds": {} if audit else payload["thresholds"], "embedding": payload.get("embedding"),
        "status": "pending",
    }


def project(session: Session, events: Iterable[Event]) -> int:
    """Insert queue rows for these ImageFlaggedOOD and audit-sample ImageClassified events; returns how many were
    new.

    Each image's retention lock is held until the transaction ends, so image_retention never deletes an image
    between checking it is unreferenced and this row appearing. Locks are taken in digest order: two
    projections locking the same images cannot deadlock.
    """
    events = list(events)
    for sha256 in sorted({event.payload["image"]["sha256"] for event in events}):
        lock_image(session, sha256)
    new = 0
    models: dict[str, list[str]] = {}  # model version -> its classes, of the rows inserted
    for event in events:
        payload = event.payload
        inserted = session.execute(
            insert(ReviewItem).values(**_review_row(event))
            .on_conflict_do_nothing(index_elements=[ReviewItem.source_event_id]).returning(ReviewItem.id)
        ).scalar_one_or_none()
        if inserted is not None:
            new += 1
            models[payload["model_version"]] = payload["classes"]
    for version, classes in models.items():  # once per model and batch: most rows of a batch share one model
        # The classes the scoring model knows become pickable classes.
        register_classes(session, classes, f"model:{version}")
    return new


class OodProjector(ConsumerLoop):
    """Consumes images.ood and images.classified in a consumer group (several UI processes share the partitions).

    A passing failure (PostgreSQL or Kafka down) holds the batch: it is tried again with capped backoff, nothing
    committed meanwhile, and `degradation` says what the projection waits for. A batch the database refuses for
    another reason is projected event by event: only the refused events go to the dead letters, with the
    database's message, and the rest are projected and committed.
    """

    thread_name = "ood-projection"
    dead_letter_ids = _DEAD_LETTER_IDS
    service = SERVICE
    what = "review-queue projection"

    def __init__(self, settings: Settings, sessions: sessionmaker, degradation: Degradation | None = None) -> None:
        super().__init__(settings, sessions, degradation)
        self.projected = 0

    def consumer(self) -> Consumer:
        consumer = kafka_consumer(self._settings, group_id(self._settings))
        consumer.subscribe([spec.full_name(self._settings.topic_prefix) for spec in (IMAGES_OOD, IMAGES_CLASSIFIED)])
        return consumer

    def _dead_letter(self, letters: list[Event]) -> None:
        self._publish(letters, "review-queue dead letters (Kafka)")

    def _decode(self, messages: list[Message]) -> list[tuple[Message, Event]]:
        """(record, event) of the valid ImageFlaggedOOD events and audit samples; other classified records are
        skipped, anything else is dead-lettered (acknowledged)."""
        events, rejected = [], []
        classified_topic = IMAGES_CLASSIFIED.full_name(self._settings.topic_prefix)
        for message in messages:
            audit = message.topic() == classified_topic
            if audit and not is_audit_sample(message.value()):
                continue
            try:
                event = decode_event(message.value())
                expected = EventType.IMAGE_CLASSIFIED if audit else EventType.IMAGE_FLAGGED_OOD
                if event.event_type is not expected:
                    raise InvalidEvent(f"{event.event_type} does not belong on {message.topic()}", path="event_type")
                events.append((message, event))
            except InvalidEvent as error:
                rejected.append(self._letter(message, error))
        self._dead_letter(rejected)
        return events

    def _project(self, events: list[Event]) -> int:
        with self._sessions() as session, session.begin():
            return project(session, events)

    def _project_each(self, events: list[tuple[Message, Event]]) -> int:
        """The events one by one, after the database refused their batch: only the refused ones are dead-lettered."""
        new, refused = 0, []
        for message, event in events:
            try:
                new += self._retrying(lambda event=event: self._project([event]), PROJECTING)
            except InterruptedError:
                raise
            except Exception as error:  # not a passing failure: the database will refuse this record every time
                refused.append(self._letter(message, error, DeadLetterReason.PROCESSING_ERROR))
        self._dead_letter(refused)
        return new

    def poll_once(self, consumer: Consumer, timeout_s: float = 1.0) -> int:
        """One batch: decode, project, commit the offsets; returns how many rows were new."""
        messages = [m for m in consumer.consume(BATCH, timeout_s) if not m.error()]
        if not messages:
            return 0
        events = self._decode(messages)
        try:
            # A batch of ordinary classified records only (the usual case) needs no database round trip.
            new = self._retrying(lambda: self._project([event for _, event in events]), PROJECTING) if events else 0
        except InterruptedError:
            raise
        except Exception as error:
            log.warning("the database refused a batch of %d events (%s); projecting them one by one", len(events),
                        error)
            new = self._project_each(events)
        self._retrying(lambda: consumer.commit(asynchronous=False), "review-queue offsets (Kafka)")
        self.projected += new
        return new
