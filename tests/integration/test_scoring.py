"""The scoring worker on the real services: every captured image ends in exactly one outcome, counts exact."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from confluent_kafka import TopicPartition
from minio.error import S3Error

from infra.clients import kafka_consumer, kafka_producer, minio_client
from infra.db.registry import promote
from infra.deployment import create_deployment, drop_deployment
from infra.publisher import EventPublisher
from infra.settings import Settings
from infra.topic_reader import TopicReader
from producers.capture import CapturedImage, CaptureSink
from schemas.codec import new_event
from schemas.events import Event, EventType
from schemas.topics import IMAGES_CAPTURED
from stream_apps.worker_process import WorkerProcess
from tests.controlled_models import GREEN, GREY, METAL_GLASS, RED, controlled_model, photo
from tests.images import png_header_only
from training_job.model_registry import import_model

CLASSES, CLASS_WEIGHTS = METAL_GLASS
OUTPUT_TOPICS = ("images.classified", "images.ood", "dead-letters")
MAX_BYTES = 150_000


@pytest.fixture(scope="module")
def deployment(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    isolated = create_deployment(settings)
    model_file = controlled_model(tmp_path_factory.mktemp("model") / "controlled.keras", CLASS_WEIGHTS)
    imported = import_model(isolated, model_file, CLASSES, tau_energy=-5.0, tau_softmax=0.7)
    assert imported.export.exported, imported.export.detail
    promote(isolated, imported.version, promoted_by="test", source="test")
    yield isolated
    drop_deployment(isolated)


def _sink(isolated: Settings) -> CaptureSink:
    return CaptureSink(minio_client(isolated), isolated.bucket_images, EventPublisher(isolated))


def _wait_for_outcomes(reader: TopicReader, captured_ids: set[str], timeout_s: float = 180) -> dict[str, set[str]]:
    """Captured event id -> the output topics it reached, once every captured id reached one."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reader.poll(1.0)
        if captured_ids <= set(_outcomes(reader)):
            break
    return _outcomes(reader)


def _captured_id(topic: str, event: Event) -> str:
    if topic == "dead-letters":
        return event.payload["original_event_id"] or event.payload["original"]["offset"]
    return event.payload["captured_event_id"]


def _outcomes(reader: TopicReader) -> dict[str, set[str]]:
    reached: dict[str, set[str]] = {}
    for topic in OUTPUT_TOPICS:
        for event in reader.events[topic]:
            reached.setdefault(_captured_id(topic, event), set()).add(topic)
    return reached


def _wait_until_deleted(deployment: Settings, key: str, timeout_s: float) -> bool:
    storage, deadline = minio_client(deployment), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            storage.stat_object(deployment.bucket_images, key)
        except S3Error:
            return True
        time.sleep(0.5)
    return False


def _latest_counts(reader: TopicReader) -> dict[tuple[str, str], int]:
    latest = {}
    for event in reader.events["counts.totals"]:
        latest[(event.payload["scope"], event.payload["key"])] = event.payload["count"]
    return latest


def test_every_image_is_classified_flagged_or_dead_lettered_once(deployment: Settings, tmp_path: Path) -> None:
    worker = WorkerProcess(deployment, "single", 6081, tmp_path, WASTEX_MAX_IMAGE_BYTES=str(MAX_BYTES),
                           WASTEX_DELETE_DELAY_S="0").start()
    reader = TopicReader(deployment, *OUTPUT_TOPICS, "counts.totals")
    try:
        worker.wait_serving()
        sink = _sink(deployment)
        good = [(RED, i) for i in range(6)] + [(GREEN, i) for i in range(6, 10)] + [(GREY, i) for i in range(10, 13)]
        events = {colour_seed: sink.store(CapturedImage(photo(*colour_seed), "image/jpeg", "cam-a", "site-t"))
                  for colour_seed in good}
        bad = {
            "not_an_image": sink.store(CapturedImage(b"plain text, not pixels", "image/jpeg", "cam-b", "site-t")),
            "truncated_image": sink.store(CapturedImage(photo(RED, 99)[:400], "image/jpeg", "cam-b", "site-t")),
            "too_many_pixels": sink.store(CapturedImage(png_header_only(60_000, 60_000), "image/png", "cam-b",
                                                        "site-t")),
            "too_many_bytes": sink.store(CapturedImage(
                np.random.default_rng(1).integers(0, 255, 300_000, dtype=np.uint8).tobytes(), "image/png",
                "cam-b", "site-t")),
            "missing_object": sink.store(CapturedImage(photo(GREEN, 98), "image/jpeg", "cam-b", "site-t")),
        }
        minio_client(deployment).remove_object(deployment.bucket_images, bad["missing_object"].payload["object_key"])
        for event in [*events.values(), *bad.values()]:
            sink.publish(event)
        sink.flush()
        raw = kafka_producer(deployment)
        topic = IMAGES_CAPTURED.full_name(deployment.topic_prefix)
        invalid = new_event(EventType.IMAGE_CAPTURED, events[(RED, 0)].payload, "test").to_document()
        del invalid["payload"]["sha256"]
        raw.produce(topic, key=b"cam-c", value=json.dumps(invalid).encode())
        raw.produce(topic, key=b"cam-c", value=b"\x00\x01 not json")
        assert raw.flush(15) == 0

        expected_ids = {e.event_id for e in [*events.values(), *bad.values()]} | {invalid["event_id"]}
        reached = _wait_for_outcomes(reader, expected_ids)
        reader.poll(3.0)  # counts are published after the outcomes
        # A classified image goes once its record's offset is committed (the next commits come every few s).
        deleted = _wait_until_deleted(deployment, events[(RED, 0)].payload["object_key"], 60)
    finally:
        reader.close()
        alive = worker.process.poll() is None
        worker.stop()

    assert alive, "the worker must keep running through bad input"
    assert all(len(topics) == 1 for topics in reached.values()), reached
    assert len(reached) == len(expected_ids) + 1  # + the non-JSON record, known only by its offset
    classified = Counter(e.payload["predicted_class"] for e in reader.events["images.classified"])
    assert classified == {"metal": 6, "glass": 4}
    ood = reader.events["images.ood"]
    assert {e.payload["captured_event_id"] for e in ood} == {events[(GREY, i)].event_id for i in range(10, 13)}
    assert all(e.payload["reason"] == "both" and len(e.payload["probabilities"]) == 2 for e in ood)
    reasons = {e.payload["reason"]: e for e in reader.events["dead-letters"]}
    assert set(reasons) == {*bad, "schema_invalid", "malformed_event"}
    for reason, event in bad.items():
        assert reasons[reason].payload["original_event_id"] == event.event_id
    assert "sha256" in reasons["schema_invalid"].payload["detail"]

    counts = _latest_counts(reader)
    assert (counts[("class", "metal")], counts[("class", "glass")], counts[("camera", "cam-a")]) == (6, 4, 10)
    # The ten images were counted in chunks: fewer state writes than images (this is the module's first worker).
    assert 1 <= _records_written(deployment, "scoring-count-state-changelog") < 10
    assert deleted, "a classified capture is deleted ..."
    # ... out-of-distribution ones stay for review
    minio_client(deployment).stat_object(deployment.bucket_images, events[(GREY, 10)].payload["object_key"])


