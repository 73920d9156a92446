"""On the real services: a camera marked drifting on cameras.drift has its images judged with the model's stricter
thresholds by a real scoring worker (the same image from a steady camera is counted), and once it recovers its
images are counted again."""

from __future__ import annotations

import time
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
from schemas.codec import new_event
from schemas.events import Event, EventType
from schemas.ood_scores import Thresholds
from stream_apps.worker_process import WorkerProcess
from tests.controlled_models import METAL_GLASS, import_controlled, photo

pytestmark = pytest.mark.integration

WORKER_PORT = 24011
SITE = "site-floor"
# Mean red minus green of about 50: metal with logits near (15, -15), energy near -15. The regular pair (-5.0, 0.7)
# counts it; the stricter pair's energy threshold flags it.
MARGINAL = (150, 100, 128)
STRICT = Thresholds(tau_energy=-25.0, tau_softmax=0.7)


@pytest.fixture(scope="module")
def deployment(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    isolated = create_deployment(settings)
    version = import_controlled(isolated, tmp_path_factory.mktemp("model"), "m-drift-1", METAL_GLASS, STRICT)
    promote(isolated, version, promoted_by="test", source="test")
    yield isolated
    drop_deployment(isolated)


def _drift(camera: str, state: str) -> Event:
    return new_event(EventType.CAMERA_DRIFT_DETECTED, {
        "camera_id": camera, "site_id": SITE, "state": state, "model_version": "m-drift-1",
        "window": {"start": "2026-03-01T11:00:00Z", "end": "2026-03-01T12:00:00Z"}, "images": 60,
        "ood_rate": 0.4, "expected_ood_rate": 0.05, "energy_ks": 0.6, "median_energy_shift": 3.0,
        "limits": {"ood_rate": 0.25, "energy_ks": 0.3, "min_images": 50, "window_s": 3600.0},
        "reasons": ["ood_rate", "energy_ks"] if state == "drifting" else []}, "test")


def _score(deployment: Settings, reader: TopicReader, shots: list[tuple[str, int]]) -> dict[str, tuple[str, Event]]:
    """Capture MARGINAL photos (camera, seed); (topic, outcome) per camera and seed, once all were routed."""
    sink = CaptureSink(minio_client(deployment), deployment.bucket_images, EventPublisher(deployment))
    captured = {}
    for camera, seed in shots:
        event = sink.store(CapturedImage(photo(MARGINAL, seed), "image/jpeg", camera, SITE))
        sink.publish(event)
        captured[event.event_id] = f"{camera}/{seed}"
    sink.flush()
    routed: dict[str, tuple[str, Event]] = {}
    deadline = time.monotonic() + 120
    while len(routed) < len(shots) and time.monotonic() < deadline:
        reader.poll(1.0)
        for topic, events in reader.events.items():
            for event in events:
                if event.payload["captured_event_id"] in captured:
                    routed[captured[event.payload["captured_event_id"]]] = (topic, event)
    assert len(routed) == len(shots), f"{len(routed)} of {len(shots)} routed"
    return routed


def test_a_drifting_cameras_images_go_to_review_at_the_stricter_thresholds_until_it_recovers(
        deployment: Settings, tmp_path: Path) -> None:
    publisher = EventPublisher(deployment)
    publisher.publish(_drift("cam-floor", "drifting"))
    publisher.flush()
    worker = WorkerProcess(deployment, "drifting-cameras", WORKER_PORT, tmp_path).start()
    reader = TopicReader(deployment, "images.classified", "images.ood")
    try:
        health = worker.wait_healthy(120, lambda h: bool(h["model_version"]) and h["drifting_cameras"])
        assert health["drifting_cameras"] == ["cam-floor"]  # read from the topic's beginning at start

        routed = _score(deployment, reader, [("cam-floor", 1), ("cam-floor", 2), ("cam-board", 1)])
        for seed in (1, 2):
            topic, event = routed[f"cam-floor/{seed}"]
            assert topic == "images.ood" and event.payload["camera_drifting"] is True
            assert event.payload["reason"] == "energy" and event.payload["regular_reason"] is None
            assert event.payload["thresholds"] == {"tau_energy": -25.0, "tau_softmax": 0.7}
            assert event.payload["predicted_class"] == "metal"
        topic, event = routed["cam-board/1"]
        assert topic == "images.classified" and "camera_drifting" not in event.payload

        publisher.publish(_drift("cam-floor", "recovered"))
        publisher.flush()
        worker.wait_healthy(60, lambda h: h["drifting_cameras"] == [])
        topic, event = _score(deployment, reader, [("cam-floor", 3)])["cam-floor/3"]
        assert topic == "images.classified" and "camera_drifting" not in event.payload
    finally:
        reader.close()
        worker.stop()
