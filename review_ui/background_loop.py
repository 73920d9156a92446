"""The UI process's background loops (queue projection, scoring monitor, accuracy publisher): one daemon thread
each, stopped through one event that also interrupts their waits, and one way to publish events.

A passing failure inside a loop is waited out with capped backoff (`infra.retry`) while `degradation` says what
the loop waits for; `stop` ends the wait with InterruptedError, which ends the loop.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import Consumer, Message
from sqlalchemy.orm import sessionmaker

from infra.publisher import EventPublisher
from infra.retry import Backoff, Degradation, retry_transient
from infra.settings import Settings
from schemas.codec import dead_letter_event
from schemas.events import DeadLetterReason, Event

log = logging.getLogger(__name__)
RESTART_DELAY_S = 5.0
T = TypeVar("T")


class BackgroundLoop:
    """`run` in a daemon thread named `thread_name` between `start` and `stop`."""

    thread_name = "background-loop"

    def __init__(self, settings: Settings, sessions: sessionmaker, degradation: Degradation | None = None) -> None:
        self._settings = settings
        self._sessions = sessions
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._publisher: EventPublisher | None = None
        self.degradation = degradation or Degradation()

    def run(self) -> None:
        raise NotImplementedError

    def _retrying(self, work: Callable[[], T], what: str) -> T:
        """`work`, waiting out passing failures (raises InterruptedError once stopped)."""
        return retry_transient(work, what=what, degradation=self.degradation, stop=self._stop,
                               backoff=Backoff(cap_s=self._settings.retry_max_delay_s))

    def _send(self, events: list[Event]) -> None:
        """Publish and flush `events` once; a failure drops the producer, so the next try starts clean."""
        self._publisher = self._publisher or EventPublisher(self._settings)
        try:
            for event in events:
                self._publisher.publish(event)
            self._publisher.flush()
        except Exception:
            self._publisher = None  # a fresh producer next time: nothing left over from the outage
            raise

    def _publish(self, events: list[Event], what: str) -> None:
        """Publish `events`, waiting out passing failures."""
        if events:
            self._retrying(lambda: self._send(events), what)

    def start(self) -> BackgroundLoop:
        self._thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)


class ConsumerLoop(BackgroundLoop):
    """Polls a Kafka consumer until stopped; an unexpected failure closes it and starts a new one, which reads on
    from the committed (or stored) offsets."""

    what = "consumer"  # what the log calls the loop
    service = "review_ui"  # the service its dead letters name
    dead_letter_ids = uuid.UUID("9a0e6f31-5c2b-4d7e-8f14-2b6c3d9e0a71")  # namespace of its dead letter ids

    def consumer(self) -> Consumer:
        raise NotImplementedError

    def poll_once(self, consumer: Consumer) -> int:
        raise NotImplementedError

    def _letter(self, message: Message, error: BaseException, reason: DeadLetterReason | None = None) -> Event:
        log.warning("dead-lettering %s[%d]@%d: %s", message.topic(), message.partition(), message.offset(), error)
        # The same record refused again after a redelivery gives the same dead letter id.
        letter_id = uuid.uuid5(self.dead_letter_ids, f"{message.topic()}:{message.partition()}:{message.offset()}")
        return dead_letter_event(message.value(), error, topic=message.topic(), partition=message.partition(),
                                 offset=message.offset(), key=message.key(), service=self.service, reason=reason,
                                 event_id=str(letter_id))

    def _restarts_at_once(self, error: Exception) -> bool:
        """Whether `error` is an expected reason to start over without the restart delay."""
        return False

    def run(self) -> None:
        while not self._stop.is_set():
            consumer = self.consumer()
            try:
                while not self._stop.is_set():
                    self.poll_once(consumer)
            except InterruptedError:
                return
            except Exception as error:
                if self._restarts_at_once(error):
                    log.warning("%s: %s; reading on from the stored offsets", self.what, error)
                else:
                    log.exception("%s failed; restarting in %.0f s", self.what, RESTART_DELAY_S)
                    self._stop.wait(RESTART_DELAY_S)
            finally:
                consumer.close()
