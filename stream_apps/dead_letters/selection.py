"""Which dead letters a command acts on (`--reason`, `--since`), and the original record each one can give back."""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.codec import OriginalRecord, original_record
from schemas.events import Event, parse_timestamp
from schemas.topics import ALL_TOPICS, DEAD_LETTERS

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
# Records a replay may go back to: the system's own topics, never the dead letters themselves (a loop).
_REPLAYABLE_TOPICS = frozenset(spec.name for spec in ALL_TOPICS if spec is not DEAD_LETTERS)


def parse_since(text: str, now: datetime) -> datetime:
    """`--since`: a duration back from `now` (90s, 30m, 2h, 1d, 1w) or an ISO timestamp (UTC unless it says)."""
    text = text.strip()
    duration = _DURATION.fullmatch(text.lower())
    if duration:
        return now - timedelta(seconds=int(duration[1]) * _UNIT_S[duration[2]])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (30m, 2h, 1d) nor an ISO timestamp") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Selection:
    reason: str | None = None
    since: datetime | None = None

    def matches(self, letter: Event) -> bool:
        if self.reason is not None and letter.payload["reason"] != self.reason:
            return False
        return self.since is None or failed_at(letter) >= self.since

    def select(self, letters: Iterable[Event]) -> list[Event]:
        return [letter for letter in letters if self.matches(letter)]


def failed_at(letter: Event) -> datetime:
    return parse_timestamp(letter.payload["failed_at"])


def original_position(letter: Event) -> tuple[str, int, int] | None:
    """Topic, partition and offset of the record a dead letter was made from, when it names them all."""
    original = letter.payload["original"]
    if original["partition"] is None or original["offset"] is None:
        return None
    return original["topic"], original["partition"], original["offset"]


def same_record(letter: Event, letters: Iterable[Event]) -> list[Event]:
    """`letter` and every other dead letter of the same original record (a consumer that dead-lettered a
    redelivered record twice, under two ids): the record is replayed once for all of them."""
    position = original_position(letter)
    if position is None:
        return [letter]
    return [letter, *(other for other in letters
                      if other.event_id != letter.event_id and original_position(other) == position)]


class Unrecoverable(ValueError):
    """A dead letter whose original record cannot be sent again; the message says why."""


def recover_original(letter: Event, topic_prefix: str) -> OriginalRecord:
    """The original record, bytes restored, if it can go back to a topic of this deployment."""
    original: dict[str, Any] = letter.payload["original"]
    name = original["topic"].removeprefix(topic_prefix)
    if not original["topic"].startswith(topic_prefix) or name not in _REPLAYABLE_TOPICS:
        raise Unrecoverable(f"{original['topic']} is not a topic a record can be replayed to")
    try:
        record = original_record(letter)
    except (binascii.Error, UnicodeEncodeError) as error:
        raise Unrecoverable(f"the original record does not decode ({original['encoding']}): {error}") from None
    if not record.value:
        raise Unrecoverable("the original value was not recorded")
    return record


def summary_row(letter: Event) -> dict[str, Any]:
    """What `list` shows of one dead letter."""
    payload, original = letter.payload, letter.payload["original"]
    return {
        "dead_letter_event_id": letter.event_id,
        "failed_at": payload["failed_at"],
        "service": payload["service"],
        "reason": payload["reason"],
        "original_topic": original["topic"],
        "original_partition": original["partition"],
        "original_offset": original["offset"],
        "original_event_id": payload["original_event_id"],
        "detail": payload["detail"],
    }
