"""Acks of records fetched before a rebalance must never become committable offsets."""

from __future__ import annotations

import pytest
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from stream_apps.stream_app import CurrentGenerationConsumer, StreamApp

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
    return created


def fetched(offset: int, generation_id: int) -> ConsumerMessage:
    return ConsumerMessage(TOPIC_PARTITION.topic, TOPIC_PARTITION.partition, offset, 0.0, 0, [], b"k", b"v", None,
                   tp=TOPIC_PARTITION, generation_id=generation_id)


def test_records_of_the_current_generation_become_committable(consumer: CurrentGenerationConsumer) -> None:
    for offset in (0, 1, 2):
        assert fetched(offset, generation_id=7).ack(consumer)
    assert consumer._new_offset(TOPIC_PARTITION) == 3


def test_records_skipped_as_stale_after_a_rebalance_are_not_committed(consumer: CurrentGenerationConsumer) -> None:
    stale = [fetched(offset, generation_id=6) for offset in (5, 6, 7)]
    for message in stale:
        consumer._unacked_messages.add(message)
        assert not message.ack(consumer)
    assert all(message.acked for message in stale)
    assert not consumer._unacked_messages  # a rebalance's wait for unacked records does not hang on them
    assert consumer._new_offset(TOPIC_PARTITION) is None
    assert fetched(0, generation_id=7).ack(consumer)
    assert consumer._new_offset(TOPIC_PARTITION) == 1


def test_records_acked_while_a_rebalance_suspends_the_flow_are_not_committed(
        consumer: CurrentGenerationConsumer) -> None:
    consumer.app.flow_control.suspend()
    assert not fetched(0, generation_id=7).ack(consumer)
    assert consumer._new_offset(TOPIC_PARTITION) is None
    consumer.app.flow_control.resume()
    assert fetched(0, generation_id=7).ack(consumer)  # read again from the committed offset
    assert consumer._new_offset(TOPIC_PARTITION) == 1
