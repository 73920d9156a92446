"""The last step of every version: its immutable manifest in MinIO, then DatasetVersionCreated.

Both steps can be repeated after a crash: the manifest of a version is always the same bytes (members in
digest order), and the event id derives from the version's request, so consumers drop a repeated event.
"""

from __future__ import annotations

import hashlib
import io
import uuid

from minio import Minio
from minio.error import S3Error

from infra.db.dataset_versions import VersionStore
from infra.publisher import EventPublisher
from infra.settings import Settings
from schemas.codec import new_event
from schemas.dataset_manifest import ManifestRow, manifest_bytes
from schemas.events import Event, EventType

SOURCE = "stream_apps.builder"
_EVENT_IDS = uuid.UUID("0b8e1f5c-6a43-4a8e-9a1e-4f2d7c9b3e10")


class ManifestConflict(RuntimeError):
    """A manifest object exists with other content: manifests are never overwritten."""


def manifest_key(version_name: str) -> str:
    return f"manifests/{version_name}.jsonl"


class VersionAnnouncer:
    def __init__(self, settings: Settings, store: VersionStore, storage: Minio, publisher: EventPublisher) -> None:
        self._settings = settings
        self._store = store
        self._storage = storage
        self._publisher = publisher

    def _write_manifest(self, name: str) -> tuple[str, str]:
        """(object key, sha256) of the version's manifest, written unless it is there already."""
        bucket = self._settings.bucket_datasets
        rows = [ManifestRow(f"s3://{self._settings.bucket_images}/{m.object_key}", m.sha256, m.label, m.split,
                            m.site) for m in self._store.members(name)]
        data = manifest_bytes(rows)
        checksum = hashlib.sha256(data).hexdigest()
        key = manifest_key(name)
        try:
            stored = self._storage.stat_object(bucket, key)
        except S3Error as error:
            if error.code != "NoSuchKey":
                raise
            self._storage.put_object(bucket, key, io.BytesIO(data), len(data), content_type="application/x-ndjson",
                                     metadata={"sha256": checksum})
            return key, checksum
        if (stored.metadata or {}).get("x-amz-meta-sha256") != checksum:
            raise ManifestConflict(f"s3://{bucket}/{key} exists with other content; manifests are immutable")
        return key, checksum

    def announce(self, name: str) -> Event:
        """Write the manifest, record it, publish DatasetVersionCreated and mark the version announced."""
        key, checksum = self._write_manifest(name)
        self._store.record_manifest(name, f"s3://{self._settings.bucket_datasets}/{key}", checksum)
        version = self._store.get(name)
        parent = self._store.parent_name(version)
        request_id = version.request_id or f"version-{name}"
        event = new_event(EventType.DATASET_VERSION_CREATED, {
            "request_id": request_id,
            "version_name": name,
            "version_id": version.id,
            "parent": parent,
            "manifest": {"bucket": self._settings.bucket_datasets, "object_key": key, "sha256": checksum,
                         "format": "jsonl"},
            "stats": version.stats,
            "classes": sorted(version.stats["per_class"]),
            "new_classes": version.classes_introduced,
            "created_by": version.created_by,
            "notes": version.notes,
        }, SOURCE, event_id=str(uuid.uuid5(_EVENT_IDS, request_id)))
        self._publisher.publish(event)
        self._publisher.flush()
        self._store.mark_announced(name)
        return event
