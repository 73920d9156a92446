"""`wastex dataset register`: a labelled folder becomes a seed version (objects in MinIO, rows, manifest, event).

Images are content-addressed, so registering a folder again uploads nothing, and the same folder content
maps to the same request id, so it finds its version instead of making a second one.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from minio import Minio
from minio.error import S3Error
from PIL import Image, UnidentifiedImageError
from rich.progress import Progress

from infra.db.dataset_versions import Change, VersionStore
from infra.db.models import DatasetVersion
from schemas.image_keys import FORMAT_TYPES, image_object_key
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


def _content_type(data: bytes) -> str:
    try:
        image_format = Image.open(io.BytesIO(data)).format
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"not an image: {error}") from None
    if image_format not in FORMAT_TYPES:
        raise ValueError(f"unsupported image format {image_format}")
    return FORMAT_TYPES[image_format]


class SeedRegistrar:
    def __init__(self, storage: Minio, bucket: str, store: VersionStore) -> None:
        self._storage = storage
        self._bucket = bucket
        self._store = store

    def _store_image(self, image: SeedImage) -> StoredImage | tuple[Path, str]:
        try:
            data = image.path.read_bytes()
            content_type = _content_type(data)
        except (OSError, ValueError) as error:
            return image.path, str(error)
        sha256 = hashlib.sha256(data).hexdigest()
        key = image_object_key(sha256, content_type)
        try:
            self._storage.stat_object(self._bucket, key)
            return StoredImage(image, sha256, key, uploaded=False)
        except S3Error as error:
            if error.code != "NoSuchKey":
                raise
        self._storage.put_object(self._bucket, key, io.BytesIO(data), len(data), content_type=content_type)
        return StoredImage(image, sha256, key, uploaded=True)

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
