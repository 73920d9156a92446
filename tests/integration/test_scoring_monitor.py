"""The scoring monitor on the real services, behind a real scoring worker with a controlled model: exact tallies
through restarts, rebalances and repeated outcomes; one CameraDriftDetected per camera whose images change look."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from confluent_kafka import TopicPartition
from sqlalchemy import func, select, update

from infra.clients import db_sessions, kafka_consumer, kafka_producer, minio_client
from infra.db.models import CameraDrift, ModelVersion, ScoringTally
from infra.db.registry import promote
from infra.deployment import create_deployment, drop_deployment
from infra.publisher import EventPublisher
from infra.settings import Settings
from infra.topic_reader import TopicReader
from producers.capture import CapturedImage, CaptureSink
from review_ui.drift import energy_ks_limit
from review_ui.scoring_monitor import SERVICE, ScoringMonitor, group_id
from schemas.codec import new_event
from schemas.events import Event, EventType, format_timestamp
from schemas.topics import IMAGES_CLASSIFIED, IMAGES_OOD
from stream_apps.worker_process import WorkerProcess
from tests.controlled_models import GREEN, GREY, METAL_GLASS, controlled_model, photo
from training_job.model_registry import import_model

CLASSES, CLASS_WEIGHTS = METAL_GLASS
WORKER_PORT = 24101
# Red (R, 20, 20) scores metal with logits +-(0.3 R - 6): energy -(0.3 R - 6). The training look spans R 140..240,
# so the model's calibration energies are uniform on [-66, -36]; that is the reference the test gives the model.
TRAINING_R = (140, 240)
REFERENCE = list(np.linspace(-66.0, -36.0, 101))
REVIEW_RATE = 0.05
LOOK_IMAGES = 48
SEEDS = iter(range(10_000, 1_000_000))  # every photo distinct: images are content-addressed


def _spread(index: int) -> float:
    """The van der Corput sequence: every prefix of it spreads evenly over [0, 1), so a check of a camera's first
    images already sees the whole look."""
    value, digit = 0.0, 0.5
    while index:
        value += digit * (index & 1)
        index, digit = index >> 1, digit / 2
    return value + 1 / 128


def _red(low: int, high: int, index: int) -> bytes:
    return photo((round(low + (high - low) * _spread(index)), 20, 20), next(SEEDS))


@pytest.fixture(scope="module")
def scoring(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A deployment with a controlled production model (its energy reference set) and a scoring worker."""
    isolated = create_deployment(settings)
    folder = tmp_path_factory.mktemp("monitor")
    imported = import_model(isolated, controlled_model(folder / "controlled.keras", CLASS_WEIGHTS), CLASSES,
                            tau_energy=-5.0, tau_softmax=0.7)
    assert imported.export.exported, imported.export.detail
    with db_sessions(isolated).begin() as session:
        session.execute(update(ModelVersion).where(ModelVersion.version == imported.version)
                        .values(energy_quantiles=REFERENCE, review_rate=REVIEW_RATE))
    promote(isolated, imported.version, promoted_by="test", source="test")
    worker = WorkerProcess(isolated, "monitor-scoring", WORKER_PORT, folder).start()
    try:
        worker.wait_serving()
        yield dataclasses.replace(isolated, drift_check_s=1.0, drift_min_images=30, drift_window_s=900.0)
    finally:
        worker.stop()
        drop_deployment(isolated)


def _capture(isolated: Settings, images: list[tuple[bytes, str]]) -> None:
    sink = CaptureSink(minio_client(isolated), isolated.bucket_images, EventPublisher(isolated))
    for data, camera in images:
        sink.publish(sink.store(CapturedImage(data, "image/jpeg", camera, "site-m")))
    sink.flush()


def _tallies(isolated: Settings) -> dict[str, tuple[int, int]]:
    with db_sessions(isolated)() as session:
        rows = session.execute(select(ScoringTally.camera_id, func.sum(ScoringTally.classified),
                                      func.sum(ScoringTally.ood)).group_by(ScoringTally.camera_id))
        return {camera: (int(classified), int(ood)) for camera, classified, ood in rows}


def _drift(isolated: Settings) -> dict[str, CameraDrift]:
    with db_sessions(isolated)() as session:
        return {row.camera_id: row for row in session.scalars(select(CameraDrift))}


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout_s} s")


