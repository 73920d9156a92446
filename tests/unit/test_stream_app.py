"""Acks of records fetched before a rebalance, or dropped records, must never let a commit pass a record."""

from __future__ import annotations

import asyncio
import signal
import threading
from types import SimpleNamespace

import pytest
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from stream_apps import stream_app
from stream_apps.partition_progress import PartitionProgress
from stream_apps.stream_app import (
    FETCH_GATHER_MS,
    FETCH_MIN_BYTES,
    HEAD_GAP_REREAD_S,
    CurrentGenerationConsumer,
    StreamApp,
    WorkerWithStopDeadline,
)

pytestmark = pytest.mark.unit
TOPIC_PARTITION = TP("images.captured", 0)


@pytest.fixture()
def consumer() -> CurrentGenerationConsumer:
    app = StreamApp("ack-test", broker="kafka://127.0.0.1:1")
    app.consumer_generation_id = 7
    app.topics._acking_topics.add(TOPIC_PARTITION.topic)  # what subscribing an agent to the topic does
    app.flow_control.resume()  # as a started worker's is between rebalances
    created = app.consumer
    assert isinstance(created, CurrentGenerationConsumer)
    created._progress[TOPIC_PARTITION] = PartitionProgress(0)  # what seeking to the committed offset does
    created.highwater = lambda tp: None  # the broker's log end is not known here
    created.assignment = lambda: {TOPIC_PARTITION}
    return created


def fetched(offset: int, generation_id: int, consumer: CurrentGenerationConsumer | None = None) -> ConsumerMessage:
    if consumer is not None:
        consumer._progress[TOPIC_PARTITION].read(offset)
    return ConsumerMessage(TOPIC_PARTITION.topic, TOPIC_PARTITION.partition, offset, 0.0, 0, [], b"k", b"v", None,
                   tp=TOPIC_PARTITION, generation_id=generation_id)


def test_records_of_the_current_generation_become_committable(consumer: CurrentGenerationConsumer) -> None:
    for offset in (0, 1, 2):
        assert fetched(offset, generation_id=7, consumer=consumer).ack(consumer)
    assert consumer._new_offset(TOPIC_PARTITION) == 3


def test_records_skipped_as_stale_after_a_rebalance_are_not_committed(consumer: CurrentGenerationConsumer) -> None:
    stale = [fetched(offset, generation_id=6) for offset in (0, 1, 2)]
    for message in stale:
        consumer._unacked_messages.add(message)
        assert not message.ack(consumer)
    assert all(message.acked for message in stale)
    assert not consumer._unacked_messages  # a rebalance's wait for unacked records does not hang on them
    assert consumer._new_offset(TOPIC_PARTITION) == 0
    assert fetched(0, generation_id=7).ack(consumer)
    assert consumer._new_offset(TOPIC_PARTITION) == 1


def test_records_acked_while_a_rebalance_suspends_the_flow_are_not_committed(
        consumer: CurrentGenerationConsumer) -> None:
    consumer.app.flow_control.suspend()
    assert not fetched(0, generation_id=7).ack(consumer)
    assert consumer._new_offset(TOPIC_PARTITION) == 0
    consumer.app.flow_control.resume()
    assert fetched(0, generation_id=7).ack(consumer)  # read again from the committed offset
    assert consumer._new_offset(TOPIC_PARTITION) == 1


def fetch(consumer: CurrentGenerationConsumer, offsets: range, monkeypatch: pytest.MonkeyPatch) -> None:
    """One fetch through the consumer, as the drain loop makes it, returning records at `offsets`."""
    async def records(active_partitions: object, timeout: float) -> dict:
        return {TOPIC_PARTITION: [SimpleNamespace(offset=offset) for offset in offsets]}

    monkeypatch.setattr(consumer._thread, "getmany", records)
    asyncio.run(consumer._getmany({TOPIC_PARTITION}, 1.0))


