"""Event types, the envelope as a Python value, UTC timestamps, and the topic and key of each event."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from schemas import topics
from schemas.topics import TopicSpec

SCHEMA_VERSION = 1


class EventType(StrEnum):
    IMAGE_CAPTURED = "ImageCaptured"
    IMAGE_CLASSIFIED = "ImageClassified"
    IMAGE_FLAGGED_OOD = "ImageFlaggedOOD"
    COUNTS_UPDATED = "CountsUpdated"
    LABEL_ASSIGNED = "LabelAssigned"
    IMAGE_DISCARDED = "ImageDiscarded"
    LABEL_RETRACTED = "LabelRetracted"
    CREATE_VERSION_REQUESTED = "CreateVersionRequested"
    DATASET_VERSION_CREATED = "DatasetVersionCreated"
    TRAINING_RUN_STARTED = "TrainingRunStarted"
    TRAINING_RUN_PROGRESSED = "TrainingRunProgressed"
    TRAINING_RUN_COMPLETED = "TrainingRunCompleted"
    TRAINING_RUN_FAILED = "TrainingRunFailed"
    MODEL_PROMOTED = "ModelPromoted"
    DEAD_LETTER = "DeadLetter"
    CAMERA_DRIFT_DETECTED = "CameraDriftDetected"
    AUDITED_ACCURACY_UPDATED = "AuditedAccuracyUpdated"


class DeadLetterReason(StrEnum):
    MALFORMED_EVENT = "malformed_event"  # the bytes are not a JSON document
    SCHEMA_INVALID = "schema_invalid"
    NOT_AN_IMAGE = "not_an_image"
    TRUNCATED_IMAGE = "truncated_image"
    TOO_MANY_BYTES = "too_many_bytes"
    TOO_MANY_PIXELS = "too_many_pixels"
    MISSING_OBJECT = "missing_object"
    DECODE_ERROR = "decode_error"
    PROCESSING_ERROR = "processing_error"


@dataclass(frozen=True)
class Event:
    """One validated event; timestamps stay the RFC 3339 strings of the wire format."""

    event_id: str
    event_type: EventType
    schema_version: int
    occurred_at: str
    source: str
    payload: dict[str, Any]

    def to_document(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": str(self.event_type),
            "schema_version": self.schema_version,
            "occurred_at": self.occurred_at,
            "source": self.source,
            "payload": self.payload,
        }


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def format_timestamp(moment: datetime) -> str:
    """UTC, millisecond precision, 'Z' suffix: the form every producer writes."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 date-time (offset required); raises ValueError otherwise."""
    if not _RFC3339.fullmatch(text):
        raise ValueError(f"not an RFC 3339 date-time: {text!r}")
    return datetime.fromisoformat(text.upper())


def utc_now() -> str:
    return format_timestamp(datetime.now(UTC))


@dataclass(frozen=True)
class Route:
    """Where an event is produced: the topic (without deployment prefix) and the record key."""

    topic: TopicSpec
    key: str


# Every topic an event type can land on; consumers subscribe to these.
EVENT_TOPICS: dict[EventType, tuple[TopicSpec, ...]] = {
    EventType.IMAGE_CAPTURED: (topics.IMAGES_CAPTURED,),
    EventType.IMAGE_CLASSIFIED: (topics.IMAGES_CLASSIFIED,),
    EventType.IMAGE_FLAGGED_OOD: (topics.IMAGES_OOD,),
    EventType.COUNTS_UPDATED: (topics.COUNTS_TOTALS, topics.COUNTS_WINDOWS),
    EventType.LABEL_ASSIGNED: (topics.LABELS,),
    EventType.IMAGE_DISCARDED: (topics.LABELS,),
    EventType.LABEL_RETRACTED: (topics.LABELS,),
    EventType.CREATE_VERSION_REQUESTED: (topics.VERSION_REQUESTS,),
    EventType.DATASET_VERSION_CREATED: (topics.DATASET_VERSIONS,),
    EventType.TRAINING_RUN_STARTED: (topics.TRAINING_RUNS,),
    EventType.TRAINING_RUN_PROGRESSED: (topics.TRAINING_RUNS,),
    EventType.TRAINING_RUN_COMPLETED: (topics.TRAINING_RUNS,),
    EventType.TRAINING_RUN_FAILED: (topics.TRAINING_RUNS,),
    EventType.MODEL_PROMOTED: (topics.MODELS_PROMOTED,),
    EventType.DEAD_LETTER: (topics.DEAD_LETTERS,),
    EventType.CAMERA_DRIFT_DETECTED: (topics.CAMERAS_DRIFT,),
    EventType.AUDITED_ACCURACY_UPDATED: (topics.COUNTS_ACCURACY,),
}


def _counts_route(payload: Mapping[str, Any]) -> Route:
    name = f"{payload['scope']}:{payload['key']}"
    window = payload["window"]
    if window is None:
        return Route(topics.COUNTS_TOTALS, name)
    return Route(topics.COUNTS_WINDOWS, f"{name}@{window['start']}")


def _dead_letter_key(payload: Mapping[str, Any]) -> str:
    original = payload["original"]
    return payload["original_event_id"] or f"{original['topic']}:{original['partition']}:{original['offset']}"


# Keys keep per-entity order (one camera, one image, one run) and make compaction keep the latest value.
_KEYS: dict[EventType, Callable[[Mapping[str, Any]], str]] = {
    EventType.IMAGE_CAPTURED: lambda p: p["camera_id"],
    EventType.IMAGE_CLASSIFIED: lambda p: p["camera_id"],
    EventType.IMAGE_FLAGGED_OOD: lambda p: p["camera_id"],
    EventType.LABEL_ASSIGNED: lambda p: p["image"]["sha256"],
    EventType.IMAGE_DISCARDED: lambda p: p["image"]["sha256"],
    EventType.LABEL_RETRACTED: lambda p: p["image"]["sha256"],
    EventType.CREATE_VERSION_REQUESTED: lambda p: p["request_id"],
    EventType.DATASET_VERSION_CREATED: lambda p: p["version_name"],
    EventType.TRAINING_RUN_STARTED: lambda p: p["run_id"],
    EventType.TRAINING_RUN_PROGRESSED: lambda p: p["run_id"],
    EventType.TRAINING_RUN_COMPLETED: lambda p: p["run_id"],
    EventType.TRAINING_RUN_FAILED: lambda p: p["run_id"],
    EventType.MODEL_PROMOTED: lambda p: "production",
    EventType.DEAD_LETTER: _dead_letter_key,
    EventType.CAMERA_DRIFT_DETECTED: lambda p: p["camera_id"],
    EventType.AUDITED_ACCURACY_UPDATED: lambda p: f"{p['scope']}:{p['key']}",
}


def route(event: Event) -> Route:
    """The topic and key to produce a (validated) event with."""
    if event.event_type is EventType.COUNTS_UPDATED:
        return _counts_route(event.payload)
    (topic,) = EVENT_TOPICS[event.event_type]
    return Route(topic, _KEYS[event.event_type](event.payload))
