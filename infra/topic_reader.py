"""Reads validated events from the start of a deployment's topics, with one consumer."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import TopicPartition

from infra.clients import kafka_consumer
from infra.settings import Settings
from schemas.codec import decode_event
from schemas.events import Event


class TopicReader:
    """Reads validated events from topics of a deployment, from their start, with one consumer."""

    def __init__(self, isolated: Settings, *names: str) -> None:
        self._consumer = kafka_consumer(isolated, group_id=f"reader-{uuid.uuid4().hex}")
        partitions = []
        for name in names:
            topic = f"{isolated.topic_prefix}{name}"
            metadata = self._consumer.list_topics(topic, timeout=10).topics[topic]
            partitions += [TopicPartition(topic, p, 0) for p in metadata.partitions]
        self._consumer.assign(partitions)
        self._prefix = isolated.topic_prefix
        self.events: dict[str, list[Event]] = {name: [] for name in names}

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for message in self._consumer.consume(500, 0.2):
                if not message.error():
                    self.events[message.topic().removeprefix(self._prefix)].append(decode_event(message.value()))

    def close(self) -> None:
        self._consumer.close()

    @classmethod
    def collect(cls, isolated: Settings, seconds: float, *names: str) -> dict[str, list[Event]]:
        """Everything the topics hold after `seconds` of reading from their start."""
        reader = cls(isolated, *names)
        try:
            reader.poll(seconds)
        finally:
            reader.close()
        return reader.events
