"""Reading what tests produce on the shared captured topic."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import TopicPartition

from infra.clients import kafka_consumer
from infra.settings import Settings
from schemas.codec import decode_event
from schemas.events import Event
from schemas.topics import IMAGES_CAPTURED


class CapturedTail:
    """Reads the shared captured topic from where it ended when opened, with a consumer group of its own."""

    def __init__(self, settings: Settings) -> None:
        self._topic = IMAGES_CAPTURED.full_name(settings.topic_prefix)
        self._consumer = kafka_consumer(settings, group_id=f"test-ingest-{uuid.uuid4().hex}")
        # Offset queries queue behind the reader's fetch long-poll (0.5 s each): a second client asks them.
        self._probe = kafka_consumer(settings, group_id=f"test-ingest-{uuid.uuid4().hex}")
        partitions = self._consumer.list_topics(self._topic, timeout=10).topics[self._topic].partitions
        self._positions = {p: self._end(p) for p in partitions}
        self._consumer.assign([TopicPartition(self._topic, p, offset) for p, offset in self._positions.items()])

    def _end(self, partition: int) -> int:
        return self._probe.get_watermark_offsets(TopicPartition(self._topic, partition), timeout=10)[1]

    def events(self, camera_id: str, timeout_s: float = 30.0) -> list[Event]:
        """Every event of camera_id produced since opening, up to now (the current end of each partition)."""
        targets = {p: self._end(p) for p in self._positions}
        found: list[Event] = []
        deadline = time.monotonic() + timeout_s
        while any(self._positions[p] < end for p, end in targets.items()) and time.monotonic() < deadline:
            for message in self._consumer.consume(500, 0.5):
                if message.error():
                    continue
                self._positions[message.partition()] = message.offset() + 1
                if message.key() == camera_id.encode():
                    found.append(decode_event(message.value()))
        return found

    def close(self) -> None:
        self._consumer.close()
        self._probe.close()