def test_a_record_the_stream_dropped_holds_the_commit_and_is_read_again(
        consumer: CurrentGenerationConsumer, monkeypatch: pytest.MonkeyPatch) -> None:
    fetch(consumer, range(5), monkeypatch)
    messages = [fetched(offset, generation_id=7) for offset in range(5)]
    for message in messages[:2] + messages[3:]:  # offset 2 was cleared from the stream queue
        assert message.ack(consumer)
    clock = [1000.0]
    monkeypatch.setattr("stream_apps.stream_app.time.monotonic", lambda: clock[0])
    assert consumer._new_offset(TOPIC_PARTITION) == 2  # Faust's own check would commit 5
    assert not consumer._read_again
    clock[0] += HEAD_GAP_REREAD_S
    assert consumer._new_offset(TOPIC_PARTITION) == 2
    assert consumer._read_again == {TOPIC_PARTITION}


def test_a_partition_revoked_before_the_revoke_callback_ran_is_not_committed(
        consumer: CurrentGenerationConsumer) -> None:
    for offset in (0, 1):
        assert fetched(offset, generation_id=7, consumer=consumer).ack(consumer)
    consumer.assignment = set  # the client has dropped the partition; Faust's callback has not run yet
    assert consumer._new_offset(TOPIC_PARTITION) is None


def test_a_record_counts_as_processed_for_good_only_once_the_broker_confirmed_a_commit_past_it(
        consumer: CurrentGenerationConsumer, monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = iter([False, True])

    async def broker_commit(self: object, offsets: object) -> bool:
        return next(outcomes)

    monkeypatch.setattr(stream_app.aiokafka.Consumer, "_commit", broker_commit)
    assert not asyncio.run(consumer._commit({TOPIC_PARTITION: 3}))  # the broker was down
    assert not consumer.committed_past(TOPIC_PARTITION, 2)
    assert asyncio.run(consumer._commit({TOPIC_PARTITION: 3}))  # the next offset the group reads is 3
    assert consumer.committed_past(TOPIC_PARTITION, 2)
    assert not consumer.committed_past(TOPIC_PARTITION, 3)


def test_a_worker_asked_to_stop_exits_by_its_deadline_even_if_faust_never_finishes_stopping(
        monkeypatch: pytest.MonkeyPatch) -> None:
    exits: list[int] = []
    exited = threading.Event()
    monkeypatch.setattr(stream_app.os, "_exit", lambda code: (exits.append(code), exited.set()))
    monkeypatch.setattr(stream_app.Worker, "_schedule_shutdown", lambda self, signal: None)  # a stop that hangs
    worker = WorkerWithStopDeadline(StreamApp("stop-test", broker="kafka://127.0.0.1:1"), stop_timeout_s=0.05)
    worker._schedule_shutdown(signal.SIGTERM)
    assert exited.wait(5) and exits == [1]


def test_a_changelog_the_group_snapshot_lists_without_partitions_is_not_taken_for_a_partition_mismatch() -> None:
    snapshot = {"t.scoring-latest-snapshots-changelog": 0, "t.counts.partition-snapshots": 1}
    consumer = CurrentGenerationConsumer.__new__(CurrentGenerationConsumer)
    consumer._thread = SimpleNamespace(topic_partitions=snapshot.get)

    assert consumer.topic_partitions("t.scoring-latest-snapshots-changelog") is None
    assert consumer.topic_partitions("t.counts.partition-snapshots") == 1
    assert consumer.topic_partitions("t.unknown") is None


def test_a_workers_fetches_wait_to_gather_records_instead_of_returning_each_as_it_arrives() -> None:
    async def fetcher_settings() -> tuple[int, int]:
        app = StreamApp("fetch-test", broker="kafka://127.0.0.1:1")
        kafka_consumer = app.consumer._new_consumer_thread()._create_worker_consumer(app.transport)
        # The two values aiokafka hands its fetcher when the consumer starts.
        return kafka_consumer._fetch_min_bytes, kafka_consumer._fetch_max_wait_ms

    assert asyncio.run(fetcher_settings()) == (FETCH_MIN_BYTES, FETCH_GATHER_MS)
    assert FETCH_MIN_BYTES > 1 and FETCH_GATHER_MS <= 100  # gathers, yet adds no more than a micro-batch's wait
