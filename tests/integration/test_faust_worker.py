"""faust-streaming (on aiokafka) consumes and produces against the pinned Kafka as a real worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import TopicPartition

from infra.clients import kafka_consumer, kafka_producer
from infra.settings import Settings


def test_faust_worker_relays_records(settings: Settings, new_topic, tmp_path: Path) -> None:
    source, sink = new_topic(partitions=2), new_topic()
    env = {**os.environ, "RELAY_APP_ID": f"relay-{uuid.uuid4().hex[:8]}", "RELAY_BOOTSTRAP": settings.kafka_bootstrap,
           "RELAY_DATADIR": str(tmp_path / "faust"), "RELAY_SOURCE": source, "RELAY_SINK": sink}
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "faust", "-A", "tests.integration.faust_relay_app", "worker", "-l", "warn"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2],
    )
    try:
        producer = kafka_producer(settings)
        sent = [f"item-{i}".encode() for i in range(10)]
        for value in sent:
            producer.produce(source, value=value)
        assert producer.flush(15) == 0

        consumer = kafka_consumer(settings, group_id=f"t-{uuid.uuid4().hex}")
        consumer.assign([TopicPartition(sink, 0, 0)])
        received: list[bytes] = []
        deadline = time.monotonic() + 90
        while len(received) < len(sent) and time.monotonic() < deadline and worker.poll() is None:
            received += [m.value() for m in consumer.consume(10, 1.0) if not m.error()]
        consumer.close()
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()
    assert sorted(received) == sorted(v.upper() for v in sent), (tmp_path / "worker.log").read_text()[-3000:]