def test_a_camera_whose_images_change_look_drifts_once_and_one_with_the_training_look_does_not(
        scoring: Settings) -> None:
    images = [(_red(*TRAINING_R, i), "cam-train") for i in range(LOOK_IMAGES)]
    images += [(_red(60, 100, i), "cam-dim") for i in range(LOOK_IMAGES)]  # known, but far less sure: energy
    images += [(photo(GREY, next(SEEDS)), "cam-grey") for _ in range(LOOK_IMAGES)]  # flat logits: every one OOD
    monitor = ScoringMonitor(scoring, db_sessions(scoring)).start()
    try:
        _capture(scoring, images)
        _wait(lambda: sum(_drift(scoring).get(camera, CameraDrift(images=0)).images
                          for camera in ("cam-train", "cam-dim", "cam-grey")) == 3 * LOOK_IMAGES,
              180, "every image checked")
        time.sleep(3)  # more checks of the same windows: no further event
    finally:
        monitor.stop()

    events = TopicReader.collect(scoring, 3, "cameras.drift")["cameras.drift"]
    by_camera = {event.payload["camera_id"]: event.payload for event in events}
    assert len(events) == 2 and set(by_camera) == {"cam-dim", "cam-grey"}
    assert by_camera["cam-dim"]["state"] == "drifting" and by_camera["cam-dim"]["reasons"] == ["energy_ks"]
    assert by_camera["cam-dim"]["median_energy_shift"] > 25  # about -18 against -51
    assert by_camera["cam-grey"]["reasons"] == ["ood_rate", "energy_ks"] and by_camera["cam-grey"]["ood_rate"] == 1
    assert by_camera["cam-grey"]["expected_ood_rate"] == REVIEW_RATE
    # A window of at most 48 images: chance alone could give a KS above the setting, so the limit is chance's
    # 99.9th percentile for the window the event was raised on (the check may run before every image is scored).
    grey = by_camera["cam-grey"]
    assert 30 <= grey["images"] <= LOOK_IMAGES
    assert grey["limits"]["energy_ks"] == pytest.approx(energy_ks_limit(grey["images"], 0.0))
    assert by_camera["cam-grey"]["limits"]["energy_ks"] > scoring.drift_max_ks

    drift = _drift(scoring)
    assert drift["cam-dim"].drifting and drift["cam-grey"].drifting and not drift["cam-train"].drifting
    assert drift["cam-dim"].drifting_since is not None and drift["cam-train"].drifting_since is None
    assert drift["cam-train"].energy_ks < 0.15 and drift["cam-train"].ood_rate == 0
    assert abs(drift["cam-train"].median_energy_shift) < 2
    assert drift["cam-dim"].energy_ks == 1.0 and drift["cam-dim"].ood_rate == 0


def _commit_group_offsets(isolated: Settings, offset: int) -> None:
    """Move the monitor group's broker offsets as a naive consumer would have: the monitor must ignore them."""
    consumer = kafka_consumer(isolated, group_id(isolated))
    try:
        partitions = [TopicPartition(spec.full_name(isolated.topic_prefix), p, offset)
                      for spec in (IMAGES_CLASSIFIED, IMAGES_OOD) for p in range(isolated.image_partitions)]
        consumer.commit(offsets=partitions, asynchronous=False)
    finally:
        consumer.close()


def _copies_of_outcomes(isolated: Settings, camera: str, how_many: int) -> list[bytes]:
    """Records of `camera`'s outcomes as they are on images.classified (scoring sends one again after a passing
    failure with the same event id)."""
    reader = TopicReader(isolated, "images.classified")
    try:
        reader.poll(3)
    finally:
        reader.close()
    copies = [event for event in reader.events["images.classified"] if event.payload["camera_id"] == camera]
    return [json.dumps(event.to_document()).encode() for event in copies[:how_many]]


