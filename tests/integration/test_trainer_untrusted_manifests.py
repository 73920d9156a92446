"""`wastex trainer` on the real services reads only what the deployment's stores hold: a version whose manifest lies
outside the datasets bucket, or whose rows name anything but stored images of the images bucket, fails its run for
good (one attempt, not retryable, the request committed) with an error naming the manifest or the row."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer, TopicPartition
from PIL import Image

from infra.clients import db_sessions, minio_client
from infra.deployment import environment
from infra.images import store_image
from infra.kafka_security import confluent_config
from infra.publisher import EventPublisher
from infra.settings import Settings
from schemas.codec import new_event
from schemas.dataset_manifest import ManifestRow, manifest_bytes
from schemas.events import Event, EventType
from schemas.image_keys import DATASET_STORE
from schemas.topics import DATASET_VERSIONS
from training_job.run_store import RunStore

WASTEX = str(Path(sys.executable).with_name("wastex"))
TINY = {"WASTEX_TRAINER_WEIGHTS": "none", "WASTEX_TRAINER_HEAD_EPOCHS": "1", "WASTEX_TRAINER_EPOCHS": "0",
        "WASTEX_TRAINER_AUGMENTED_VIEWS": "0", "WASTEX_TRAINER_RETRY_DELAY_S": "1"}


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _manifest(isolated: Settings, bucket: str, name: str, rows: list[ManifestRow]) -> dict[str, str]:
    data = manifest_bytes(rows)
    key = f"manifests/{name}.jsonl"
    minio_client(isolated).put_object(bucket, key, io.BytesIO(data), len(data))
    return {"bucket": bucket, "object_key": key, "sha256": hashlib.sha256(data).hexdigest(), "format": "jsonl"}


def _version_event(name: str, manifest: dict[str, str]) -> Event:
    return new_event(EventType.DATASET_VERSION_CREATED, {
        "request_id": f"request-{name}", "version_name": name, "version_id": 1, "parent": None, "manifest": manifest,
        "stats": {"total": 2, "per_class": {"glass": 1, "metal": 1}, "per_split": {"train": 2, "val": 0, "test": 0}},
        "classes": ["glass", "metal"], "new_classes": [], "created_by": "test", "notes": ""}, "test")


def _committed(isolated: Settings) -> int:
    consumer = Consumer({**confluent_config(isolated), "group.id": f"{isolated.topic_prefix}trainer"})
    try:
        (position,) = consumer.committed([TopicPartition(DATASET_VERSIONS.full_name(isolated.topic_prefix), 0)],
                                         timeout=10)
        return position.offset
    finally:
        consumer.close()


def test_a_manifest_outside_the_datasets_bucket_or_a_row_outside_the_images_bucket_fails_the_run_for_good(
        fresh_deployment: Settings, tmp_path: Path) -> None:
    isolated = fresh_deployment
    stored = store_image(minio_client(isolated), isolated.bucket_images, DATASET_STORE, _png(1), "image/png")
    good = ManifestRow(f"s3://{isolated.bucket_images}/{stored.key}", stored.sha256, "glass", "train")
    secret = _png(2)  # what a forged row would have the trainer read
    secret_sha = hashlib.sha256(secret).hexdigest()
    elsewhere = f"s3://{isolated.bucket_datasets}/images/{secret_sha}.png"
    minio_client(isolated).put_object(isolated.bucket_datasets, f"images/{secret_sha}.png", io.BytesIO(secret),
                                      len(secret))
    requests = {
        "local-path": _manifest(isolated, isolated.bucket_datasets, "local-path",
                                [good, ManifestRow("../../secrets.env", secret_sha, "metal", "train")]),
        "other-bucket": _manifest(isolated, isolated.bucket_datasets, "other-bucket",
                                  [good, ManifestRow(elsewhere, secret_sha, "metal", "train")]),
        "manifest-elsewhere": _manifest(isolated, isolated.bucket_images, "manifest-elsewhere",
                                        [good, ManifestRow(good.image, good.sha256, "metal", "test")]),
    }
    publisher = EventPublisher(isolated)
    for name, manifest in requests.items():
        publisher.publish(_version_event(name, manifest))
    publisher.flush()

    log_path = tmp_path / "trainer.log"
    trainer = subprocess.Popen([WASTEX, "trainer"], stdin=subprocess.DEVNULL, stdout=log_path.open("ab"),
                               stderr=subprocess.STDOUT,
                               env=environment(isolated, WASTEX_HOME=str(isolated.state_dir), **TINY))
    store = RunStore(db_sessions(isolated))
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and _committed(isolated) < len(requests):
            assert trainer.poll() is None, log_path.read_text(errors="replace")[-3000:]
            time.sleep(0.5)
    finally:
        trainer.terminate()
        exit_code = trainer.wait(60)
    assert _committed(isolated) == len(requests), log_path.read_text(errors="replace")[-3000:]
    assert exit_code == 0

    runs = {name: store.runs(name) for name in requests}
    assert {name: [(r.attempt, r.status, r.retryable) for r in found] for name, found in runs.items()} == \
        {name: [(1, "failed", False)] for name in requests}  # for good: one attempt, none left to retry
    (local,) = runs["local-path"]
    assert local.error.startswith("DatasetError: manifest ") and f", row 2 (metal, sha256 {secret_sha[:12]}): " \
        "image '../../secrets.env' is not a stored image of the images bucket" in local.error
    (other,) = runs["other-bucket"]
    assert f"row 2 (metal, sha256 {secret_sha[:12]}): image {elsewhere!r} is not a stored image" in other.error
    (manifest,) = runs["manifest-elsewhere"]
    assert manifest.error == (f"UntrustedManifest: the version's manifest s3://{isolated.bucket_images}/manifests/"
                              f"manifest-elsewhere.jsonl is not in the datasets bucket "
                              f"s3://{isolated.bucket_datasets}/: the trainer reads manifests only from there")
