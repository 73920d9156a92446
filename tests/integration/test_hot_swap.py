"""Promoted and rolled-back models reach every scoring worker without a restart, an image lost or counted twice;
a worker serves the registered bytes whatever its cache holds, and follows the registry when an announcement is lost."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from infra.clients import db_sessions, minio_client
from infra.db.models import ModelVersion
from infra.db.registry import promote, rollback
from infra.deployment import create_deployment, drop_deployment
from infra.object_store import download_prefix
from infra.publisher import EventPublisher
from infra.services.process import free_port
from infra.settings import Settings
from infra.topic_reader import TopicReader
from producers.capture import CapturedImage, CaptureSink
from schemas.events import Event
from schemas.model_artefact import CLASSES_FILE, artefact_digest
from stream_apps.worker_process import WorkerProcess
from tests.controlled_models import GREEN, GREY, METAL_GLASS, METAL_GLASS_PAPER, RED, import_controlled, photo
from tests.private_home import private_home

pytestmark = pytest.mark.integration
OUTPUT_TOPICS = ("images.classified", "images.ood", "dead-letters")
COLOURS = (RED, GREEN, GREY)


@pytest.fixture(scope="module")
def deployment(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    isolated = create_deployment(settings)
    yield isolated
    drop_deployment(isolated)


class Camera:
    """Publishes one image per call, cycling red, green and grey; remembers which phase each belongs to."""

    def __init__(self, isolated: Settings) -> None:
        self._sink = CaptureSink(minio_client(isolated), isolated.bucket_images, EventPublisher(isolated))
        self.sent: list[tuple[str, tuple[int, int, int], Event]] = []

    def shoot(self, phase: str) -> None:
        index = len(self.sent)
        colour = COLOURS[index % 3]
        event = self._sink.store(CapturedImage(photo(colour, 5000 + index), "image/jpeg", f"cam-{index % 4}", "s"))
        self._sink.publish(event)
        self.sent.append((phase, colour, event))
        time.sleep(0.04)

    def flush(self) -> None:
        self._sink.flush()


def _serving(workers: list[WorkerProcess], version: str) -> bool:
    return all(worker.wait_healthy(5)["model_version"] == version for worker in workers)


def _serve_on(isolated: Settings, version: str, runtime: str) -> None:
    with db_sessions(isolated).begin() as session:
        session.execute(update(ModelVersion).where(ModelVersion.version == version).values(serving_runtime=runtime))


def test_promotion_and_rollback_reach_every_worker_under_load(deployment: Settings, tmp_path: Path) -> None:
    first = import_controlled(deployment, tmp_path, "swap-first", METAL_GLASS)
    second = import_controlled(deployment, tmp_path, "swap-second", METAL_GLASS_PAPER)
    # Each swap also changes the runtime between two batches.
    _serve_on(deployment, first, "openvino-f32")
    _serve_on(deployment, second, "keras")
    promote(deployment, first, promoted_by="test", source="test")
    workers = [WorkerProcess(deployment, f"swap-{i}", 6091 + i, tmp_path).start() for i in range(2)]
    reader = TopicReader(deployment, *OUTPUT_TOPICS, "counts.totals")
    camera = Camera(deployment)
    try:
        for worker in workers:
            worker.wait_healthy(ready=lambda health: health["model_version"] == first)
        for _ in range(24):
            camera.shoot("first")
        promote(deployment, second, promoted_by="test", source="test")
        promoted = time.monotonic()
        # How fast a swap lands is `wastex bench swap`'s figure; here only that it lands, under a generous bound.
        while not _serving(workers, second):  # images keep coming while the workers swap
            camera.shoot("swapping")
            assert time.monotonic() - promoted < 120, "the promoted model did not reach every worker"
        for _ in range(24):
            camera.shoot("second")
        swapped = [worker.wait_healthy(5) for worker in workers]
        rolled_back = rollback(deployment, None, promoted_by="test", source="test")
        while not _serving(workers, first):
            camera.shoot("swapping")
            assert time.monotonic() - promoted < 240, "the rollback did not reach every worker"
        for _ in range(24):
            camera.shoot("first again")
        camera.flush()
        captured = {event.event_id for _, _, event in camera.sent}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not captured <= _outcomes(reader).keys():
            reader.poll(1.0)
        reader.poll(4.0)  # a duplicate would arrive late; so would the last counts
        health = [worker.wait_healthy(5) for worker in workers]
    finally:
        reader.close()
        for worker in workers:
            worker.stop()

    assert rolled_back.payload["model_version"] == first and rolled_back.payload["action"] == "rollback"
    assert all(entry["model_version"] == first for entry in health)
    assert {(entry["runtime"], entry["runtime_because"]) for entry in swapped} == {("keras", "the registry's choice")}
    assert {entry["runtime"] for entry in health} == {"openvino-f32"}
    assert all({"litert", "keras"} <= entry["runtime_candidates"].keys() for entry in health)
    outcomes = _outcomes(reader)
    assert {event_id: len(found) for event_id, found in outcomes.items() if event_id in captured} == \
        {event_id: 1 for event_id in captured}  # none lost, none twice
    served = {phase: Counter() for phase in ("first", "second", "first again")}
    for phase, colour, event in camera.sent:
        topic, outcome = outcomes[event.event_id][0]
        assert topic != "dead-letters", outcome.payload
        if phase in served:
            label = outcome.payload["predicted_class"] if topic == "images.classified" else None
            served[phase][(colour, outcome.payload["model_version"], label)] += 1
    assert served["first"] == {(RED, first, "metal"): 8, (GREEN, first, "glass"): 8, (GREY, first, None): 8}
    assert served["second"] == {(RED, second, "metal"): 8, (GREEN, second, "glass"): 8, (GREY, second, "paper"): 8}
    assert served["first again"] == {(RED, first, "metal"): 8, (GREEN, first, "glass"): 8, (GREY, first, None): 8}
    papers = sum(1 for topic, outcome in (outcomes[e.event_id][0] for _, _, e in camera.sent)
                 if topic == "images.classified" and outcome.payload["predicted_class"] == "paper")
    counts = {event.payload["key"]: event.payload["count"] for event in reader.events["counts.totals"]
              if event.payload["scope"] == "class"}
    assert counts["paper"] == papers >= 8  # the new class is counted as soon as the new model serves


def _outcomes(reader: TopicReader) -> dict[str, list[tuple[str, Event]]]:
    """Outcomes per captured event id, as consumers see them: an outcome event read twice (a record read again
    after a stall) is one outcome, since every consumer of its topic drops a repeated event id."""
    found: dict[str, dict[tuple[str, str], tuple[str, Event]]] = {}
    for topic in OUTPUT_TOPICS:
        for event in reader.events[topic]:
            captured = event.payload.get("captured_event_id") or event.payload.get("original_event_id")
            found.setdefault(captured, {}).setdefault((topic, event.event_id), (topic, event))
    return {captured: list(events.values()) for captured, events in found.items()}


def _digest_of(isolated: Settings, version: str) -> str:
    with db_sessions(isolated)() as session:
        return session.scalars(select(ModelVersion.artefact_digest).where(ModelVersion.version == version)).one()


def _cached(isolated: Settings, version: str, target: Path) -> Path:
    """A worker cache folder filled with the registered artefact of `version`."""
    download_prefix(minio_client(isolated), isolated.bucket_models, version, target)
    return target


def test_a_worker_serves_the_registered_bytes_whatever_its_cache_holds_and_follows_the_registry(
        deployment: Settings, tmp_path: Path) -> None:
    """The cache holds another model under the production version's name (how a stale test model once served)
    and, under the registered digest, the registered model with its class names swapped: both are ignored and the
    registered artefact is served. Then production moves without an announcement: the registry check finds it."""
    tag = uuid.uuid4().hex[:6]
    registered = import_controlled(deployment, tmp_path, f"cache-{tag}", METAL_GLASS)
    other = import_controlled(deployment, tmp_path, f"cache-other-{tag}", METAL_GLASS_PAPER)
    digest, other_digest = _digest_of(deployment, registered), _digest_of(deployment, other)
    home, credentials = private_home(deployment, tmp_path / "home")
    models = home.state_dir / "models"
    _cached(deployment, other, models / registered)
    tampered = _cached(deployment, registered, models / digest)
    (tampered / CLASSES_FILE).write_text("glass\nmetal\n")
    promote(deployment, registered, promoted_by="test", source="test")
    worker = WorkerProcess(home, f"cache-{tag}", free_port(), tmp_path, WASTEX_REGISTRY_CHECK_S="1",
                           **credentials).start()
    reader = TopicReader(deployment, *OUTPUT_TOPICS)
    camera = Camera(deployment)
    try:
        health = worker.wait_serving()
        for _ in range(6):
            camera.shoot("registered")
        camera.flush()
        captured = {event.event_id for _, _, event in camera.sent}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not captured <= _outcomes(reader).keys():
            reader.poll(1.0)
        with db_sessions(deployment).begin() as session:  # a promotion whose announcement never arrived
            session.scalars(select(ModelVersion).where(ModelVersion.version == registered)).one().status = "retired"
            session.flush()  # first: the registry refuses a second production row
            session.scalars(select(ModelVersion).where(ModelVersion.version == other)).one().status = "production"
        healed = worker.wait_healthy(60, lambda health: health["model_version"] == other)
    finally:
        reader.close()
        worker.stop()

    assert (health["model_version"], health["model_digest"], health["status"]) == (registered, digest, "ok")
    assert artefact_digest(models / digest) == digest  # the tampered copy was replaced by the registered bytes
    outcomes = _outcomes(reader)
    served = Counter()
    for _, colour, event in camera.sent:
        ((topic, outcome),) = outcomes[event.event_id]
        label = outcome.payload["predicted_class"] if topic == "images.classified" else topic
        served[(colour, label, outcome.payload.get("model_version"), outcome.payload.get("model_digest"))] += 1
    assert served == {(RED, "metal", registered, digest): 2, (GREEN, "glass", registered, digest): 2,
                      (GREY, "images.ood", registered, digest): 2}
    assert (healed["model_digest"], healed["status"]) == (other_digest, "ok")
