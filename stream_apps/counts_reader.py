"""Current counts as a dashboard sees them: the latest value per key of the compacted count topics."""

from __future__ import annotations

import uuid
from typing import Any

from confluent_kafka import TopicPartition

from infra.clients import kafka_consumer
from infra.settings import Settings
from schemas.codec import InvalidEvent, decode_event
from schemas.topics import COUNTS_ACCURACY, COUNTS_TOTALS, TopicSpec


def latest_payloads(settings: Settings, spec: TopicSpec, timeout_s: float = 10.0) -> dict[tuple[str, str], dict]:
    """{(scope, key): the latest valid payload} of a compacted topic whose payloads carry scope and key, read to
    its end."""
    topic = spec.full_name(settings.topic_prefix)
    consumer = kafka_consumer(settings, group_id=f"wastex-counts-{uuid.uuid4().hex}")
    latest: dict[tuple[str, str], dict[str, Any]] = {}
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
            latest[(payload["scope"], payload["key"])] = payload
            if message.offset() + 1 >= ends[message.partition()]:
                remaining.discard(message.partition())
    finally:
        consumer.close()
    return latest


def read_totals(settings: Settings, timeout_s: float = 10.0) -> dict[str, dict[str, int]]:
    """{"class": {name: count}, "camera": {id: count}} from counts.totals."""
    totals: dict[str, dict[str, int]] = {"class": {}, "camera": {}}
    for (scope, key), payload in latest_payloads(settings, COUNTS_TOTALS, timeout_s).items():
        totals[scope][key] = payload["count"]
    return totals


def read_audited_accuracy(settings: Settings, timeout_s: float = 10.0) -> dict[str, dict[str, dict]]:
    """{"site": {id: AuditedAccuracyUpdated payload}, "camera": {id: payload}} from counts.accuracy."""
    accuracy: dict[str, dict[str, dict]] = {"site": {}, "camera": {}}
    for (scope, key), payload in latest_payloads(settings, COUNTS_ACCURACY, timeout_s).items():
        accuracy[scope][key] = payload
    return accuracy
