"""The scoring worker tells a passing failure from a bad record: it waits for MinIO, Kafka and a failing model,
and dead-letters only a record that fails on its own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError
from minio.error import S3Error

from infra.retry import Degradation
from schemas.codec import encode, new_event
from schemas.events import DeadLetterReason, Event, EventType
from stream_apps.scoring.batch import BatchScorer, CapturedRecord, Kind, Outcome, outcome_id
from stream_apps.scoring.decode import BadImage, ImageLimits
from stream_apps.scoring.outcome_delivery import deliver
from stream_apps.scoring.patient_scoring import PatientScorer

SHA = "0a" * 32
CAPTURED = {"bucket": "wastex-images", "object_key": f"images/{SHA}.jpg", "sha256": SHA, "size_bytes": 1024,
            "content_type": "image/jpeg", "camera_id": "cam-1", "site_id": "site-a",
            "captured_at": "2026-03-01T12:00:00Z"}
QUICK = 0.01  # the backoff cap: the tests wait milliseconds, not seconds


def records(count: int) -> list[CapturedRecord]:
    value = encode(new_event(EventType.IMAGE_CAPTURED, CAPTURED, "test"))
    return [CapturedRecord("images.captured", 0, offset, b"cam-1", value) for offset in range(count)]


def classified(record: CapturedRecord, model: str = "model") -> Outcome:
    event = new_event(EventType.IMAGE_CAPTURED, {**CAPTURED, "camera_id": model}, "test",
                      event_id=outcome_id(record))
    return Outcome(Kind.CLASSIFIED, event, record)


def slow_down() -> S3Error:
    return S3Error(None, "SlowDown", "please reduce your request rate", "/images", "r", "h")  # type: ignore[arg-type]


async def always_works(model: str) -> bool:
    return True


async def model_named(name: str = "model") -> str:
    return name


def test_a_passing_store_failure_scores_the_same_batch_again_and_dead_letters_nothing() -> None:
    degradation = Degradation()
    failures = [ConnectionRefusedError("minio is restarting"), slow_down()]
    seen: list[tuple[list[int], str]] = []

    async def score(batch: list[CapturedRecord], model: str) -> list[Outcome]:
        seen.append(([r.offset for r in batch], degradation.report()["status"]))
        if failures:
            raise failures.pop(0)
        return [classified(record) for record in batch]

    scorer = PatientScorer(score, model_named, always_works, degradation=degradation, max_delay_s=QUICK)
    outcomes = asyncio.run(scorer.score(records(3)))

    assert [o.kind for o in outcomes] == [Kind.CLASSIFIED] * 3
    assert seen == [([0, 1, 2], "ok"), ([0, 1, 2], "degraded"), ([0, 1, 2], "degraded")]
    assert degradation.report() == {"status": "ok"}


def test_a_batch_failing_on_a_working_model_is_scored_one_by_one_and_only_the_poison_record_is_dead_lettered() -> None:
    async def score(batch: list[CapturedRecord], model: str) -> list[Outcome]:
        if any(record.offset == 2 for record in batch):
            raise ValueError("the interpreter choked on this one")
        return [classified(record) for record in batch]

    outcomes = asyncio.run(PatientScorer(score, model_named, always_works, max_delay_s=QUICK).score(records(4)))

    assert [o.kind for o in outcomes] == [Kind.CLASSIFIED, Kind.CLASSIFIED, Kind.DEAD_LETTER, Kind.CLASSIFIED]
    poison = outcomes[2]
    assert poison.event.payload["reason"] == DeadLetterReason.PROCESSING_ERROR
    assert poison.event.event_id == outcome_id(poison.record)


def test_a_model_that_fails_on_a_blank_image_is_waited_for_and_no_record_is_blamed() -> None:
    degradation = Degradation()
    models = iter(["broken", "broken", "fixed"])
    reports: list[str] = []

    async def current_model() -> str:
        return next(models)

    async def score(batch: list[CapturedRecord], model: str) -> list[Outcome]:
        if model == "broken":
            raise RuntimeError("tensor allocation failed")
        reports.append(degradation.report()["status"])
        return [classified(record, model) for record in batch]

    async def works(model: str) -> bool:
        return model != "broken"

    scorer = PatientScorer(score, current_model, works, degradation=degradation, max_delay_s=QUICK)
    outcomes = asyncio.run(scorer.score(records(3)))

    assert [(o.kind, o.event.payload["camera_id"]) for o in outcomes] == [(Kind.CLASSIFIED, "fixed")] * 3
    assert reports == ["degraded"]
    assert degradation.report() == {"status": "ok"}


def test_a_passing_failure_while_scoring_one_by_one_waits_for_that_record() -> None:
    calls: list[list[int]] = []

    async def score(batch: list[CapturedRecord], model: str) -> list[Outcome]:
        calls.append([r.offset for r in batch])
        if len(batch) > 1:
            raise ValueError("one of these is poison")
        if calls.count([1]) == 1:
            raise ConnectionError("minio went away just now")
        return [classified(record) for record in batch]

    outcomes = asyncio.run(PatientScorer(score, model_named, always_works, max_delay_s=QUICK).score(records(2)))

    assert [o.kind for o in outcomes] == [Kind.CLASSIFIED, Kind.CLASSIFIED]
    assert calls == [[0, 1], [0], [1], [1]]


class FakeBroker:
    """Acknowledges a send unless its event's failures (a list per event id) say otherwise, one per attempt."""

    def __init__(self, failures: dict[str, list[BaseException]], raise_on_send: bool = False) -> None:
        self.failures = failures
        self.raise_on_send = raise_on_send
        self.attempts: list[str] = []

    async def send(self, event: Event) -> Awaitable[object]:
        self.attempts.append(event.event_id)
        pending = self.failures.get(event.event_id) or []
        error = pending.pop(0) if pending else None
        if error is not None and self.raise_on_send:
            raise error
        ack: asyncio.Future = asyncio.get_running_loop().create_future()
        if error is None:
            ack.set_result(event.event_id)
        else:
            ack.set_exception(error)
        return ack


