"""Whether a dataset version can still be trained on: a version requested from the staged labels, and every
object its manifest names looked up in MinIO."""

from __future__ import annotations

import json
import time
import uuid

from minio import Minio
from minio.error import S3Error

from infra.db.dataset_versions import VersionStore
from infra.publisher import EventPublisher
from infra.retry import retry_transient
from schemas.codec import new_event
from schemas.events import EventType


def _split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def request_version(publisher: EventPublisher, store: VersionStore, timeout_s: float) -> str:
    """The name of the version the builder made for a new CreateVersionRequested, once it is announced."""
    request_id = f"bench-faults-{uuid.uuid4().hex}"
    request = new_event(EventType.CREATE_VERSION_REQUESTED, {
        "request_id": request_id, "requested_by": "bench-faults", "notes": "fault benchmark check",
        "trigger": "manual"}, "bench")

    def send() -> None:  # sent again after a failed flush: one version per request id all the same
        publisher.publish(request)
        publisher.flush()

    retry_transient(send, what="version request (Kafka)")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        version = retry_transient(lambda: store.by_request(request_id), what="version lookup (PostgreSQL)")
        if version is not None and version.announced_at is not None and version.manifest_uri:
            return version.name
        time.sleep(0.5)
    raise TimeoutError(f"no version announced for request {request_id} within {timeout_s:.0f} s")


def missing_manifest_objects(storage: Minio, store: VersionStore, version: str) -> list[str]:
    """The image URIs of the version's manifest that MinIO does not have."""
    manifest_uri = store.get(version).manifest_uri
    assert manifest_uri is not None
    response = storage.get_object(*_split_uri(manifest_uri))
    try:
        rows = [json.loads(line) for line in response.read().decode().splitlines() if line.strip()]
    finally:
        response.close()
        response.release_conn()
    missing = []
    for row in rows:
        try:
            storage.stat_object(*_split_uri(row["image"]))
        except S3Error as error:
            if error.code != "NoSuchKey":
                raise
            missing.append(row["image"])
    return missing
