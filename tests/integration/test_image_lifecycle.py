"""The image lifecycle on the real services: a referenced image is never deleted, classified captures that
nothing references are, and `wastex images gc` removes only unreferenced old objects."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from minio import Minio
from minio.error import S3Error
from sqlalchemy import text

from infra.clients import db_engine, db_sessions, minio_client
from infra.db.dataset_versions import VersionStore
from infra.db.registry import promote
from infra.deployment import create_deployment, drop_deployment, environment
from infra.image_retention import ImageRetention, Verdict, advisory_key, lock_image
from infra.images import store_image
from infra.publisher import EventPublisher
from infra.settings import Settings
from infra.topic_reader import TopicReader
from producers.capture import CapturedImage, CaptureSink
from review_ui.projection import project
from schemas.codec import new_event
from schemas.events import Event, EventType
from schemas.image_keys import CAPTURES, DATASET_STORE
from stream_apps.builder.announcer import VersionAnnouncer
from stream_apps.builder.registration import SeedRegistrar
from stream_apps.builder.seed_folder import seed_images
from stream_apps.worker_process import WorkerProcess
from tests.controlled_models import METAL_GLASS, controlled_model, photo
from tests.trashnet_slices import trashnet_photos
from training_job.candidate_run import fetch_manifest
from training_job.dataset_source import ImageReader, load_dataset
from training_job.model_registry import import_model

WASTEX = str(Path(sys.executable).with_name("wastex"))
WORKER_PORT = 6187


@pytest.fixture(scope="module")
def lifecycle(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A deployment whose production model classifies everything (no image is out-of-distribution)."""
    isolated = create_deployment(settings)
    classes, weights = METAL_GLASS
    model_file = controlled_model(tmp_path_factory.mktemp("model") / "controlled.keras", weights)
    imported = import_model(isolated, model_file, classes, tau_energy=1e6, tau_softmax=0.0)
    assert imported.export.exported, imported.export.detail
    promote(isolated, imported.version, promoted_by="test", source="test")
    yield isolated
    drop_deployment(isolated)


def _exists(storage: Minio, bucket: str, key: str) -> bool:
    try:
        storage.stat_object(bucket, key)
    except S3Error as error:
        if error.code == "NoSuchKey":
            return False
        raise
    return True


def _wait_until_gone(storage: Minio, bucket: str, keys: list[str], timeout_s: float = 60) -> list[str]:
    """The keys still there when all were gone, or when the time ran out."""
    deadline = time.monotonic() + timeout_s
    left = keys
    while left and time.monotonic() < deadline:
        left = [key for key in left if _exists(storage, bucket, key)]
        time.sleep(0.5)
    return left


def _register(deployment: Settings, trashnet: Path, target: Path) -> Event:
    """Seed version v1 of a few TrashNet photos (linked, not copied), announced with its manifest."""
    for name in ("glass", "metal"):
        folder = target / name
        folder.mkdir(parents=True)
        for photo_path in trashnet_photos(trashnet, name, 0, 3):
            (folder / photo_path.name).symlink_to(photo_path)
    store = VersionStore(db_sessions(deployment))
    storage = minio_client(deployment)
    SeedRegistrar(storage, deployment.bucket_images, store).register(seed_images(target, {}), "v1",
                                                                      created_by="test", notes="")
    return VersionAnnouncer(deployment, store, storage, EventPublisher(deployment)).announce("v1")


