"""The codec: envelopes, validation errors that name the field, deterministic bytes and dead letters."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from schemas.codec import (
    InvalidEvent,
    dead_letter_event,
    decode_event,
    encode,
    new_event,
    original_record,
)
from schemas.events import DeadLetterReason, EventType, format_timestamp, parse_timestamp, route
from schemas.topics import DEAD_LETTERS

pytestmark = pytest.mark.unit

SHA = "0a" * 32
CAPTURED = {
    "bucket": "wastex-images",
    "object_key": f"images/{SHA}.jpg",
    "sha256": SHA,
    "size_bytes": 1024,
    "content_type": "image/png",
    "camera_id": "cam-2",
    "site_id": "site-b",
    "captured_at": "2026-03-01T12:00:00+01:00",
}


def _document(**changes: Any) -> dict[str, Any]:
    document = json.loads(encode(new_event(EventType.IMAGE_CAPTURED, CAPTURED, "producer")))
    document.update(changes)
    return document


def _refusal(raw: bytes) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        decode_event(raw)
    return caught.value


def _raw(document: object) -> bytes:
    return json.dumps(document).encode()


def test_a_new_event_gets_an_envelope() -> None:
    before = datetime.now(UTC)
    event = new_event(EventType.IMAGE_CAPTURED, CAPTURED, "producer")
    assert uuid.UUID(event.event_id).version == 4
    assert event.event_type is EventType.IMAGE_CAPTURED
    assert event.schema_version == 1
    assert event.source == "producer"
    assert event.occurred_at.endswith("Z")
    assert before - timedelta(milliseconds=1) <= parse_timestamp(event.occurred_at) <= datetime.now(UTC)


def test_encoding_is_compact_sorted_and_repeatable() -> None:
    event = new_event(EventType.IMAGE_CAPTURED, dict(reversed(CAPTURED.items())), "producer")
    raw = encode(event)
    assert b": " not in raw and b", " not in raw
    assert list(json.loads(raw)) == sorted(json.loads(raw))
    assert encode(decode_event(raw)) == raw


def test_a_resent_event_keeps_its_id() -> None:
    event_id = str(uuid.uuid4())
    raw = encode(new_event(EventType.IMAGE_CAPTURED, CAPTURED, "producer", event_id=event_id))
    assert decode_event(raw).event_id == event_id


def test_an_invalid_event_is_not_encoded() -> None:
    with pytest.raises(InvalidEvent, match="payload: 'camera_id' is a required property"):
        encode(new_event(EventType.IMAGE_CAPTURED, {k: v for k, v in CAPTURED.items() if k != "camera_id"}, "p"))


@pytest.mark.parametrize("event_type", ["ImageCapture", "", None])
def test_an_unknown_event_type_is_refused(event_type: str | None) -> None:
    error = _refusal(_raw(_document(event_type=event_type)))
    assert error.path == "event_type"
    assert error.reason is DeadLetterReason.SCHEMA_INVALID


def test_a_payload_of_another_event_type_is_refused() -> None:
    error = _refusal(_raw(_document(event_type="ImageClassified")))
    assert error.path == "payload"
    assert "were unexpected" in error.message


@pytest.mark.parametrize(
    ("changes", "path", "words"),
    [
        ({"event_id": "12345"}, "event_id", "is not a 'uuid'"),
        ({"event_id": str(uuid.uuid4()).replace("-", "")}, "event_id", "is not a 'uuid'"),
        ({"schema_version": 2}, "schema_version", "1 was expected"),
        ({"source": 7}, "source", "is not of type 'string'"),
        ({"payload": []}, "payload", "is not of type 'object'"),
        ({"trace": "x"}, "", "'trace' was unexpected"),
    ],
)
def test_a_bad_envelope_is_refused_naming_the_field(changes: dict[str, Any], path: str, words: str) -> None:
    error = _refusal(_raw(_document(**changes)))
    assert error.path == path
    assert words in error.message
    assert str(error) == (f"{path}: {error.message}" if path else error.message)


def test_a_missing_envelope_field_is_named() -> None:
    document = _document()
    del document["occurred_at"]
    assert "'occurred_at' is a required property" in str(_refusal(_raw(document)))


@pytest.mark.parametrize(
    "moment",
    ["2026-03-01T12:00:00", "2026-03-01 12:00:00Z", "2026-02-30T12:00:00Z", "2026-03-01T24:00:00Z", "today"],
)
def test_occurred_at_must_be_an_rfc3339_date_time_with_offset(moment: str) -> None:
    error = _refusal(_raw(_document(occurred_at=moment)))
    assert error.path == "occurred_at"
    assert "is not a 'date-time'" in error.message


@pytest.mark.parametrize(
    "moment", ["2026-03-01T12:00:00Z", "2026-03-01t12:00:00.123456789z", "2026-03-01T12:00:00-05:30"]
)
def test_rfc3339_variants_are_accepted(moment: str) -> None:
    assert decode_event(_raw(_document(occurred_at=moment))).occurred_at == moment


@pytest.mark.parametrize(
    "raw", [b"", b"not json", b"\xff\xfe\x00garbage", b'{"event_id": NaN}', b"[" * 100_000], ids=str
)
def test_bytes_that_are_not_json_are_refused_as_malformed(raw: bytes) -> None:
    error = _refusal(raw)
    assert error.reason is DeadLetterReason.MALFORMED_EVENT
    assert "not a JSON document" in str(error)


@pytest.mark.parametrize("raw", [b"[]", b"42", b'"ImageCaptured"', b"null"])
def test_json_that_is_not_an_object_is_refused(raw: bytes) -> None:
    assert "is not of type 'object'" in str(_refusal(raw))


def test_not_a_number_is_refused_on_encode() -> None:
    with pytest.raises(InvalidEvent, match="Out of range float"):
        encode(new_event(EventType.IMAGE_CLASSIFIED, _classified(energy=float("nan")), "scoring"))


def _classified(**changes: Any) -> dict[str, Any]:
    return {
        "image": {key: CAPTURED[key] for key in ("bucket", "object_key", "sha256")},
        "camera_id": "cam-2",
        "site_id": "site-b",
        "captured_at": CAPTURED["captured_at"],
        "predicted_class": "glass",
        "confidence": 0.9,
        "energy": -6.0,
        "model_version": "m-1",
        "model_digest": "ab" * 32,
        "captured_event_id": str(uuid.uuid4()),
        "captured_position": {"partition": 0, "offset": 0},
        **changes,
    }


def test_timestamps_are_written_in_utc_and_naive_ones_are_refused() -> None:
    moment = datetime(2026, 3, 1, 13, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert format_timestamp(moment) == "2026-03-01T12:00:00.123Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_timestamp(datetime(2026, 3, 1))


def test_a_dead_letter_for_a_schema_invalid_event_keeps_it_and_its_id() -> None:
    document = _document(schema_version=9)
    raw = _raw(document)
    error = _refusal(raw)
    dead = decode_event(
        encode(
            dead_letter_event(
                raw,
                error,
                topic="wastex.images.captured",
                partition=2,
                offset=17,
                key=b"cam-2",
                service="scoring",
            )
        )
    )
    assert dead.event_type is EventType.DEAD_LETTER
    assert dead.source == "scoring"
    assert dead.payload["reason"] == "schema_invalid"
    assert "schema_version" in dead.payload["detail"]
    assert dead.payload["original_event_id"] == document["event_id"]
    assert dead.payload["original"]["encoding"] == "utf-8"
    assert (route(dead).topic, route(dead).key) == (DEAD_LETTERS, document["event_id"])
    record = original_record(dead)
    assert (record.topic, record.partition, record.offset, record.key, record.value) == (
        "wastex.images.captured",
        2,
        17,
        b"cam-2",
        raw,
    )


def test_a_dead_letter_keeps_bytes_that_are_not_utf8() -> None:
    raw = b"\x89PNG\r\n\x1a\n\x00\xff\xfe"
    headers = [("trace", b"\xc3\x28"), ("empty", None), ("text", "ok")]
    dead = decode_event(
        encode(
            dead_letter_event(
                raw,
                _refusal(raw),
                topic="wastex.images.captured",
                partition=0,
                offset=5,
                key=None,
                service="scoring",
                headers=headers,
            )
        )
    )
    assert dead.payload["reason"] == "malformed_event"
    assert dead.payload["original"]["encoding"] == "base64"
    assert dead.payload["original_event_id"] is None
    assert route(dead).key == "wastex.images.captured:0:5"
    record = original_record(dead)
    assert record.value == raw
    assert record.key is None
    assert record.headers == (("trace", b"\xc3\x28"), ("empty", None), ("text", b"ok"))


def test_a_dead_letter_for_a_processing_failure_names_the_error() -> None:
    raw = encode(new_event(EventType.IMAGE_CAPTURED, CAPTURED, "producer"))
    dead = dead_letter_event(
        raw, OSError("object vanished"), topic="t", partition=None, offset=None, key="cam-2", service="s"
    )
    assert dead.payload["reason"] == "processing_error"
    assert dead.payload["detail"] == "OSError: object vanished"
    too_big = dead_letter_event(
        raw,
        "pixels: 200000000 > 89478485",
        topic="t",
        partition=None,
        offset=None,
        key="cam-2",
        service="scoring",
        reason=DeadLetterReason.TOO_MANY_PIXELS,
    )
    assert too_big.payload["reason"] == "too_many_pixels"
    assert original_record(too_big).value == raw


def test_a_long_error_message_is_cut_to_fit() -> None:
    dead = dead_letter_event(b"x", "e" * 10_000, topic="t", partition=0, offset=0, key=None, service="s")
    assert len(dead.payload["detail"]) == 4000
