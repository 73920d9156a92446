"""Send each selected dead letter's original record back to its topic, once.

Per original record: its dead letters are recorded in `replayed_dead_letters` inside a transaction, the record
is published and flushed, then the transaction commits. A record whose dead letter is recorded already is not
published again; a publish the broker did not acknowledge rolls the rows back, so a later replay tries again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from confluent_kafka import KafkaError, KafkaException, Message
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from infra.clients import db_sessions, kafka_producer
from infra.db.models import ReplayedDeadLetter
from infra.publisher import PublishError
from infra.settings import Settings
from schemas.codec import OriginalRecord
from schemas.events import Event
from stream_apps.dead_letters.selection import Unrecoverable, recover_original, same_record

FLUSH_TIMEOUT_S = 30.0
# Below the flush timeout: when flush returns, every record has its final answer (acknowledged or failed).
DELIVERY_TIMEOUT_MS = 20_000


class Verdict(StrEnum):
    REPLAYED = "replayed"
    WOULD_REPLAY = "would replay"
    ALREADY_REPLAYED = "already replayed"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class Result:
    letter: Event
    verdict: Verdict
    detail: str = ""


@dataclass
class ReplayReport:
    results: list[Result] = field(default_factory=list)

    def count(self, verdict: Verdict) -> int:
        return sum(1 for result in self.results if result.verdict is verdict)


def replayed_ids(settings: Settings, event_ids: Sequence[str]) -> set[str]:
    """Which of these dead letters were replayed already."""
    with db_sessions(settings)() as session:
        return set(session.scalars(select(ReplayedDeadLetter.dead_letter_event_id)
                                   .where(ReplayedDeadLetter.dead_letter_event_id.in_(event_ids))))


class _Producer:
    """Publishes one original record and waits for the broker's final answer."""

    def __init__(self, settings: Settings) -> None:
        self._producer = kafka_producer(settings, **{"delivery.timeout.ms": DELIVERY_TIMEOUT_MS, "linger.ms": 0})
        self._failure: str | None = None

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failure = f"{message.topic()}: {error.str()}"

    def publish(self, record: OriginalRecord) -> None:
        """Raises PublishError unless the broker acknowledged the record."""
        self._failure = None
        self._producer.produce(record.topic, key=record.key, value=record.value,
                               headers=list(record.headers) or None, on_delivery=self._on_delivery)
        if self._producer.flush(FLUSH_TIMEOUT_S):
            raise PublishError(f"{record.topic}: not acknowledged after {FLUSH_TIMEOUT_S:.0f} s")
        if self._failure is not None:
            raise PublishError(self._failure)


class Replayer:
    def __init__(self, settings: Settings, replayed_by: str) -> None:
        self._settings = settings
        self._replayed_by = replayed_by
        self._sessions = db_sessions(settings)
        self._producer: _Producer | None = None

    def replay(self, selected: Sequence[Event], every: Sequence[Event], dry_run: bool = False) -> ReplayReport:
        """One result per selected dead letter; `every` dead letter is needed to find those of the same record."""
        report = ReplayReport()
        done = replayed_ids(self._settings, [letter.event_id for letter in every])
        for letter in selected:
            siblings = same_record(letter, every)
            if any(sibling.event_id in done for sibling in siblings):
                report.results.append(Result(letter, Verdict.ALREADY_REPLAYED))
                continue
            try:
                record = recover_original(letter, self._settings.topic_prefix)
            except Unrecoverable as error:
                report.results.append(Result(letter, Verdict.SKIPPED, str(error)))
                continue
            done.update(sibling.event_id for sibling in siblings)
            if dry_run:
                report.results.append(Result(letter, Verdict.WOULD_REPLAY))
                continue
            report.results.append(self._replay_once(letter, siblings, record))
        return report

    def _replay_once(self, letter: Event, siblings: list[Event], record: OriginalRecord) -> Result:
        rows = [{"dead_letter_event_id": sibling.event_id, "original_topic": record.topic,
                 "original_event_id": sibling.payload["original_event_id"], "reason": sibling.payload["reason"],
                 "replayed_by": self._replayed_by} for sibling in siblings]
        try:
            with self._sessions.begin() as session:
                # Rows first: a concurrent replay of the same record waits on them, then finds them taken.
                inserted = session.scalars(insert(ReplayedDeadLetter).values(rows).on_conflict_do_nothing()
                                           .returning(ReplayedDeadLetter.dead_letter_event_id)).all()
                if len(inserted) < len(rows):  # a concurrent replay took the record; keep the rows it lacked
                    return Result(letter, Verdict.ALREADY_REPLAYED, "another dead letter of the same record was")
                self._producer = self._producer or _Producer(self._settings)
                self._producer.publish(record)
        except (PublishError, KafkaException) as error:
            return Result(letter, Verdict.FAILED, str(error))
        return Result(letter, Verdict.REPLAYED)
