"""The events of a topic every scoring worker reads on its own (promotions.py, camera_drift.py)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer

from schemas.codec import InvalidEvent, decode_event
from schemas.events import Event, EventType

log = logging.getLogger(__name__)


async def events_of_type(consumer: AIOKafkaConsumer, topic: str, event_type: EventType) -> AsyncIterator[Event]:
    """The consumer's records of `event_type`, decoded; an invalid record is logged and passed over, so one poison
    record cannot stop the feed."""
    async for record in consumer:
        try:
            event = decode_event(record.value)
        except InvalidEvent as error:
            log.error("ignoring an invalid record at %s offset %d: %s", topic, record.offset, error)
            continue
        if event.event_type == event_type:
            yield event
