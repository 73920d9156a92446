"""What the stream did, read back from Kafka: every captured record, every outcome, the label log.

The ledger reads the topics themselves (not what the harness thinks it sent), so a record the producer
lost, a second outcome for one capture or a label event that reached the log twice all show.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from confluent_kafka import TopicPartition

from infra.clients import kafka_consumer
from infra.settings import Settings
from schemas.events import EventType
from schemas.topics import DEAD_LETTERS, IMAGES_CAPTURED, IMAGES_CLASSIFIED, IMAGES_OOD, LABELS, TopicSpec

# Dead-letter reasons a passing failure produces when it is mistaken for a bad record.
TRANSIENT_REASONS = frozenset({"processing_error", "missing_object"})


@dataclass(frozen=True)
class Outcome:
    event_id: str
    kind: str  # classified | ood | dead_letter
    routed_at: float  # broker timestamp, seconds since the epoch
    predicted_class: str | None = None
    reason: str | None = None


@dataclass
class OutcomeFigures:
    lost: int = 0
    duplicated: int = 0
    transient_dead_letters: int = 0
    other_dead_letters: int = 0
    poison_not_dead_lettered: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)  # of good photos, by reason


@dataclass
class StreamLedger:
    """Reads images.captured, the outcome topics and the label log of a deployment from their start."""

    settings: Settings
    captured: set[str] = field(default_factory=set)
    outcomes: dict[str, list[Outcome]] = field(default_factory=dict)
    # Dead letters of other services (the review queue projection, say), by the event id they refused.
    downstream_dead_letters: dict[str, str] = field(default_factory=dict)
    label_events: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._consumer = kafka_consumer(self.settings, group_id=f"bench-faults-{uuid.uuid4().hex}")
        self._topics = {spec.full_name(self.settings.topic_prefix): spec
                        for spec in (IMAGES_CAPTURED, IMAGES_CLASSIFIED, IMAGES_OOD, DEAD_LETTERS, LABELS)}
        partitions = []
        for topic in self._topics:
            metadata = self._consumer.list_topics(topic, timeout=30).topics[topic]
            partitions += [TopicPartition(topic, p, 0) for p in metadata.partitions]
        self._consumer.assign(partitions)
        self._captured_topic = IMAGES_CAPTURED.full_name(self.settings.topic_prefix)

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for message in self._consumer.consume(500, min(left, 0.5)):
                if not message.error():
                    self._record(self._topics[message.topic()], message.value(), message.timestamp()[1] / 1000)

    def _record(self, spec: TopicSpec, value: bytes, timestamp: float) -> None:
        try:
            document = json.loads(value)
            event_id, payload = document["event_id"], document["payload"]
        except (ValueError, KeyError, TypeError):
            return  # the harness sends only records with an event id; anything else is not its business
        if spec is IMAGES_CAPTURED:
            self.captured.add(event_id)
        elif spec is LABELS:
            self.label_events[event_id] += 1
        elif document.get("event_type") == EventType.DEAD_LETTER:
            if payload["original"]["topic"] == self._captured_topic:
                self._add(payload["original_event_id"], Outcome(event_id, "dead_letter", timestamp,
                                                                reason=payload["reason"]))
            else:
                self.downstream_dead_letters[payload["original_event_id"] or event_id] = payload["reason"]
        else:
            kind = "classified" if spec is IMAGES_CLASSIFIED else "ood"
            self._add(payload["captured_event_id"], Outcome(event_id, kind, timestamp, payload.get("predicted_class")))

    def _add(self, captured_id: str | None, outcome: Outcome) -> None:
        if captured_id is not None:
            self.outcomes.setdefault(captured_id, []).append(outcome)

    def wait_for_outcomes(self, ids: set[str], timeout_s: float) -> bool:
        """Read until every id has an outcome; False when the timeout came first."""
        deadline = time.monotonic() + timeout_s
        while not ids <= self.outcomes.keys():
            if time.monotonic() > deadline:
                return False
            self.poll(0.5)
        return True

    def first_routed_after(self, moment: float) -> float | None:
        """Seconds from `moment` to the first classified or OOD record the broker took at or after it."""
        times = [o.routed_at for outcomes in self.outcomes.values() for o in outcomes
                 if o.kind != "dead_letter" and o.routed_at >= moment]
        return min(times) - moment if times else None

    def figures(self, ids: set[str], poison: set[str]) -> OutcomeFigures:
        """Per captured id: exactly one outcome. Redelivered copies of one outcome event are one outcome; the
        same event id routed once as classified and once as a dead letter is two."""
        figures = OutcomeFigures()
        reasons: Counter[str] = Counter()
        for captured_id in ids:
            distinct = {(o.event_id, o.kind): o for o in self.outcomes.get(captured_id, [])}.values()
            if not distinct:
                figures.lost += 1
                continue
            figures.duplicated += len(distinct) - 1
            letters = [o for o in distinct if o.kind == "dead_letter"]
            if captured_id in poison:
                figures.poison_not_dead_lettered += not letters
            else:
                figures.transient_dead_letters += sum(o.reason in TRANSIENT_REASONS for o in letters)
                figures.other_dead_letters += sum(o.reason not in TRANSIENT_REASONS for o in letters)
                reasons.update(o.reason for o in letters)
        figures.dead_letter_reasons = dict(reasons)
        return figures

    def classified_per_class(self) -> Counter[str]:
        """The classes of captures whose (first) outcome is a classification: what the counts must show."""
        counted: Counter[str] = Counter()
        for outcomes in self.outcomes.values():
            first = outcomes[0]
            if first.kind == "classified" and first.predicted_class is not None:
                counted[first.predicted_class] += 1
        return counted

    def close(self) -> None:
        self._consumer.close()
