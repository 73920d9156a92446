"""What serves is what is registered: a real trained model's stream predictions equal the offline predictions of
the same registered artefact, one for one; a version name never names two contents; a worker started while a
store is down waits for it, then serves."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from infra.clients import db_sessions, minio_client
from infra.db.models import ModelVersion
from infra.db.registry import RegistryError, production_model, promote
from infra.object_store import download_prefix
from infra.publisher import EventPublisher, PublishError
from infra.services.process import free_port
from infra.settings import Settings
from infra.topic_reader import TopicReader
from producers.capture import CapturedImage, CaptureSink
from schemas.events import Event
from schemas.model_artefact import KERAS_FILE, artefact_digest
from schemas.ood_scores import energy_score, max_softmax
from stream_apps.scoring.active_model import load_model_folder
from stream_apps.scoring.decode import ImageLimits, decode_image
from stream_apps.worker_process import WorkerProcess
from tests.controlled_models import GREEN, GREY, METAL_GLASS, METAL_GLASS_PAPER, RED, controlled_model, photo
from tests.outages import stopped
from tests.private_home import private_home
from tests.trashnet_slices import trashnet_photos, trashnet_slice
from training_job.model_registry import import_model
from training_job.trainer import TrainConfig

pytestmark = pytest.mark.integration
ROUTED = ("images.classified", "images.ood", "dead-letters")
KNOWN = ["glass", "metal", "paper"]
UNKNOWN = "plastic"  # a class the model never saw: some of its photos go to review
PER_SPLIT = {"train": 12, "val": 4, "test": 4}
SHOWN = 6  # photos per known class the stream scores, none of them trained on
# Small and quick on 2 cores, on the ImageNet backbone so the model's predictions mean something.
TINY = TrainConfig(batch_size=16, augmented_views=0, trainable_blocks=1, head_epochs=10, finetune_epochs=0)


def _publish(isolated: Settings, images: list[bytes], camera: str) -> list[Event]:
    sink = CaptureSink(minio_client(isolated), isolated.bucket_images, EventPublisher(isolated))
    events = []
    for data in images:
        event = sink.store(CapturedImage(data, "image/jpeg", camera, "site-served"))
        sink.publish(event)
        events.append(event)
    sink.flush()
    return events


def _routed(isolated: Settings, captured: list[Event], timeout_s: float = 180) -> dict[str, tuple[str, Event]]:
    """The one outcome of each captured event, by captured event id (asserts none is missing or doubled)."""
    wanted = {event.event_id for event in captured}
    reader = TopicReader(isolated, *ROUTED)
    found: dict[str, list[tuple[str, Event]]] = {}
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not wanted <= found.keys():
            reader.poll(1.0)
            found = {}
            for topic in ROUTED:
                for event in reader.events[topic]:
                    key = event.payload.get("captured_event_id") or event.payload.get("original_event_id")
                    found.setdefault(key, []).append((topic, event))
    finally:
        reader.close()
    assert {key: len(found.get(key, [])) for key in wanted} == dict.fromkeys(wanted, 1)
    return {key: found[key][0] for key in wanted}


def _digest_of(isolated: Settings, version: str) -> str | None:
    with db_sessions(isolated)() as session:
        return session.scalars(select(ModelVersion.artefact_digest).where(ModelVersion.version == version)).one()


def test_the_streams_predictions_of_a_real_trained_model_equal_its_offline_predictions(
        deployment: Settings, trashnet: Path, tmp_path: Path) -> None:
    from training_job.dataset_source import load_dataset
    from training_job.training_run import run_training

    data = trashnet_slice(trashnet, tmp_path / "data", KNOWN, PER_SPLIT)
    trained = run_training(load_dataset(data), tmp_path / "trained", TINY)
    version = f"real-{uuid.uuid4().hex[:6]}"
    imported = import_model(deployment, trained.out_dir / KERAS_FILE, trained.classes, version=version,
                            tau_energy=trained.thresholds.tau_energy, tau_softmax=trained.thresholds.tau_softmax)
    promote(deployment, version, promoted_by="test", source="test")
    skip = sum(PER_SPLIT.values())
    photos = [path for name in KNOWN for path in trashnet_photos(trashnet, name, skip, SHOWN)]
    photos += trashnet_photos(trashnet, UNKNOWN, 0, SHOWN)
    images = [path.read_bytes() for path in photos]

    home, credentials = private_home(deployment, tmp_path / "home")
    worker = WorkerProcess(home, f"served-{version}", free_port(), tmp_path, **credentials).start()
    try:
        health = worker.wait_serving(300)
        captured = _publish(deployment, images, "cam-served")
        routed = _routed(deployment, captured)
    finally:
        worker.stop()

    # Offline: the registered artefact as stored, through the worker's own decode and runtime.
    folder = tmp_path / "offline"
    download_prefix(minio_client(deployment), deployment.bucket_models, version, folder)
    model = load_model_folder(version, folder)
    limits = ImageLimits(deployment.max_image_bytes, deployment.max_image_pixels)
    logits = model.runtime.logits(np.stack([decode_image(data, model.input_size, limits) for data in images])
                                  .astype(np.float32))
    offline = [model.classes[index] for index in logits.argmax(axis=1)]
    offline_ood = (energy_score(logits) > model.thresholds.tau_energy) | \
        (max_softmax(logits) < model.thresholds.tau_softmax)

    assert model.digest == artefact_digest(folder) == imported.artefact_digest == _digest_of(deployment, version)
    assert (health["model_version"], health["model_digest"]) == (version, imported.artefact_digest)
    stream = [routed[event.event_id] for event in captured]
    assert [topic for topic, _ in stream] == ["images.ood" if ood else "images.classified" for ood in offline_ood]
    assert [event.payload["predicted_class"] for _, event in stream] == offline  # one for one
    assert {(event.payload["model_version"], event.payload["model_digest"]) for _, event in stream} == \
        {(version, imported.artefact_digest)}
    assert len(set(offline[:len(KNOWN) * SHOWN])) >= 2, f"a degenerate model proves little: {offline}"


def test_a_version_name_is_never_registered_twice_with_different_content(deployment: Settings,
                                                                           tmp_path: Path) -> None:
    version = f"named-{uuid.uuid4().hex[:6]}"
    classes, weights = METAL_GLASS
    first = import_model(deployment, controlled_model(tmp_path / "first.keras", weights), classes, version=version,
                         tau_energy=-5.0, tau_softmax=0.7)
    again = import_model(deployment, tmp_path / "first.keras", classes, version=version, tau_energy=-5.0,
                         tau_softmax=0.7)
    other_classes, other_weights = METAL_GLASS_PAPER
    with pytest.raises(RegistryError, match=f"{version}.*already registered with other content"):
        import_model(deployment, controlled_model(tmp_path / "other.keras", other_weights), other_classes,
                     version=version, tau_energy=-5.0, tau_softmax=0.7)
    with pytest.raises(RegistryError, match="other content"):  # the same weights with other thresholds
        import_model(deployment, tmp_path / "first.keras", classes, version=version, tau_energy=-3.0,
                     tau_softmax=0.7)
    stored = tmp_path / "stored"
    download_prefix(minio_client(deployment), deployment.bucket_models, version, stored)

    assert not first.already_registered and again.already_registered
    assert first.artefact_digest == again.artefact_digest == _digest_of(deployment, version)
    assert artefact_digest(stored) == first.artefact_digest  # the refused imports uploaded nothing over it


def test_a_model_registered_without_a_digest_is_never_promoted(deployment: Settings) -> None:
    version = f"legacy-{uuid.uuid4().hex[:6]}"
    with db_sessions(deployment).begin() as session:
        session.add(ModelVersion(version=version, artefact_uri=f"s3://{deployment.bucket_models}/{version}",
                                 classes=["metal", "glass"], tau_energy=-5.0, tau_softmax=0.7, metrics={},
                                 status="candidate"))
    with pytest.raises(RegistryError, match="without a content digest"):
        promote(deployment, version, promoted_by="test", source="test")
    with db_sessions(deployment)() as session:
        assert session.scalars(select(ModelVersion.status).where(ModelVersion.version == version)).one() == "candidate"


@pytest.mark.parametrize("store", ["minio", "postgres"])
def test_a_worker_started_while_a_store_is_down_waits_and_then_serves(
        settings: Settings, deployment: Settings, tmp_path: Path, store: str) -> None:
    version = f"outage-{store}-{uuid.uuid4().hex[:6]}"
    classes, weights = METAL_GLASS
    imported = import_model(deployment, controlled_model(tmp_path / "model.keras", weights), classes,
                            version=version, tau_energy=-5.0, tau_softmax=0.7)
    promote(deployment, version, promoted_by="test", source="test")
    home, credentials = private_home(deployment, tmp_path / "home")  # an empty cache: the artefact must be fetched
    worker = WorkerProcess(home, f"outage-{store}", free_port(), tmp_path, WASTEX_RETRY_MAX_DELAY_S="2",
                           **credentials)
    try:
        with stopped(settings, store):
            worker.start()
            waiting = worker.wait_healthy(180, lambda health: health["status"] == "degraded")
        serving = worker.wait_healthy(180, lambda health: health["model_version"] == version)
        captured = _publish(deployment, [photo(colour, 7000 + i) for i, colour in enumerate((RED, GREEN, GREY))],
                            f"cam-{store}")
        routed = _routed(deployment, captured)
    finally:
        worker.stop()

    assert waiting["model_version"] is None and "model" in {entry["for"] for entry in waiting["waiting"]}
    assert (serving["model_digest"], serving["status"]) == (imported.artefact_digest, "ok")
    outcomes = [routed[event.event_id] for event in captured]
    assert [topic for topic, _ in outcomes] == ["images.classified", "images.classified", "images.ood"]
    assert [event.payload["predicted_class"] for _, event in outcomes[:2]] == ["metal", "glass"]
    assert {event.payload["model_digest"] for _, event in outcomes} == {imported.artefact_digest}


def test_a_promotion_kafka_did_not_acknowledge_changes_nothing_and_is_never_announced_later(
        settings: Settings, deployment: Settings, tmp_path: Path) -> None:
    version = f"unannounced-{uuid.uuid4().hex[:6]}"
    classes, weights = METAL_GLASS
    import_model(deployment, controlled_model(tmp_path / "model.keras", weights), classes, version=version,
                 tau_energy=-5.0, tau_softmax=0.7)
    before = production_model(deployment)
    with stopped(settings, "kafka"), pytest.raises(PublishError):
        promote(deployment, version, promoted_by="test", source="test")
    after = production_model(deployment)
    announced = TopicReader.collect(deployment, 5, "models.promoted")["models.promoted"]

    assert (after.version if after else None) == (before.version if before else None)
    assert version not in {event.payload["model_version"] for event in announced}  # the failure was final