@pytest.mark.parametrize("kill", [False, True], ids=["terminated", "killed"])
def test_two_workers_one_restarted_mid_stream_keep_counts_exact(deployment: Settings, tmp_path: Path,
                                                                  kill: bool) -> None:
    first = WorkerProcess(deployment, "pair-1", 6082, tmp_path).start()
    second = WorkerProcess(deployment, "pair-2", 6083, tmp_path).start()
    reader = TopicReader(deployment, *OUTPUT_TOPICS, "counts.totals")
    reader.poll(2.0)
    baseline_counts = _latest_counts(reader)
    sink = _sink(deployment)
    colours = [RED, GREEN, GREY]
    sent: list[Event] = []
    try:
        first.wait_serving()
        second.wait_serving()
        for index in range(150):
            colour = colours[index % 3]
            event = sink.store(CapturedImage(photo(colour, 1000 + index), "image/jpeg", f"cam-{index % 5}",
                                             "site-t"))
            sink.publish(event)
            sent.append(event)
            if index == 50:
                sink.flush()
                first.stop(kill=kill)  # a restart while images keep arriving; kill -9 gives no chance to commit
                first.start()
            time.sleep(0.03)
        sink.flush()
        reached = _wait_for_outcomes(reader, {e.event_id for e in sent}, timeout_s=240)
        first.wait_serving()
        classified = {e.payload["captured_event_id"]: e.payload["predicted_class"]
                      for e in reader.events["images.classified"]}
        expected = Counter(classified[e.event_id] for e in sent if e.event_id in classified)
        counts = _wait_for_counts(reader, baseline_counts, expected)
        page = requests.get("http://127.0.0.1:6083/counts/", timeout=10)
        behind = _uncommitted(deployment, ("images.captured", "images.classified", "counts.partition-snapshots"))
    finally:
        reader.close()
        first.stop()
        second.stop()

    ids = {e.event_id for e in sent}
    assert ids <= set(reached), f"lost: {len(ids - set(reached))}\n{first.log_tail()}"
    assert all(len(reached[i]) == 1 for i in ids)
    assert expected == {"metal": 50, "glass": 50}
    assert {name: counts[("class", name)] - baseline_counts.get(("class", name), 0) for name in CLASSES} == expected
    assert page.json()["totals"]["class"] == {name: counts[("class", name)] for name in CLASSES}
    assert not behind, f"records consumed but never committed: {behind}"


def _records_written(isolated: Settings, name: str) -> int:
    """How many records were ever written to a topic of the deployment (the sum of its partitions' end offsets)."""
    consumer = kafka_consumer(isolated, group_id=f"{isolated.topic_prefix}test-reader")
    topic = f"{isolated.topic_prefix}{name}"
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
    finally:
        consumer.close()


def _uncommitted(isolated: Settings, topics: tuple[str, ...], timeout_s: float = 45) -> dict[str, int]:
    """Per topic, how many records lie beyond the scoring group's committed offsets, once none do or at timeout."""
    consumer = kafka_consumer(isolated, group_id=f"{isolated.topic_prefix}scoring")
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            behind: dict[str, int] = {}
            for name in topics:
                topic = f"{isolated.topic_prefix}{name}"
                partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
                for committed in consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10):
                    end = consumer.get_watermark_offsets(committed, timeout=10)[1]
                    behind[name] = behind.get(name, 0) + end - max(committed.offset, 0)
            behind = {name: count for name, count in behind.items() if count}
            if not behind or time.monotonic() > deadline:
                return behind
            time.sleep(1.0)
    finally:
        consumer.close()


def _wait_for_counts(reader: TopicReader, baseline: dict[tuple[str, str], int], expected: Counter[str],
                     timeout_s: float = 60) -> dict[tuple[str, str], int]:
    """The latest published totals, once they reach baseline + expected (counting follows the outcomes)."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = _latest_counts(reader)
        grown = {name: counts.get(("class", name), 0) - baseline.get(("class", name), 0) for name in expected}
        if grown == expected or time.monotonic() > deadline:
            reader.poll(3.0)  # and nothing more arrives after them
            return _latest_counts(reader)
        reader.poll(1.0)