def test_the_seed_version_survives_its_photos_being_captured_and_classified(
        lifecycle: Settings, trashnet: Path, tmp_path: Path) -> None:
    announced = _register(lifecycle, trashnet, tmp_path / "seed")
    seed_photos = sorted((tmp_path / "seed").rglob("*.jpg"))
    strangers = trashnet_photos(trashnet, "paper", 0, 3)  # in no version: their captures go once classified
    storage = minio_client(lifecycle)
    sink = CaptureSink(storage, lifecycle.bucket_images, EventPublisher(lifecycle))
    worker = WorkerProcess(lifecycle, "lifecycle", WORKER_PORT, tmp_path, WASTEX_DELETE_DELAY_S="1").start()
    reader = TopicReader(lifecycle, "images.classified")
    try:
        worker.wait_serving()
        captured = [sink.store(CapturedImage(path.read_bytes(), "image/jpeg", "cam-demo", "site-demo"))
                    for path in [*seed_photos, *strangers]]
        for event in captured:
            sink.publish(event)
        sink.flush()
        wanted = {event.event_id for event in captured}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not wanted <= {e.payload["captured_event_id"]
                                                             for e in reader.events["images.classified"]}:
            reader.poll(1.0)
        stranger_keys = [event.payload["object_key"] for event in captured[len(seed_photos):]]
        # Deleted after the delay once a commit past their records is confirmed (commits come every few s).
        left = _wait_until_gone(storage, lifecycle.bucket_images, stranger_keys, timeout_s=120)
    finally:
        reader.close()
        worker.stop()

    assert wanted <= {e.payload["captured_event_id"] for e in reader.events["images.classified"]}
    assert all(event.payload["object_key"].startswith(f"{CAPTURES}/") for event in captured)
    assert left == [], "classified captures that nothing references are deleted after the delay"
    for event in captured[:len(seed_photos)]:  # a capture of a version's image is referenced: kept
        assert _exists(storage, lifecycle.bucket_images, event.payload["object_key"])

    members = VersionStore(db_sessions(lifecycle)).members("v1")
    assert len(members) == len(seed_photos)
    manifest = load_dataset(fetch_manifest(lifecycle, announced.payload["manifest"], tmp_path / "manifest.jsonl"))
    read = ImageReader(lambda: storage)
    assert len(manifest.rows) == len(seed_photos)
    for row in manifest.rows:  # the training read of every image of the version succeeds, byte for byte
        assert f"/{DATASET_STORE}/" in row.image
        assert hashlib.sha256(read(row.image)).hexdigest() == row.sha256


def _flagged(event: Event) -> Event:
    """The ImageFlaggedOOD the scoring worker would send for this capture."""
    p = event.payload
    return new_event(EventType.IMAGE_FLAGGED_OOD, {
        "image": {"bucket": p["bucket"], "object_key": p["object_key"], "sha256": p["sha256"]},
        "camera_id": p["camera_id"], "site_id": p["site_id"], "captured_at": p["captured_at"],
        "logits": [0.1, 0.2], "probabilities": [0.475, 0.525], "classes": ["metal", "glass"],
        "predicted_class": "glass", "confidence": 0.525, "energy": -0.1,
        "thresholds": {"tau_energy": -5.0, "tau_softmax": 0.7}, "reason": "both", "model_version": "m1",
        "model_digest": "d" * 64,
        "captured_event_id": event.event_id,
    }, "stream_apps.scoring")


def _captured(sink: CaptureSink, seed: int) -> Event:
    return sink.store(CapturedImage(photo((90, 90, 90), seed), "image/jpeg", "cam-r", "site-r"))


def test_a_capture_under_review_is_kept_while_an_unreferenced_classified_capture_is_deleted(
        deployment: Settings) -> None:
    storage = minio_client(deployment)
    sink = CaptureSink(storage, deployment.bucket_images, EventPublisher(deployment))
    reviewed, classified = _captured(sink, 1), _captured(sink, 2)
    with db_sessions(deployment)() as session, session.begin():
        assert project(session, [_flagged(reviewed)]) == 1
    retention = ImageRetention.of(deployment)
    targets = [(deployment.bucket_images, e.payload["object_key"]) for e in (reviewed, classified)]

    assert retention.delete_classified_captures(targets, 0).error is None

    assert _exists(storage, deployment.bucket_images, reviewed.payload["object_key"])
    assert not _exists(storage, deployment.bucket_images, classified.payload["object_key"])
    assert retention.delete_unreferenced(reviewed.payload["object_key"], datetime.now(UTC)) is Verdict.REFERENCED


