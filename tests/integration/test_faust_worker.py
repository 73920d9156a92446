"""faust-streaming (on aiokafka) consumes and produces against the pinned Kafka as a real worker, and the
stream apps' consumer reads a record the stream dropped again instead of committing past it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import TopicPartition

from infra.clients import kafka_consumer, kafka_producer
from infra.settings import Settings

SENT = [f"item-{i}".encode() for i in range(10)]


def _relay(settings: Settings, new_topic: Callable[..., str], tmp_path: Path, done: Callable[[list[bytes]], bool],
           **env: str) -> tuple[list[bytes], str, str]:
    """Runs the relay app on SENT until `done(received)`; the received values, the app id and the source."""
    source, sink = new_topic(), new_topic()
    app_id = f"relay-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "RELAY_APP_ID": app_id, "RELAY_BOOTSTRAP": settings.kafka_bootstrap,
           "RELAY_DATADIR": str(tmp_path / "faust"), "RELAY_SOURCE": source, "RELAY_SINK": sink, **env}
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "faust", "-A", "tests.integration.faust_relay_app", "worker", "-l", "info"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2],
    )
    try:
        producer = kafka_producer(settings)
        for value in SENT:
            producer.produce(source, value=value)
        assert producer.flush(15) == 0

        consumer = kafka_consumer(settings, group_id=f"t-{uuid.uuid4().hex}")
        consumer.assign([TopicPartition(sink, 0, 0)])
        received: list[bytes] = []
        deadline = time.monotonic() + 90
        while not done(received) and time.monotonic() < deadline and worker.poll() is None:
            received += [m.value() for m in consumer.consume(10, 1.0) if not m.error()]
        consumer.close()
        time.sleep(4)  # one more commit interval
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()
    return received, app_id, source


def _committed(settings: Settings, group: str, topic: str) -> int:
    consumer = kafka_consumer(settings, group_id=group)
    try:
        return consumer.committed([TopicPartition(topic, 0)], timeout=15)[0].offset
    finally:
        consumer.close()


def test_faust_worker_relays_records(settings: Settings, new_topic, tmp_path: Path) -> None:
    received, _, _ = _relay(settings, new_topic, tmp_path, lambda received: len(received) >= len(SENT))
    assert sorted(received) == sorted(v.upper() for v in SENT), (tmp_path / "worker.log").read_text()[-3000:]


def test_a_record_the_stream_dropped_is_read_again_and_only_then_committed(settings: Settings, new_topic,
                                                                              tmp_path: Path) -> None:
    dropped = SENT[3]
    received, app_id, source = _relay(settings, new_topic, tmp_path, lambda received: dropped.upper() in received,
                                      RELAY_STREAM_APP="1", RELAY_DROP_ONCE=dropped.decode())
    log = (tmp_path / "worker.log").read_text()
    assert set(received) == {v.upper() for v in SENT}, log[-3000:]
    assert received.index(dropped.upper()) > received.index(SENT[-1].upper())  # read again, after the rest
    assert "again from offset 3" in log
    assert _committed(settings, app_id, source) == len(SENT)
