"""`wastex deadletters list|replay` on the real services: a replayed dead letter is scored once, however often
it is replayed."""

from __future__ import annotations

import io
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from infra.clients import kafka_admin, kafka_consumer, kafka_producer, minio_client
from infra.db.registry import promote
from infra.deployment import create_deployment, drop_deployment, environment
from infra.provision import ensure_topics
from infra.publisher import EventPublisher
from infra.services.process import free_port
from infra.settings import Settings
from infra.topic_reader import TopicReader
from producers.capture import CapturedImage, CaptureSink
from schemas.codec import dead_letter_event, new_event
from schemas.events import DeadLetterReason, Event, EventType
from schemas.topics import IMAGES_CAPTURED, INFRA_SMOKE
from stream_apps.worker_process import WASTEX, WorkerProcess
from tests.controlled_models import METAL_GLASS, RED, import_controlled, photo

OUTPUT_TOPICS = ("images.classified", "images.ood", "dead-letters")


@pytest.fixture(scope="module")
def deployment(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    isolated = create_deployment(settings)
    version = import_controlled(isolated, tmp_path_factory.mktemp("model"), "replay-model", METAL_GLASS)
    promote(isolated, version, promoted_by="test", source="test")
    yield isolated
    drop_deployment(isolated)


def _deadletters(isolated: Settings, *args: str, exit_code: int = 0) -> str:
    done = subprocess.run([WASTEX, "deadletters", *args], env=environment(isolated), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == exit_code, done.stdout + done.stderr
    return done.stdout


def _listed(isolated: Settings, *args: str) -> list[dict]:
    return [json.loads(line) for line in _deadletters(isolated, "list", "--json", *args).splitlines()]


def _captured_end(isolated: Settings) -> int:
    """How many records images.captured holds: a replay adds one."""
    topic = IMAGES_CAPTURED.full_name(isolated.topic_prefix)
    consumer = kafka_consumer(isolated, group_id="end-offsets")
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
    finally:
        consumer.close()


def _records(isolated: Settings, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Key and value of every record of a one-partition topic."""
    consumer = kafka_consumer(isolated, group_id=f"records-{uuid.uuid4().hex}")
    try:
        end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
        consumer.assign([TopicPartition(topic, 0, 0)])
        records = []
        while len(records) < end:
            message = consumer.poll(10)
            assert message is not None, f"{topic} delivered {len(records)} of {end} records"
            records.append((message.key(), message.value()))
        return records
    finally:
        consumer.close()


def _outcomes_of(reader: TopicReader, captured: Event) -> list[tuple[str, Event]]:
    found = []
    for topic in OUTPUT_TOPICS:
        for event in reader.events[topic]:
            source = (event.payload["original_event_id"] if topic == "dead-letters"
                      else event.payload["captured_event_id"])
            if source == captured.event_id:
                found.append((topic, event))
    return found


def _poll_until(reader: TopicReader, done, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        reader.poll(1.0)


def test_a_replayed_dead_letter_is_scored_once_however_often_it_is_replayed(deployment: Settings,
                                                                            tmp_path: Path) -> None:
    worker = WorkerProcess(deployment, "replay", free_port(), tmp_path).start()
    reader = TopicReader(deployment, *OUTPUT_TOPICS)
    storage = minio_client(deployment)
    try:
        worker.wait_serving()
        sink = CaptureSink(storage, deployment.bucket_images, EventPublisher(deployment))
        image = photo(RED, 4242)
        captured = sink.store(CapturedImage(image, "image/jpeg", "cam-r", "site-t"))
        key = captured.payload["object_key"]
        storage.remove_object(deployment.bucket_images, key)
        sink.publish(captured)
        sink.flush()
        invalid = new_event(EventType.IMAGE_CAPTURED, captured.payload, "test").to_document()
        del invalid["payload"]["sha256"]
        raw = kafka_producer(deployment)
        raw.produce(IMAGES_CAPTURED.full_name(deployment.topic_prefix), key=b"cam-r", value=json.dumps(invalid))
        assert raw.flush(15) == 0
        _poll_until(reader, lambda: len(reader.events["dead-letters"]) >= 2)
        assert [(t, e.payload["reason"]) for t, e in _outcomes_of(reader, captured)] == [
            ("dead-letters", "missing_object")], worker.log_tail()

        missing = _listed(deployment, "--reason", "missing_object")
        everything = _listed(deployment, "--since", "1h")
        dry_run = _deadletters(deployment, "replay", "--reason", "missing_object", "--dry-run")
        end_after_dry_run = _captured_end(deployment)

        storage.put_object(deployment.bucket_images, key, io.BytesIO(image), len(image), content_type="image/jpeg")
        first = _deadletters(deployment, "replay", "--reason", "missing_object", "--by", "operator-1")
        end_after_replay = _captured_end(deployment)
        _poll_until(reader, lambda: len(_outcomes_of(reader, captured)) >= 2)
        second = _deadletters(deployment, "replay", "--reason", "missing_object")
        end_after_second = _captured_end(deployment)
        reader.poll(5.0)  # a second outcome, if any, would arrive by now: the first took well under that
        after = _listed(deployment, "--reason", "missing_object")
        schema_invalid = _listed(deployment, "--reason", "schema_invalid")
    finally:
        reader.close()
        worker.stop()

    assert [(row["reason"], row["original_event_id"], row["replayed"]) for row in missing] == [
        ("missing_object", captured.event_id, False)]
    assert missing[0]["original_topic"] == IMAGES_CAPTURED.full_name(deployment.topic_prefix)
    assert "NoSuchKey" in missing[0]["detail"] and missing[0]["service"] == "stream_apps.scoring"
    assert sorted(row["reason"] for row in everything) == ["missing_object", "schema_invalid"]

    assert "would replay: 1, already replayed: 0, skipped: 0" in dry_run
    assert end_after_dry_run == 2, "a dry run publishes nothing"
    assert "replayed: 1, already replayed: 0, skipped: 0" in first
    assert end_after_replay == 3
    assert "replayed: 0, already replayed: 1, skipped: 0" in second
    assert end_after_second == 3, "a second replay publishes nothing"

    outcomes = _outcomes_of(reader, captured)
    assert [(topic, event.payload.get("reason")) for topic, event in outcomes] == [
        ("images.classified", None), ("dead-letters", "missing_object")]
    assert outcomes[0][1].payload["predicted_class"] == "metal"
    assert [row["replayed"] for row in after] == [True]
    assert [row["replayed"] for row in schema_invalid] == [False], "only the selected reason is replayed"


def test_a_replay_the_broker_does_not_acknowledge_is_not_recorded_and_can_be_replayed_later(
        deployment: Settings) -> None:
    topic = INFRA_SMOKE.full_name(deployment.topic_prefix)
    letter = dead_letter_event(b"round-trip token", "the smoke check gave up", topic=topic, partition=0, offset=0,
                               key=b"token-1", service="test", reason=DeadLetterReason.PROCESSING_ERROR)
    publisher = EventPublisher(deployment)
    publisher.publish(letter)
    publisher.flush()
    admin = kafka_admin(deployment)
    admin.delete_topics([topic])[topic].result()

    failed = _deadletters(deployment, "replay", "--reason", "processing_error", exit_code=1)
    after_failure = _listed(deployment, "--reason", "processing_error")
    ensure_topics(deployment)
    later = _deadletters(deployment, "replay", "--reason", "processing_error")

    assert "failed: 1" in failed and "replayed: 0" in failed
    assert [(row["dead_letter_event_id"], row["replayed"]) for row in after_failure] == [(letter.event_id, False)]
    assert "replayed: 1, already replayed: 0, skipped: 0" in later
    assert _records(deployment, topic) == [(b"token-1", b"round-trip token")]
