"""The promotions feed: every scoring worker reads models.promoted itself, outside any consumer group.

A group would hand the topic's one partition to one worker; every worker has to swap, so each reads the
partition on its own from the end it saw before loading the production model (nothing in between is missed).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.kafka_security import aiokafka_kwargs
from infra.settings import Settings
from schemas.codec import InvalidEvent, decode_event
from schemas.events import Event, EventType
from schemas.topics import MODELS_PROMOTED

log = logging.getLogger(__name__)


class PromotionFeed:
    """ModelPromoted events published after `start()` returned, in order."""

    def __init__(self, settings: Settings) -> None:
        self._partition = TopicPartition(MODELS_PROMOTED.full_name(settings.topic_prefix), 0)
        self._consumer = AIOKafkaConsumer(**aiokafka_kwargs(settings), group_id=None,
                                          enable_auto_commit=False, isolation_level="read_committed")

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.assign([self._partition])
        end = (await self._consumer.end_offsets([self._partition]))[self._partition]
        self._consumer.seek(self._partition, end)

    async def stop(self) -> None:
        await self._consumer.stop()

    async def events(self) -> AsyncIterator[Event]:
        async for record in self._consumer:
            try:
                event = decode_event(record.value)
            except InvalidEvent as error:
                log.error("ignoring an invalid record at models.promoted offset %d: %s", record.offset, error)
                continue
            if event.event_type == EventType.MODEL_PROMOTED:
                yield event
