"""The label outbox: events are committed with the action that caused them, then sent to Kafka in order.

One drainer at a time (a PostgreSQL advisory lock) sends unpublished rows in id order and marks them
published only after the broker acknowledged them. A broker or database outage leaves them in place, reported,
and retried with capped backoff; nothing is dropped. A crash between the acknowledgement and the mark sends the
same event id again, which the label log's consumers deduplicate. A row that can never be sent (it fails its
contract, or Kafka refuses it for good) is dead-lettered and marked rejected, so the rows after it flow.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import KafkaException
from sqlalchemy import ColumnElement, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from infra.db.models import LabelOutbox
from infra.publisher import EventPublisher, PublishError
from infra.retry import Backoff, Degradation, is_transient
from infra.settings import Settings
from schemas.codec import dead_letter_event, validate
from schemas.events import Event
from schemas.topics import LABELS

log = logging.getLogger(__name__)

BATCH_SIZE = 200
# librdkafka would retry an unacknowledged event for 5 minutes; give up sooner so a failure is reported
# while the operator is still looking, and the row is simply sent again on the next attempt.
DELIVERY_TIMEOUT_MS = 8_000
FLUSH_TIMEOUT_S = 12.0
RETRY_INTERVAL_S = 5.0  # between drains while all is well; `wake` starts one at once
REJECTED_SHOWN = 20
LETTER_VALUE_LIMIT = 65_536  # a dead letter carries at most this much of a document Kafka refused as too large
WAITING_FOR = "label outbox (Kafka, PostgreSQL)"
SERVICE = "review_ui"
_DEAD_LETTER_IDS = uuid.UUID("e4b1d0a6-93c2-4f57-8a1d-2c6b7f0e5d38")
_LOCK_KEY = 0x7761737465786F62  # 'wastexob': one drainer per database


def enqueue(session: Session, event: Event) -> LabelOutbox:
    """Add an event to the outbox inside the caller's transaction."""
    row = LabelOutbox(event_id=event.event_id, document=event.to_document())
    session.add(row)
    return row


def _pending() -> ColumnElement[bool]:
    """Rows still to send: not acknowledged and not rejected."""
    return LabelOutbox.published_at.is_(None) & LabelOutbox.rejected_reason.is_(None)


@dataclass(frozen=True)
class RejectedRow:
    id: int
    event_id: str
    reason: str
    created_at: datetime | None

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "event_id": self.event_id, "reason": self.reason,
                "created_at": self.created_at.isoformat() if self.created_at else None}


@dataclass(frozen=True)
class OutboxStatus:
    pending: int
    last_error: str | None
    oldest_pending_at: datetime | None
    rejected: list[RejectedRow] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"pending": self.pending, "last_error": self.last_error,
                "oldest_pending_at": self.oldest_pending_at.isoformat() if self.oldest_pending_at else None,
                "rejected": [row.as_dict() for row in self.rejected]}


def outbox_status(session: Session, rejected_shown: int = REJECTED_SHOWN) -> OutboxStatus:
    """What waits (pending rows, the last error) and the latest rows rejected for good."""
    pending, oldest = session.execute(
        select(func.count(LabelOutbox.id), func.min(LabelOutbox.created_at)).where(_pending())).one()
    last_error = session.scalars(
        select(LabelOutbox.last_error).where(_pending(), LabelOutbox.last_error.is_not(None))
        .order_by(LabelOutbox.id.desc()).limit(1)
    ).first()
    rejected = [RejectedRow(row.id, row.event_id, row.rejected_reason, row.created_at) for row in session.scalars(
        select(LabelOutbox).where(LabelOutbox.rejected_reason.is_not(None))
        .order_by(LabelOutbox.id.desc()).limit(rejected_shown))]
    return OutboxStatus(pending, last_error, oldest, rejected)


@dataclass(frozen=True)
class OutboxBacklog:
    rows: int  # events still to send
    oldest_age_s: float  # how long the oldest of them has waited (0 when none), by the database's clock


def outbox_backlog(session: Session) -> OutboxBacklog:
    """How much waits to be sent, in one query (cheap enough for every Prometheus scrape)."""
    rows, oldest_age_s = session.execute(
        select(func.count(LabelOutbox.id), func.extract("epoch", func.now() - func.min(LabelOutbox.created_at)))
        .where(_pending())).one()
    return OutboxBacklog(rows, float(oldest_age_s or 0.0))


def unpublished(session: Session, event_ids: Collection[str]) -> int:
    """How many of these events still wait in the outbox (a rejected one waits no more)."""
    if not event_ids:
        return 0
    return session.scalar(select(func.count(LabelOutbox.id)).where(
        LabelOutbox.event_id.in_(list(event_ids)), _pending())) or 0


def _rejection_letter(row: LabelOutbox, original: str, error: Exception, topic: str) -> Event:
    """The dead letter of a row Kafka can never take; its id derives from the row's event id (sent once)."""
    payload = row.document.get("payload") if isinstance(row.document, dict) else None
    image = payload.get("image") if isinstance(payload, dict) else None
    key = image.get("sha256") if isinstance(image, dict) and isinstance(image.get("sha256"), str) else None
    return dead_letter_event(original, error, topic=topic, partition=None, offset=None, key=key,
                             service=SERVICE, event_id=str(uuid.uuid5(_DEAD_LETTER_IDS, row.event_id)))


