"""How the builder's agents treat a record: store work in the one database thread, passing failures waited out,
records that can never succeed dead-lettered on their own.

A passing failure (PostgreSQL, MinIO or Kafka down) is waited out with capped backoff: the record is neither
skipped nor dead-lettered, and `/health/` says `degraded` and why. A record that can never succeed (an invalid
event, a request for an unknown parent or a taken name, a value the database refuses) is dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust

from infra.retry import Backoff, Degradation, retry_transient_async
from infra.settings import Settings
from schemas.codec import InvalidEvent, dead_letter_event, decode_event, encode
from schemas.events import DeadLetterReason, Event, EventType, route
from stream_apps.builder.announcer import SOURCE

log = logging.getLogger(__name__)
_DEAD_LETTER_IDS = uuid.UUID("9f3e6a2b-51c8-4d07-b6e4-0a7d2c8f1e53")


class BuilderRecords:
    def __init__(self, settings: Settings, dead_letters: faust.TopicT, degradation: Degradation) -> None:
        self._settings = settings
        self._dead_letters = dead_letters
        self.degradation = degradation
        # Database and object store work runs here, one call at a time, never on the event loop.
        self._database = ThreadPoolExecutor(1, thread_name_prefix="database")

    async def blocking(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._database, function, *args)

    async def waiting_out(self, what: str, function: Callable[..., Any], *args: Any) -> Any:
        """`function(*args)` in the database thread; a passing failure waits (capped backoff) and tries again."""
        return await retry_transient_async(lambda: self.blocking(function, *args), what=what,
                                           degradation=self.degradation, backoff=self._backoff())

    async def decoded(self, event: faust.types.EventT, expected: set[EventType]) -> Event | None:
        """The record's event, or None after dead-lettering it."""
        try:
            result = decode_event(event.message.value)
            if result.event_type not in expected:
                raise InvalidEvent(f"{result.event_type} does not belong on {event.message.topic}",
                                   path="event_type")
            return result
        except InvalidEvent as error:
            log.warning("dead-lettering %s:%s: %s", event.message.topic, event.message.offset, error)
            await self._send_dead_letter(event, error, None)
            return None

    async def refused(self, event: faust.types.EventT, error: Exception) -> None:
        """A record the stores refuse for good (not a passing failure): dead-lettered on its own."""
        log.warning("dead-lettering %s:%s, refused: %s", event.message.topic, event.message.offset, error)
        await self._send_dead_letter(event, error, DeadLetterReason.PROCESSING_ERROR)

    async def _send_dead_letter(self, event: faust.types.EventT, error: Exception,
                                reason: DeadLetterReason | None) -> None:
        message = event.message
        # The same record refused again after a redelivery gives the same dead letter id.
        letter_id = uuid.uuid5(_DEAD_LETTER_IDS, f"{message.topic}:{message.partition}:{message.offset}")
        letter = dead_letter_event(message.value, error, topic=message.topic, partition=message.partition,
                                   offset=message.offset, key=message.key, service=SOURCE, reason=reason,
                                   event_id=str(letter_id))

        async def send() -> None:
            await (await self._dead_letters.send(key=route(letter).key.encode(), value=encode(letter)))

        await retry_transient_async(send, what="dead letters (Kafka)", degradation=self.degradation,
                                    backoff=self._backoff())

    def _backoff(self) -> Backoff:
        return Backoff(cap_s=self._settings.retry_max_delay_s)