@pytest.mark.parametrize("raise_on_send", [False, True], ids=["ack-failed", "send-raised"])
def test_outcomes_not_acknowledged_for_a_passing_failure_are_sent_again_until_acknowledged(
        raise_on_send: bool) -> None:
    outcomes = [classified(record) for record in records(3)]
    late = outcomes[1].event.event_id
    broker = FakeBroker({late: [KafkaConnectionError("broker down"), KafkaTimeoutError()]}, raise_on_send)
    degradation = Degradation()

    delivered = asyncio.run(deliver(outcomes, broker.send, degradation=degradation, max_delay_s=QUICK))

    assert delivered == outcomes
    assert broker.attempts == [o.event.event_id for o in outcomes] + [late, late]
    assert degradation.report() == {"status": "ok"}


def test_an_outcome_the_broker_refuses_for_good_is_replaced_by_its_records_dead_letter() -> None:
    outcomes = [classified(record) for record in records(3)]
    refused = outcomes[2].event.event_id
    broker = FakeBroker({refused: [MessageSizeTooLargeError()]})

    delivered = asyncio.run(deliver(outcomes, broker.send, max_delay_s=QUICK))

    assert delivered[:2] == outcomes[:2]
    assert delivered[2].kind is Kind.DEAD_LETTER and delivered[2].record == outcomes[2].record
    assert delivered[2].event.event_id == refused  # same id: a copy that did land is absorbed
    assert broker.attempts == [o.event.event_id for o in outcomes] + [refused]


def test_a_worker_whose_outcomes_wait_long_for_their_acknowledgement_says_it_waits_for_kafka() -> None:
    outcomes = [classified(record) for record in records(2)]
    degradation = Degradation()
    seen_while_waiting: list[str] = []

    async def run() -> list[Outcome]:
        late: asyncio.Future = asyncio.get_running_loop().create_future()

        async def send(event: Event) -> asyncio.Future:
            if event.event_id != outcomes[1].event.event_id:
                done: asyncio.Future = asyncio.get_running_loop().create_future()
                done.set_result(None)
                return done
            return late

        async def broker_back() -> None:
            await asyncio.sleep(0.2)
            seen_while_waiting.append(degradation.report()["status"])
            late.set_result(None)

        acknowledged = asyncio.ensure_future(broker_back())
        delivered = await deliver(outcomes, send, degradation=degradation, max_delay_s=QUICK, ack_patience_s=0.05)
        await acknowledged
        return delivered

    assert asyncio.run(run()) == outcomes
    assert seen_while_waiting == ["degraded"]
    assert degradation.report() == {"status": "ok"}


class FailingStore:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def fetch(self, bucket: str, key: str) -> bytes:
        raise self.error


@pytest.mark.parametrize("error", [ConnectionRefusedError(111, "Connection refused"), slow_down(),
                                   TimeoutError("read timed out")], ids=["refused", "slow-down", "timeout"])
def test_a_passing_store_failure_is_raised_out_of_prepare_instead_of_dead_lettering(error: BaseException) -> None:
    scorer = BatchScorer(FailingStore(error), ImageLimits(1_000_000, 10_000_000))  # type: ignore[arg-type]
    with pytest.raises(type(error)):
        scorer.prepare(records(2), 8)


@pytest.mark.parametrize(("error", "reason"), [(BadImage("missing_object", "NoSuchKey"), "missing_object"),
                                               (KeyError("something only this record meets"), "processing_error")])
def test_a_record_that_fails_on_its_own_is_dead_lettered_with_its_reason(error: BaseException, reason: str) -> None:
    scorer = BatchScorer(FailingStore(error), ImageLimits(1_000_000, 10_000_000))  # type: ignore[arg-type]
    batch = scorer.prepare(records(2), 8)
    assert [o.event.payload["reason"] for o in batch.dead_letters] == [reason, reason]
    assert batch.records == []
