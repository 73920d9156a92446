"""Which dead letters `wastex deadletters` selects, and what each gives back to replay."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from schemas.codec import dead_letter_event
from schemas.events import DeadLetterReason, Event, format_timestamp
from stream_apps.dead_letters.selection import (
    Selection,
    Unrecoverable,
    parse_since,
    recover_original,
    same_record,
    summary_row,
)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
PREFIX = "wastex."


def _letter(reason: DeadLetterReason = DeadLetterReason.MISSING_OBJECT, *, failed_at: datetime = NOW,
            value: bytes = b'{"not": "checked here"}', topic: str = "wastex.images.captured", offset: int | None = 7,
            key: bytes | None = b"cam-1") -> Event:
    letter = dead_letter_event(value, "it failed", topic=topic, partition=0 if offset is not None else None,
                               offset=offset, key=key, service="stream_apps.scoring", reason=reason)
    return dataclasses.replace(letter, payload={**letter.payload, "failed_at": format_timestamp(failed_at)})


@pytest.mark.parametrize(("text", "back"), [
    ("90s", timedelta(seconds=90)), ("30m", timedelta(minutes=30)), ("2h", timedelta(hours=2)),
    ("1d", timedelta(days=1)), ("1w", timedelta(weeks=1)), (" 2H ", timedelta(hours=2)),
])
def test_a_duration_since_counts_back_from_now(text: str, back: timedelta) -> None:
    assert parse_since(text, NOW) == NOW - back


@pytest.mark.parametrize(("text", "moment"), [
    ("2026-12-01T08:30:00Z", datetime(2026, 12, 1, 8, 30, tzinfo=UTC)),
    ("2026-12-01T10:30:00+02:00", datetime(2026, 12, 1, 8, 30, tzinfo=UTC)),
    ("2026-12-01T08:30", datetime(2026, 12, 1, 8, 30, tzinfo=UTC)),
    ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
])
def test_an_iso_since_is_a_moment_in_utc_unless_it_names_its_offset(text: str, moment: datetime) -> None:
    assert parse_since(text, NOW) == moment


@pytest.mark.parametrize("text", ["", "3x", "m30", "-2h", "yesterday", "2026-13-01"])
def test_a_since_that_is_neither_a_duration_nor_a_timestamp_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="neither a duration"):
        parse_since(text, NOW)


def test_a_selection_keeps_the_dead_letters_of_its_reason_from_its_moment_on() -> None:
    old_missing = _letter(failed_at=NOW - timedelta(hours=3))
    new_missing = _letter(failed_at=NOW - timedelta(minutes=5))
    new_schema = _letter(DeadLetterReason.SCHEMA_INVALID, failed_at=NOW - timedelta(minutes=5))
    letters = [old_missing, new_missing, new_schema]

    assert Selection().select(letters) == letters
    assert Selection(reason="missing_object").select(letters) == [old_missing, new_missing]
    assert Selection(since=NOW - timedelta(hours=1)).select(letters) == [new_missing, new_schema]
    assert Selection("missing_object", NOW - timedelta(hours=1)).select(letters) == [new_missing]
    assert Selection(since=NOW - timedelta(minutes=5)).select(letters) == [new_missing, new_schema]  # inclusive


def test_the_original_record_comes_back_byte_for_byte_even_when_it_is_not_utf8() -> None:
    raw = b"\x89PNG\r\n\x1a\n\x00\xff"
    record = recover_original(_letter(DeadLetterReason.MALFORMED_EVENT, value=raw, key=b"\xfe-cam"), PREFIX)

    assert (record.topic, record.partition, record.offset, record.key, record.value) == (
        "wastex.images.captured", 0, 7, b"\xfe-cam", raw)


def test_a_utf8_original_keeps_its_key_and_value() -> None:
    record = recover_original(_letter(value=b'{"camera": "caf\xc3\xa9"}', key=None), PREFIX)

    assert (record.key, record.value) == (None, b'{"camera": "caf\xc3\xa9"}')


@pytest.mark.parametrize("topic", ["wastex.dead-letters", "other.images.captured", "wastex.not-a-topic"])
def test_a_record_goes_back_only_to_a_topic_of_this_deployment_never_to_the_dead_letters(topic: str) -> None:
    with pytest.raises(Unrecoverable, match="not a topic a record can be replayed to"):
        recover_original(_letter(topic=topic), PREFIX)


def test_a_dead_letter_without_the_original_value_cannot_be_replayed() -> None:
    with pytest.raises(Unrecoverable, match="not recorded"):
        recover_original(_letter(value=b""), PREFIX)


def test_a_dead_letter_whose_base64_original_does_not_decode_cannot_be_replayed() -> None:
    letter = _letter(value=b"\xff\xfe")
    broken = {**letter.payload["original"], "value": "not base64 !"}
    with pytest.raises(Unrecoverable, match="does not decode"):
        recover_original(dataclasses.replace(letter, payload={**letter.payload, "original": broken}), PREFIX)


def test_dead_letters_of_the_same_original_record_go_together() -> None:
    first, again = _letter(), _letter(DeadLetterReason.PROCESSING_ERROR)
    other_offset = _letter(offset=8)
    unplaced, unplaced_too = _letter(offset=None), _letter(offset=None)
    every = [first, again, other_offset, unplaced, unplaced_too]

    assert same_record(first, every) == [first, again]
    assert same_record(again, every) == [again, first]
    assert same_record(other_offset, every) == [other_offset]
    assert same_record(unplaced, every) == [unplaced]  # no position: nothing proves it is the same record


def test_a_summary_row_names_the_original_record_and_why_it_failed() -> None:
    letter = _letter()

    assert summary_row(letter) == {
        "dead_letter_event_id": letter.event_id, "failed_at": letter.payload["failed_at"],
        "service": "stream_apps.scoring", "reason": "missing_object", "original_topic": "wastex.images.captured",
        "original_partition": 0, "original_offset": 7, "original_event_id": None, "detail": "it failed",
    }
