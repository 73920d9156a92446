"""The promotions feed: every scoring worker reads models.promoted itself, outside any consumer group.

A group would hand the topic's one partition to one worker; every worker has to swap, so each reads the
partition on its own from the end it saw before loading the production model (nothing in between is missed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.kafka_security import aiokafka_kwargs
from infra.settings import Settings
from schemas.events import Event, EventType
from schemas.topics import MODELS_PROMOTED
from stream_apps.scoring.feed_events import events_of_type


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

    def events(self) -> AsyncIterator[Event]:
        return events_of_type(self._consumer, "models.promoted", EventType.MODEL_PROMOTED)
