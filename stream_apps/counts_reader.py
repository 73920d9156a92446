"""Current counts as a dashboard sees them: the latest value per key of the compacted count topics."""

from __future__ import annotations

import uuid

from confluent_kafka import TopicPartition

from infra.clients import kafka_consumer
from infra.settings import Settings
from schemas.codec import InvalidEvent, decode_event
from schemas.topics import COUNTS_TOTALS


def read_totals(settings: Settings, timeout_s: float = 10.0) -> dict[str, dict[str, int]]:
    """{"class": {name: count}, "camera": {id: count}} from counts.totals, read to its end."""
    topic = COUNTS_TOTALS.full_name(settings.topic_prefix)
    consumer = kafka_consumer(settings, group_id=f"wastex-counts-{uuid.uuid4().hex}")
    latest: dict[str, dict[str, int]] = {"class": {}, "camera": {}}
    try:
        partitions = consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1] for p in partitions}
        remaining = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in remaining])
        while remaining:
            message = consumer.poll(timeout_s)
            if message is None:
                raise TimeoutError(f"{topic} did not deliver up to its end within {timeout_s} s")
            if message.error():
                continue
            try:
                payload = decode_event(message.value()).payload
            except InvalidEvent:
                continue
            latest[payload["scope"]][payload["key"]] = payload["count"]
            if message.offset() + 1 >= ends[message.partition()]:
                remaining.discard(message.partition())
    finally:
        consumer.close()
    return latest
