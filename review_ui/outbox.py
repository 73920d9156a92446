"""The label outbox: events are committed with the action that caused them, then sent to Kafka in order.

One drainer at a time (a PostgreSQL advisory lock) sends unpublished rows in id order and marks them
published only after the broker acknowledged them. A broker outage leaves them in place, reported, and
retried; nothing is dropped. A crash between the acknowledgement and the mark sends the same event id
again, which the label log's consumers deduplicate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from infra.db.models import LabelOutbox
from infra.publisher import EventPublisher, PublishError
from infra.settings import Settings
from schemas.codec import validate
from schemas.events import Event

log = logging.getLogger(__name__)

BATCH_SIZE = 200
# librdkafka would retry an unacknowledged event for 5 minutes; give up sooner so a failure is reported
# while the operator is still looking, and the row is simply sent again on the next attempt.
DELIVERY_TIMEOUT_MS = 8_000
FLUSH_TIMEOUT_S = 12.0
RETRY_INTERVAL_S = 5.0
_LOCK_KEY = 0x7761737465786F62  # 'wastexob': one drainer per database


def enqueue(session: Session, event: Event) -> LabelOutbox:
    """Add an event to the outbox inside the caller's transaction."""
    row = LabelOutbox(event_id=event.event_id, document=event.to_document())
    session.add(row)
    return row


@dataclass(frozen=True)
class OutboxStatus:
    pending: int
    last_error: str | None
    oldest_pending_at: datetime | None

    def as_dict(self) -> dict[str, object]:
        return {"pending": self.pending, "last_error": self.last_error,
                "oldest_pending_at": self.oldest_pending_at.isoformat() if self.oldest_pending_at else None}


def outbox_status(session: Session) -> OutboxStatus:
    pending, oldest = session.execute(
        select(func.count(LabelOutbox.id), func.min(LabelOutbox.created_at)).where(LabelOutbox.published_at.is_(None))
    ).one()
    last_error = session.scalars(
        select(LabelOutbox.last_error).where(LabelOutbox.published_at.is_(None), LabelOutbox.last_error.is_not(None))
        .order_by(LabelOutbox.id.desc()).limit(1)
    ).first()
    return OutboxStatus(pending, last_error, oldest)


def unpublished(session: Session, event_ids: Collection[str]) -> int:
    """How many of these events still wait in the outbox."""
    if not event_ids:
        return 0
    return session.scalar(select(func.count(LabelOutbox.id)).where(
        LabelOutbox.event_id.in_(list(event_ids)), LabelOutbox.published_at.is_(None))) or 0


class OutboxDrainer:
    """Sends outbox rows to the label topic; `drain_once` for commands, `start` for a background thread."""

    def __init__(self, settings: Settings, sessions: sessionmaker,
                 publisher_factory: Callable[[], EventPublisher] | None = None) -> None:
        self._sessions = sessions
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
        """Send every unpublished row (in batches); returns how many were sent. Raises PublishError."""
        sent = 0
        while True:
            count = self._drain_batch()
            sent += count
            if count < BATCH_SIZE:
                return sent

    def _drain_batch(self) -> int:
        failure: PublishError | None = None
        with self._sessions() as session, session.begin():
            if not session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _LOCK_KEY}):
                return 0  # another process drains right now, in order
            rows = list(session.scalars(select(LabelOutbox).where(LabelOutbox.published_at.is_(None))
                                        .order_by(LabelOutbox.id).limit(BATCH_SIZE)))
            if not rows:
                return 0
            publisher = self._publisher = self._publisher or self._publisher_factory()
            for row in rows:
                publisher.publish(validate(row.document))
            try:
                publisher.flush(FLUSH_TIMEOUT_S)
                outcome = {"published_at": datetime.now(UTC), "last_error": None}
            except PublishError as error:
                self._publisher = None  # a fresh producer next time: nothing left over from the outage
                failure = error
                outcome = {"last_error": str(error)[:2000]}
            session.execute(update(LabelOutbox).where(LabelOutbox.id.in_([r.id for r in rows]))
                            .values(attempts=LabelOutbox.attempts + 1, **outcome))
        if failure is not None:
            raise failure
        return len(rows)

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
        interval = RETRY_INTERVAL_S
        while not self._stop.is_set():
            try:
                self.drain_once()
                self.last_error = None
            except Exception as error:  # broker or database down: keep the rows, report, retry
                self.last_error = f"{type(error).__name__}: {error}"
                log.warning("label outbox not drained: %s; retrying in %.0f s", self.last_error, interval)
            with self._cycle:
                self._cycles += 1
                self._cycle.notify_all()
            self._wake.wait(interval)
            self._wake.clear()
