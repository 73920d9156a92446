"""Both client libraries of the project (confluent-kafka and faust's aiokafka) against the pinned broker."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Producer, TopicPartition

from infra.clients import kafka_consumer, kafka_producer
from infra.kafka_security import aiokafka_kwargs, confluent_config
from infra.settings import Settings


def _drain(consumer: Consumer, topic: str, partitions: int, expected: int) -> list[bytes]:
    """Read until `expected` records arrived (15 s at most), then 2 s more to catch any extra."""
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values: list[bytes] = []
    deadline = time.monotonic() + 15
    while len(values) < expected and time.monotonic() < deadline:
        values += [m.value() for m in consumer.consume(expected - len(values), 0.5) if not m.error()]
    values += [m.value() for m in consumer.consume(100, 2.0) if not m.error()]
    return values


def test_confluent_produce_and_consume(settings: Settings, new_topic) -> None:
    topic = new_topic(partitions=3)
    producer = kafka_producer(settings)
    sent = [f"m{i}".encode() for i in range(30)]
    for i, value in enumerate(sent):
        producer.produce(topic, key=f"k{i % 5}", value=value)
    assert producer.flush(15) == 0

    consumer = kafka_consumer(settings, group_id=f"t-{uuid.uuid4().hex}")
    try:
        received = _drain(consumer, topic, 3, expected=len(sent))
    finally:
        consumer.close()
    assert sorted(received) == sorted(sent)


def test_confluent_transaction_commit_and_abort(settings: Settings, new_topic) -> None:
    topic = new_topic()
    producer = Producer({**confluent_config(settings),
                         "transactional.id": f"tx-{uuid.uuid4().hex}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"committed")
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"aborted")
    producer.flush(15)
    producer.abort_transaction(30)

    committed_reader = kafka_consumer(settings, group_id=f"t-{uuid.uuid4().hex}",
                                      **{"isolation.level": "read_committed"})
    raw_reader = kafka_consumer(settings, group_id=f"t-{uuid.uuid4().hex}",
                                **{"isolation.level": "read_uncommitted"})
    try:
        assert _drain(committed_reader, topic, 1, expected=1) == [b"committed"]
        # The aborted record is in the log: a read_uncommitted reader proves it was really written.
        assert _drain(raw_reader, topic, 1, expected=2) == [b"committed", b"aborted"]
    finally:
        committed_reader.close()
        raw_reader.close()


async def _aiokafka_round_trip(settings: Settings, topic: str) -> tuple[list[bytes], list[bytes]]:
    plain = AIOKafkaProducer(**aiokafka_kwargs(settings), enable_idempotence=True)
    await plain.start()
    try:
        await plain.send_and_wait(topic, b"plain")
    finally:
        await plain.stop()
    producer = AIOKafkaProducer(**aiokafka_kwargs(settings), transactional_id=f"tx-{uuid.uuid4().hex}")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(topic, b"in-committed-tx")
        await producer.begin_transaction()
        await producer.send(topic, b"in-aborted-tx")
        await producer.abort_transaction()
    finally:
        await producer.stop()

    async def read(isolation: str, wanted: int) -> list[bytes]:
        consumer = AIOKafkaConsumer(topic, **aiokafka_kwargs(settings), group_id=f"t-{uuid.uuid4().hex}",
                                    auto_offset_reset="earliest", isolation_level=isolation)
        await consumer.start()
        values: list[bytes] = []
        try:
            while len(values) < wanted:
                batch = await consumer.getmany(timeout_ms=1000)
                if not batch:
                    break
                values += [record.value for records in batch.values() for record in records]
        finally:
            await consumer.stop()
        return values

    return await read("read_committed", 2), await read("read_uncommitted", 3)


def test_aiokafka_produce_consume_and_transactions(settings: Settings, new_topic) -> None:
    topic = new_topic()
    committed, uncommitted = asyncio.run(_aiokafka_round_trip(settings, topic))
    assert committed == [b"plain", b"in-committed-tx"]
    assert uncommitted == [b"plain", b"in-committed-tx", b"in-aborted-tx"]