def test_a_review_row_for_an_image_being_deleted_waits_for_the_deletion_to_decide(deployment: Settings) -> None:
    storage = minio_client(deployment)
    sink = CaptureSink(storage, deployment.bucket_images, EventPublisher(deployment))
    capture = _captured(sink, 3)
    sha256 = capture.payload["sha256"]
    engine = db_engine(deployment)
    projected = threading.Event()

    def project_flag() -> None:
        with db_sessions(deployment)() as session, session.begin():
            project(session, [_flagged(capture)])
        projected.set()

    with engine.begin() as deleter:  # the deleter's transaction: its lock covers check and delete
        lock_image(deleter, sha256)
        projection = threading.Thread(target=project_flag)
        projection.start()
        unsigned = advisory_key(sha256) & 0xFFFF_FFFF_FFFF_FFFF
        waiting = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                       "AND classid::bigint = :high AND objid::bigint = :low")
        while not deleter.scalar(waiting, {"high": unsigned >> 32, "low": unsigned & 0xFFFF_FFFF}):
            assert projection.is_alive(), "the projection inserted a review row under the deleter's lock"
            time.sleep(0.05)
    projection.join(timeout=30)

    assert projected.is_set(), "the projection goes on once the deleter's transaction ended"
    assert ImageRetention.of(deployment).delete_unreferenced(capture.payload["object_key"], datetime.now(UTC)) \
        is Verdict.REFERENCED
    assert _exists(storage, deployment.bucket_images, capture.payload["object_key"])


def _gc(deployment: Settings, *args: str, min_age_s: float) -> dict:
    result = subprocess.run([WASTEX, "images", "gc", "--json", *args], capture_output=True, text=True, timeout=120,
                            env=environment(deployment, WASTEX_IMAGE_GC_MIN_AGE_S=str(min_age_s)))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_images_gc_reports_on_a_dry_run_and_then_removes_only_unreferenced_old_objects(
        deployment: Settings, tmp_path: Path) -> None:
    storage = minio_client(deployment)
    bucket = deployment.bucket_images
    (tmp_path / "seed" / "glass").mkdir(parents=True)
    (tmp_path / "seed" / "glass" / "g.jpg").write_bytes(photo((30, 30, 200), 13))
    SeedRegistrar(storage, bucket, VersionStore(db_sessions(deployment))).register(
        seed_images(tmp_path / "seed", {}), "gc-seed", created_by="test", notes="")
    sink = CaptureSink(storage, bucket, EventPublisher(deployment))
    reviewed, forgotten = _captured(sink, 10), _captured(sink, 11)
    with db_sessions(deployment)() as session, session.begin():
        project(session, [_flagged(reviewed)])
    orphan = store_image(storage, bucket, DATASET_STORE, photo((20, 200, 20), 12), "image/jpeg")
    everything = {o.object_name for o in storage.list_objects(bucket, recursive=True)}
    time.sleep(1.1)  # object times have one-second resolution: "older than 0 s" must hold for all of them

    young = _gc(deployment, "--dry-run", min_age_s=3600)
    assert all(p["removed"] == 0 for p in young["prefixes"].values())
    dry = _gc(deployment, "--dry-run", min_age_s=0)
    assert dry["dry_run"] and dry["prefixes"][CAPTURES]["removed"] >= 1
    assert dry["prefixes"][DATASET_STORE]["removed"] == 1
    assert dry["prefixes"][DATASET_STORE]["kept"]["referenced"] >= 1
    assert {o.object_name for o in storage.list_objects(bucket, recursive=True)} == everything

    done = _gc(deployment, min_age_s=0)
    assert done["prefixes"] == dry["prefixes"]
    assert not _exists(storage, bucket, forgotten.payload["object_key"])
    assert not _exists(storage, bucket, orphan.key)
    assert _exists(storage, bucket, reviewed.payload["object_key"])
    with db_engine(deployment).connect() as connection:  # every object a row references is still there
        referenced = connection.execute(text(
            "SELECT object_key FROM dataset_entries UNION SELECT object_key FROM review_items")).scalars().all()
    assert referenced and all(_exists(storage, bucket, key) for key in referenced)
