"""`wastex dataset register`: a labelled folder becomes a seed version (objects in MinIO, rows, manifest, event).

Images go to the dataset store (`images/<sha256>.<ext>`), checked like every image (infra/images.py); they are
content-addressed, so registering a folder again uploads nothing, and the same folder content maps to the same
request id, so it finds its version instead of making a second one.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from minio import Minio
from rich.progress import Progress

from infra.db.dataset_versions import Change, VersionStore
from infra.db.models import DatasetVersion
from infra.images import ImageLimits, ImageRefused, check_image, store_image
from infra.settings import load_settings
from schemas.image_keys import DATASET_STORE
from stream_apps.builder.seed_folder import SeedImage

UPLOAD_THREADS = 4


@dataclass(frozen=True)
class StoredImage:
    image: SeedImage
    sha256: str
    object_key: str
    uploaded: bool  # False: the object was in MinIO already


@dataclass
class Registration:
    version: DatasetVersion
    uploaded: int = 0
    already_stored: int = 0
    refused: list[tuple[Path, str]] = field(default_factory=list)
    conflicting: list[str] = field(default_factory=list)  # digests labelled with two classes, left out


class SeedRegistrar:
    def __init__(self, storage: Minio, bucket: str, store: VersionStore, limits: ImageLimits | None = None) -> None:
        self._storage = storage
        self._bucket = bucket
        self._store = store
        self._limits = limits or ImageLimits.of(load_settings())

    def _store_image(self, image: SeedImage) -> StoredImage | tuple[Path, str]:
        try:
            data = image.path.read_bytes()
            content_type = check_image(data, self._limits.max_bytes, self._limits.max_pixels)
        except OSError as error:
            return image.path, str(error)
        except ImageRefused as refusal:
            return image.path, refusal.message
        stored = store_image(self._storage, self._bucket, DATASET_STORE, data, content_type, skip_existing=True)
        return StoredImage(image, stored.sha256, stored.key, stored.uploaded)

    def register(self, images: list[SeedImage], name: str, *, created_by: str, notes: str) -> Registration:
        stored: list[StoredImage] = []
        refused: list[tuple[Path, str]] = []
        with Progress(transient=True) as progress, ThreadPoolExecutor(UPLOAD_THREADS) as pool:
            task = progress.add_task(f"storing {len(images)} images", total=len(images))
            for result in pool.map(self._store_image, images):
                (stored if isinstance(result, StoredImage) else refused).append(result)
                progress.advance(task)
        labels: dict[str, set[str]] = {}
        for item in stored:
            labels.setdefault(item.sha256, set()).add(item.image.label)
        conflicting = sorted(sha for sha, names in labels.items() if len(names) > 1)
        changes = {item.sha256: Change(item.sha256, item.image.label, item.object_key, item.image.split)
                   for item in stored if item.sha256 not in conflicting}
        content = json.dumps(sorted((c.sha256, c.label, c.split) for c in changes.values())).encode()
        version = self._store.create(name, None, changes.values(), created_by=created_by, notes=notes,
                                     request_id=f"register-{hashlib.sha256(content).hexdigest()[:32]}")
        uploads = Counter(item.uploaded for item in stored)
        return Registration(version, uploads[True], uploads[False], refused, conflicting)
