"""Reading the label log up to its end, so a version includes every decision made before it was requested.

The `stage` agent keeps staging live, but labels and requests arrive on different topics: a request can be
handled before labels that were sent ahead of it. Before building, the builder reads the label log itself,
from after the last record it staged in each partition to the end the log has at that moment.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from infra.clients import kafka_consumer
from infra.settings import Settings
from schemas.codec import InvalidEvent, decode_event
from schemas.events import Event, EventType
from schemas.topics import LABELS

log = logging.getLogger(__name__)
LABEL_EVENTS = {EventType.LABEL_ASSIGNED, EventType.IMAGE_DISCARDED, EventType.LABEL_RETRACTED}
READ_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LogPosition:
    partition: int
    offset: int


class LabelLogReader:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._topic = LABELS.full_name(settings.topic_prefix)

    def decisions_after(self, staged_upto: dict[int, int]) -> Iterator[tuple[Event, LogPosition]]:
        """Valid label events after `staged_upto[partition]` (or from the start) up to the log's current end.

        Invalid records are skipped here; the `stage` agent dead-letters them.
        """
        consumer = kafka_consumer(self._settings, group_id=f"builder-catch-up-{uuid.uuid4().hex}",
                                  **{"enable.auto.commit": False})
        try:
            partitions = consumer.list_topics(self._topic, timeout=10).topics[self._topic].partitions
            ends = {p: consumer.get_watermark_offsets(TopicPartition(self._topic, p), timeout=10)[1]
                    for p in partitions}
            starts = {p: staged_upto[p] + 1 if p in staged_upto else OFFSET_BEGINNING for p in partitions}
            behind = {p for p in partitions if ends[p] > max(starts[p], 0)}
            consumer.assign([TopicPartition(self._topic, p, starts[p]) for p in behind])
            deadline = time.monotonic() + READ_TIMEOUT_S
            while behind and time.monotonic() < deadline:
                for message in consumer.consume(500, 0.5):
                    if message.error():
                        continue
                    if message.offset() >= ends[message.partition()] - 1:
                        behind.discard(message.partition())
                    if message.offset() >= ends[message.partition()]:
                        continue
                    try:
                        event = decode_event(message.value())
                    except InvalidEvent:
                        continue
                    if event.event_type in LABEL_EVENTS:
                        yield event, LogPosition(message.partition(), message.offset())
            if behind:
                log.warning("label log partitions %s not read to their end within %.0f s; the version takes "
                            "what was staged", sorted(behind), READ_TIMEOUT_S)
        finally:
            consumer.close()
