"""Every dead letter of a deployment: the dead-letters topic read from its start to the end it had."""

from __future__ import annotations

import logging
import time
import uuid

from confluent_kafka import TopicPartition

from infra.clients import kafka_consumer
from infra.settings import Settings
from schemas.codec import InvalidEvent, decode_event
from schemas.events import Event, EventType
from schemas.topics import DEAD_LETTERS
from stream_apps.dead_letters.selection import failed_at

log = logging.getLogger(__name__)


def read_dead_letters(settings: Settings, timeout_s: float = 30.0) -> list[Event]:
    """Each dead letter once, oldest first: a failure reported again after a redelivery has the same id."""
    topic = DEAD_LETTERS.full_name(settings.topic_prefix)
    consumer = kafka_consumer(settings, group_id=f"wastex-deadletters-{uuid.uuid4().hex}")
    letters: dict[str, Event] = {}
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
        if metadata.error is not None:
            raise RuntimeError(f"cannot read {topic}: {metadata.error.str()}")
        ends: dict[int, int] = {}
        starts = []
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
            if high > low:
                ends[partition] = high
                starts.append(TopicPartition(topic, partition, low))
        consumer.assign(starts)
        deadline = time.monotonic() + timeout_s
        while ends:
            for message in consumer.consume(500, 1.0):
                if message.error():
                    continue
                try:
                    event = decode_event(message.value())
                except InvalidEvent as error:
                    log.warning("%s[%d]@%d is not an event: %s", topic, message.partition(), message.offset(), error)
                    continue
                if event.event_type is EventType.DEAD_LETTER:
                    letters.setdefault(event.event_id, event)
            # Positions, not the last offset seen: a transaction marker can be a partition's last record.
            for position in consumer.position([TopicPartition(topic, p) for p in ends]):
                if position.offset >= ends[position.partition]:
                    del ends[position.partition]
            if ends and time.monotonic() > deadline:
                raise TimeoutError(f"{topic} did not deliver up to its end within {timeout_s:.0f} s")
    finally:
        consumer.close()
    return sorted(letters.values(), key=failed_at)
