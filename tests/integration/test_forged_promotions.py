"""Consumers trust the registry, not the event: forged ModelPromoted announcements change nothing a scoring worker
serves, and a registry row naming an artefact outside the models bucket is refused while the old model serves on."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from infra.clients import db_sessions, minio_client
from infra.db.models import ModelVersion
from infra.db.registry import production_model, promote
from infra.deployment import create_deployment, drop_deployment
from infra.object_store import download_prefix, upload_folder
from infra.publisher import EventPublisher
from infra.services.process import free_port
from infra.settings import Settings
from infra.topic_reader import TopicReader
from producers.capture import CapturedImage, CaptureSink
from schemas.codec import new_event
from schemas.events import Event, EventType
from schemas.model_artefact import KERAS_FILE
from stream_apps.worker_process import WorkerProcess
from tests.controlled_models import GREEN, GREY, METAL_GLASS, METAL_GLASS_PAPER, RED, import_controlled, photo
from tests.private_home import private_home

OUTPUT_TOPICS = ("images.classified", "images.ood", "dead-letters")
IGNORED = "ignoring the announcement of model {version} (digest {digest})"


@pytest.fixture(scope="module")
def deployment(settings: Settings) -> Iterator[Settings]:
    isolated = create_deployment(settings)
    yield isolated
    drop_deployment(isolated)


def _digest_of(isolated: Settings, version: str) -> str:
    with db_sessions(isolated)() as session:
        return session.scalars(select(ModelVersion.artefact_digest).where(ModelVersion.version == version)).one()


def _forged(version: str, artefact_uri: str, digest: str) -> Event:
    """A ModelPromoted anyone who can write to the topic could send: valid by the contract, unknown to the registry."""
    return new_event(EventType.MODEL_PROMOTED, {
        "model_version": version, "artefact_uri": artefact_uri, "artefact_digest": digest, "serving_uri": None,
        "classes": ["metal", "glass", "paper"], "thresholds": {"tau_energy": -5.0, "tau_softmax": 0.7},
        "metrics": {}, "promoted_by": "mallory", "previous_model_version": None, "action": "promote"}, "forger")


def _shoot(isolated: Settings, first_seed: int) -> list[Event]:
    sink = CaptureSink(minio_client(isolated), isolated.bucket_images, EventPublisher(isolated))
    events = []
    for index, colour in enumerate((RED, GREEN, GREY)):
        event = sink.store(CapturedImage(photo(colour, first_seed + index), "image/jpeg", "cam-forged", "s"))
        sink.publish(event)
        events.append(event)
    sink.flush()
    return events


def _outcome_digests(isolated: Settings, captured: list[Event]) -> dict[str, str | None]:
    """The model digest on each captured event's outcome, once every one has an outcome."""
    wanted = {event.event_id for event in captured}
    reader = TopicReader(isolated, *OUTPUT_TOPICS)
    found: dict[str, str | None] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not wanted <= found.keys():
            reader.poll(1.0)
            for topic in OUTPUT_TOPICS:
                for event in reader.events[topic]:
                    key = event.payload.get("captured_event_id") or event.payload.get("original_event_id")
                    if key in wanted:
                        found[key] = event.payload.get("model_digest")
    finally:
        reader.close()
    assert wanted <= found.keys(), f"no outcome for {wanted - found.keys()}"
    return found


def _wait_for_log(worker: WorkerProcess, text: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in worker.log_path.read_text(errors="replace"):
            return
        assert worker.process is not None and worker.process.poll() is None, worker.log_tail()
        time.sleep(0.5)
    raise AssertionError(f"the worker never logged {text!r}\n{worker.log_tail()}")


def test_forged_announcements_and_a_registry_row_outside_the_models_bucket_change_nothing_that_serves(
        deployment: Settings, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    registered = import_controlled(deployment, tmp_path, f"registered-{tag}", METAL_GLASS)
    other = import_controlled(deployment, tmp_path, f"other-{tag}", METAL_GLASS_PAPER)  # a candidate, not promoted
    digest, other_digest = _digest_of(deployment, registered), _digest_of(deployment, other)
    promote(deployment, registered, promoted_by="test", source="test")
    # The other model's exact bytes, outside the models bucket: a forger's artefact with a digest that checks out.
    copy = tmp_path / "copy"
    storage = minio_client(deployment)
    download_prefix(storage, deployment.bucket_models, other, copy)
    upload_folder(storage, deployment.bucket_images, f"forged/{tag}", copy)
    outside = f"s3://{deployment.bucket_images}/forged/{tag}"
    forgeries = [
        _forged(f"unregistered-{tag}", f"{outside}/{KERAS_FILE}", other_digest),  # no such version
        _forged(registered, f"{outside}/{KERAS_FILE}", other_digest),  # the serving name, other bytes elsewhere
        # a registered version, but not the production one
        _forged(other, f"s3://{deployment.bucket_models}/{other}/{KERAS_FILE}", other_digest),
    ]

    home, credentials = private_home(deployment, tmp_path / "home")
    worker = WorkerProcess(home, f"forged-{tag}", free_port(), tmp_path, WASTEX_RETRY_MAX_DELAY_S="2",
                           **credentials).start()
    try:
        before = worker.wait_serving(300)
        publisher = EventPublisher(deployment)
        for forged in forgeries:
            publisher.publish(forged)
        publisher.flush()
        for forged in forgeries:  # each is looked into, then dropped once the registry kept disagreeing
            _wait_for_log(worker, IGNORED.format(version=forged.payload["model_version"], digest=other_digest))
        after_forgeries = worker.wait_healthy(10)
        scored_after_forgeries = _outcome_digests(deployment, _shoot(deployment, 8100))

        # The registry itself names an artefact outside the models bucket (a tampered row), and production moves.
        with db_sessions(deployment).begin() as session:
            session.scalars(select(ModelVersion).where(ModelVersion.version == other)).one().artefact_uri = outside
        promote(deployment, other, promoted_by="test", source="test")
        refused = worker.wait_healthy(120, lambda health: health["status"] == "degraded")
        scored_while_refused = _outcome_digests(deployment, _shoot(deployment, 8200))
        _wait_for_log(worker, f"model {other} is registered at {outside!r}, not in the models bucket")
    finally:
        worker.stop()

    assert (before["model_version"], before["model_digest"]) == (registered, digest)
    assert (after_forgeries["model_version"], after_forgeries["model_digest"], after_forgeries["status"]) == \
        (registered, digest, "ok")
    assert set(scored_after_forgeries.values()) == {digest}
    assert production_model(deployment).version == other  # the registry moved, the worker refused to follow
    assert (refused["model_version"], refused["model_digest"]) == (registered, digest)
    (waiting,) = refused["waiting"]
    assert waiting["for"] == "model" and "not in the models bucket" in waiting["reason"]
    assert set(scored_while_refused.values()) == {digest}
    assert not (home.state_dir / "models" / other_digest).exists()  # nothing was fetched from outside
