"""The scoring worker through real outages: it waits for MinIO and for the Kafka broker, loses nothing, dead-letters
nothing, and every captured image is scored exactly once."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.clients import minio_client
from infra.db.registry import promote
from infra.deployment import create_deployment, drop_deployment
from infra.publisher import EventPublisher
from infra.settings import Settings
from infra.topic_reader import TopicReader
from producers.capture import CapturedImage, CaptureSink
from schemas.events import Event
from stream_apps.worker_process import WorkerProcess
from tests.controlled_models import GREEN, GREY, METAL_GLASS, RED, controlled_model, photo
from tests.outages import stopped
from training_job.model_registry import import_model

CLASSES, CLASS_WEIGHTS = METAL_GLASS
OUTPUT_TOPICS = ("images.classified", "images.ood", "dead-letters")
OUTAGE_S = 8
# Short waits keep the test short; a delete delay longer than the test keeps every image for a rescore.
WORKER_ENV = {"WASTEX_RETRY_MAX_DELAY_S": "2", "WASTEX_DELETE_DELAY_S": "600"}


@pytest.fixture(scope="module")
def deployment(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    isolated = create_deployment(settings)
    model_file = controlled_model(tmp_path_factory.mktemp("model") / "controlled.keras", CLASS_WEIGHTS)
    imported = import_model(isolated, model_file, CLASSES, tau_energy=-5.0, tau_softmax=0.7)
    promote(isolated, imported.version, promoted_by="test", source="test")
    yield isolated
    drop_deployment(isolated)


def _store_images(sink: CaptureSink, count: int, seed: int) -> list[Event]:
    colours = [RED, GREEN, GREY]
    return [sink.store(CapturedImage(photo(colours[i % 3], seed + i), "image/jpeg", f"cam-{i % 4}", "site-o"))
            for i in range(count)]


def _publish(sink: CaptureSink, events: list[Event]) -> None:
    for event in events:
        sink.publish(event)
    sink.flush()


def _outcomes_per_image(reader: TopicReader, captured: set[str], timeout_s: float = 180) -> Counter[str]:
    """How many outcomes each captured event got (the module's earlier tests' events included), once each of
    `captured` got one, and a few seconds more for any repeat."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not captured <= set(_count_outcomes(reader)):
        reader.poll(1.0)
    reader.poll(3.0)
    return _count_outcomes(reader)


def _count_outcomes(reader: TopicReader) -> Counter[str]:
    per_image: Counter[str] = Counter()
    for topic in ("images.classified", "images.ood"):
        # A resent copy carries the same event id: consumers drop it, so it is not a second outcome.
        per_image.update({e.payload["captured_event_id"] for e in reader.events[topic]})
    per_image.update({e.payload["original_event_id"] for e in reader.events["dead-letters"]})
    return per_image


def _unlike_once(per_image: Counter[str], events: list[Event]) -> dict[str, int]:
    """The captured events (by their position in `events`) that did not get exactly one outcome: index -> count."""
    return {index: per_image[e.event_id] for index, e in enumerate(events) if per_image[e.event_id] != 1}


def _wait_for_health(worker: WorkerProcess, status: str, timeout_s: float = 60) -> dict:
    return worker.wait_healthy(timeout_s, lambda health: health.get("status") == status)


def test_images_captured_while_minio_is_down_wait_and_are_scored_once_it_is_back(
        deployment: Settings, tmp_path: Path) -> None:
    worker = WorkerProcess(deployment, "minio-outage", 6111, tmp_path, **WORKER_ENV).start()
    reader = TopicReader(deployment, *OUTPUT_TOPICS)
    sink = CaptureSink(minio_client(deployment), deployment.bucket_images, EventPublisher(deployment))
    try:
        worker.wait_serving()
        before, during = _store_images(sink, 12, 100), _store_images(sink, 12, 200)
        _publish(sink, before)
        with stopped(deployment, "minio"):
            _publish(sink, during)  # their bytes were stored before the outage; fetching them fails now
            degraded = _wait_for_health(worker, "degraded")
            time.sleep(OUTAGE_S)
        per_image = _outcomes_per_image(reader, {e.event_id for e in before + during})
        recovered = _wait_for_health(worker, "ok")
    finally:
        reader.close()
        alive = worker.process.poll() is None
        worker.stop()

    assert alive, worker.log_tail()
    assert any("minio" in waiting["for"] for waiting in degraded["waiting"]), degraded
    assert reader.events["dead-letters"] == [], [e.payload["detail"] for e in reader.events["dead-letters"]]
    assert _unlike_once(per_image, before + during) == {}, worker.log_tail()
    assert recovered["status"] == "ok"


def test_a_worker_survives_a_broker_outage_and_one_started_during_it_comes_up_with_the_broker(
        deployment: Settings, tmp_path: Path) -> None:
    first = WorkerProcess(deployment, "kafka-outage-1", 6112, tmp_path, **WORKER_ENV).start()
    second = WorkerProcess(deployment, "kafka-outage-2", 6113, tmp_path, **WORKER_ENV)
    sink = CaptureSink(minio_client(deployment), deployment.bucket_images, EventPublisher(deployment))
    reader = TopicReader(deployment, *OUTPUT_TOPICS)
    try:
        first.wait_serving()
        before, after = _store_images(sink, 48, 300), _store_images(sink, 12, 400)
        _publish(sink, before)
        while not {e.event_id for e in before} & set(_count_outcomes(reader)):  # mid-stream: the worker scores
            reader.poll(0.2)
        with stopped(deployment, "kafka"):
            second.start()
            time.sleep(OUTAGE_S)
            alive_in_outage = first.process.poll() is None and second.process.poll() is None
        second.wait_serving()
        _publish(sink, after)
        per_image = _outcomes_per_image(reader, {e.event_id for e in before + after})
        alive = first.process.poll() is None and second.process.poll() is None
    finally:
        reader.close()
        first.stop()
        second.stop()

    assert alive_in_outage and alive, f"{first.log_tail()}\n{second.log_tail()}"
    assert reader.events["dead-letters"] == [], [e.payload["detail"] for e in reader.events["dead-letters"]]
    assert _unlike_once(per_image, before + after) == {}