def test_tallies_are_exact_through_a_restart_a_rebalance_repeated_outcomes_and_a_poison_record(
        scoring: Settings) -> None:
    first = [(_red(*TRAINING_R, i), "cam-x") for i in range(20)]
    first += [(photo(GREY, next(SEEDS)), "cam-x") for _ in range(5)]
    first += [(photo(GREEN, next(SEEDS)), "cam-y") for _ in range(10)]
    first += [(photo(GREY, next(SEEDS)), "cam-y") for _ in range(5)]
    before = _tallies(scoring)  # the cameras of the test before, if it ran
    drift_events = len(TopicReader.collect(scoring, 3, "cameras.drift")["cameras.drift"])
    started = datetime.now(UTC)
    sessions = db_sessions(scoring)
    monitor = ScoringMonitor(scoring, sessions).start()
    try:
        _capture(scoring, first)
        _wait(lambda: _tallies(scoring).get("cam-x") == (20, 5) and _tallies(scoring).get("cam-y") == (10, 5),
              180, "the first images counted")
    finally:
        monitor.stop()

    # The broker's offsets of the group go back to the start: a consumer trusting them would count all again.
    _commit_group_offsets(scoring, 0)
    second = [(_red(*TRAINING_R, i), "cam-x") for i in range(20, 35)] + [(photo(GREY, next(SEEDS)), "cam-y")
                                                                          for _ in range(7)]
    producer = kafka_producer(scoring)
    for copy in _copies_of_outcomes(scoring, "cam-x", 3):  # the same outcomes delivered twice
        producer.produce(IMAGES_CLASSIFIED.full_name(scoring.topic_prefix), key=b"cam-x", value=copy)
    producer.produce(IMAGES_OOD.full_name(scoring.topic_prefix), key=b"cam-y", value=b'{"not": "an outcome"}')
    assert producer.flush(15) == 0
    # Two monitors of one group, started while images arrive: partitions move between them mid-stream.
    monitors = [ScoringMonitor(scoring, sessions).start()]
    try:
        _capture(scoring, second[:10])
        monitors.append(ScoringMonitor(scoring, sessions).start())
        _capture(scoring, second[10:])
        _wait(lambda: _tallies(scoring).get("cam-x") == (35, 5) and _tallies(scoring).get("cam-y") == (10, 12),
              180, "every image counted")
        time.sleep(5)  # time to count anything twice
    finally:
        for running in monitors:
            running.stop()

    after = _tallies(scoring)
    assert after["cam-x"] == (35, 5) and after["cam-y"] == (10, 12)
    assert {camera: counts for camera, counts in after.items() if camera not in ("cam-x", "cam-y")} == before
    letters = [letter for letter in TopicReader.collect(scoring, 3, "dead-letters")["dead-letters"]
               if letter.payload["service"] == SERVICE]
    assert [(letter.payload["reason"], letter.payload["original"]["topic"]) for letter in letters] == [
        ("schema_invalid", IMAGES_OOD.full_name(scoring.topic_prefix))]
    # Restarted, the monitors read the drift windows back: the earlier cameras were checked again on all their
    # images, kept their state, and no change was announced again.
    drift = _drift(scoring)
    assert all(drift[camera].checked_at > started and drift[camera].images == LOOK_IMAGES for camera in before)
    assert len(TopicReader.collect(scoring, 3, "cameras.drift")["cameras.drift"]) == drift_events


def _outcome(camera: str, captured_at: datetime, ood: bool) -> Event:
    """An outcome as scoring sends it, of a model the registry does not know (so: the OOD-rate test alone)."""
    sha = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    payload = {"image": {"bucket": "wastex-images", "object_key": f"images/{sha}.jpg", "sha256": sha},
               "camera_id": camera, "site_id": "site-h", "captured_at": format_timestamp(captured_at),
               "predicted_class": "glass", "confidence": 0.9, "energy": -9.0, "model_version": "unregistered",
               "model_digest": "0" * 64, "captured_event_id": str(uuid.uuid4())}
    if ood:
        return new_event(EventType.IMAGE_FLAGGED_OOD, payload | {
            "logits": [0.1, 0.0], "probabilities": [0.52, 0.48], "classes": CLASSES, "reason": "softmax",
            "thresholds": {"tau_energy": -5.0, "tau_softmax": 0.7}}, "test")
    return new_event(EventType.IMAGE_CLASSIFIED, payload | {"captured_position": {"partition": 0, "offset": 0}},
                     "test")


def test_a_drifting_camera_is_announced_once_and_recovers_once_its_window_looks_right_again(
        fresh_deployment: Settings) -> None:
    isolated = dataclasses.replace(fresh_deployment, drift_check_s=3600.0, drift_min_images=30,
                                   drift_window_s=60.0)  # checked below at chosen moments only
    now = datetime.now(UTC)
    publisher = EventPublisher(isolated)
    for index in range(40):
        publisher.publish(_outcome("cam-h", now - timedelta(seconds=30), ood=True))
        publisher.publish(_outcome("cam-h", now - timedelta(seconds=5), ood=index % 10 == 0))  # 10 % OOD
    publisher.flush()
    monitor = ScoringMonitor(isolated, db_sessions(isolated))
    consumer = monitor.consumer()
    try:
        _wait(lambda: monitor.poll_once(consumer) == 0 and _tallies(isolated).get("cam-h") == (36, 44), 60,
              "every outcome counted")
        checks = {offset: monitor.check(now + timedelta(seconds=offset)) for offset in (0, 1, 40, 41)}
    finally:
        consumer.close()

    assert [[event.payload["state"] for event in events] for events in checks.values()] == [
        ["drifting"], [], ["recovered"], []]  # 55 % OOD; the same; only the 10 % of the last 60 s; the same
    drifting, recovered = checks[0][0].payload, checks[40][0].payload
    assert drifting["ood_rate"] == pytest.approx(44 / 80) and drifting["reasons"] == ["ood_rate"]
    assert drifting["expected_ood_rate"] == isolated.review_rate and drifting["energy_ks"] is None
    assert recovered["ood_rate"] == pytest.approx(0.1) and recovered["images"] == 40 and recovered["reasons"] == []
    row = _drift(isolated)["cam-h"]
    assert not row.drifting and row.drifting_since is None and row.images == 40