class OutboxDrainer:
    """Sends outbox rows to the label topic; `drain_once` for commands, `start` for a background thread."""

    def __init__(self, settings: Settings, sessions: sessionmaker,
                 publisher_factory: Callable[[], EventPublisher] | None = None,
                 degradation: Degradation | None = None) -> None:
        self._sessions = sessions
        self._topic = LABELS.full_name(settings.topic_prefix)
        self._max_delay_s = settings.retry_max_delay_s
        self.degradation = degradation or Degradation()
        self._publisher_factory = publisher_factory or (
            lambda: EventPublisher(settings, **{"message.timeout.ms": DELIVERY_TIMEOUT_MS}))
        self._publisher: EventPublisher | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cycle = threading.Condition()
        self._cycles = 0
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def drain_once(self) -> int:
        """Send every pending row (in batches); returns how many were sent. Raises PublishError.

        A row that fails its contract or that Kafka refuses for good is dead-lettered and marked rejected instead.
        """
        sent = 0
        while True:
            taken, count = self._drain_batch()
            sent += count
            if taken < BATCH_SIZE:
                return sent

    def _drain_batch(self) -> tuple[int, int]:
        """(rows taken, rows sent) of one batch, in id order."""
        failure: PublishError | None = None
        with self._sessions() as session, session.begin():
            if not session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _LOCK_KEY}):
                return 0, 0  # another process drains right now, in order
            rows = list(session.scalars(select(LabelOutbox).where(_pending()).order_by(LabelOutbox.id)
                                        .limit(BATCH_SIZE)))
            if not rows:
                return 0, 0
            publisher = self._publisher = self._publisher or self._publisher_factory()
            sent, rejected = [], {}
            for row in rows:
                try:
                    publisher.publish(validate(row.document))
                    sent.append(row.id)
                except Exception as error:
                    if is_transient(error):
                        raise
                    log.warning("label outbox row %d (event %s) rejected: %s", row.id, row.event_id, error)
                    rejected[row.id] = f"{type(error).__name__}: {error}"[:2000]
                    self._publish_letter(publisher, row, error)
            try:
                publisher.flush(FLUSH_TIMEOUT_S)
                outcome = {"published_at": datetime.now(UTC), "last_error": None}
            except PublishError as error:
                self._publisher = None  # a fresh producer next time: nothing left over from the outage
                failure = error
                outcome = {"last_error": str(error)[:2000]}
                rejected = {}  # a row is marked rejected once its dead letter is acknowledged
            if sent or failure is not None:
                session.execute(update(LabelOutbox).where(LabelOutbox.id.in_(sent or [r.id for r in rows]))
                                .values(attempts=LabelOutbox.attempts + 1, **outcome))
            for row_id, reason in rejected.items():
                session.execute(update(LabelOutbox).where(LabelOutbox.id == row_id)
                                .values(attempts=LabelOutbox.attempts + 1, rejected_reason=reason, last_error=None))
        if failure is not None:
            raise failure
        return len(rows), len(sent)

    def _publish_letter(self, publisher: EventPublisher, row: LabelOutbox, error: Exception) -> None:
        original = json.dumps(row.document)
        try:
            publisher.publish(_rejection_letter(row, original, error, self._topic))
        except KafkaException as refused:  # the document is too large for Kafka even inside a dead letter
            if is_transient(refused):
                raise
            publisher.publish(_rejection_letter(row, original[:LETTER_VALUE_LIMIT], error, self._topic))

    def start(self) -> OutboxDrainer:
        self._thread = threading.Thread(target=self._run, name="label-outbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=FLUSH_TIMEOUT_S + 5)

    def wake(self) -> None:
        self._wake.set()

    def wait_for(self, event_ids: Collection[str], timeout_s: float) -> bool:
        """Wake the drainer and wait until these events are published; False if they still wait."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._sessions() as session:
                if unpublished(session, event_ids) == 0:
                    return True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._thread is None:
                return False
            with self._cycle:
                self.wake()
                self._cycle.wait_for(lambda seen=self._cycles: self._cycles != seen, timeout=remaining)

    def _run(self) -> None:
        backoff = Backoff(first_s=1.0, cap_s=self._max_delay_s)
        while not self._stop.is_set():
            try:
                self.drain_once()
                self.last_error = None
                self.degradation.recovered(WAITING_FOR)
                backoff.reset()
                interval = RETRY_INTERVAL_S
            except Exception as error:  # broker or database down: keep the rows, report, retry
                self.last_error = f"{type(error).__name__}: {error}"
                self.degradation.waiting(WAITING_FOR, self.last_error[:300])
                interval = backoff.next_delay()
                log.warning("label outbox not drained: %s; retrying in %.1f s", self.last_error, interval)
            with self._cycle:
                self._cycles += 1
                self._cycle.notify_all()
            self._wake.wait(interval)
            self._wake.clear()
