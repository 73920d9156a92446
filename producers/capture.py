"""Publishing one captured image: bytes to MinIO as `captures/<sha256>.<ext>`, then ImageCaptured to Kafka.

Captures have a prefix of their own: they are the only objects retention ever deletes (infra/image_retention.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from minio import Minio

from infra.images import store_image
from infra.publisher import EventPublisher
from schemas.codec import new_event
from schemas.events import Event, EventType, format_timestamp
from schemas.image_keys import CAPTURES, image_object_key

SOURCE = "producers"
CONTENT_TYPES = {"jpeg": "image/jpeg", "jpg": "image/jpeg", "png": "image/png", "webp": "image/webp",
                 "bmp": "image/bmp", "gif": "image/gif", "tiff": "image/tiff", "tif": "image/tiff"}


@dataclass(frozen=True)
class CapturedImage:
    data: bytes
    content_type: str
    camera_id: str
    site_id: str
    captured_at: datetime | None = None


def captured_event(image: CapturedImage, bucket: str) -> Event:
    """The validated ImageCaptured event of an image stored under its content address in `bucket`."""
    sha256 = hashlib.sha256(image.data).hexdigest()
    return new_event(EventType.IMAGE_CAPTURED, {
        "bucket": bucket,
        "object_key": image_object_key(sha256, image.content_type, CAPTURES),
        "sha256": sha256,
        "size_bytes": len(image.data),
        "content_type": image.content_type,
        "camera_id": image.camera_id,
        "site_id": image.site_id,
        "captured_at": format_timestamp(image.captured_at or datetime.now(UTC)),
    }, SOURCE)


class CaptureSink:
    """Stores the bytes first, so an event never points at an object that does not exist yet."""

    def __init__(self, storage: Minio, bucket: str, publisher: EventPublisher) -> None:
        self._storage = storage
        self._bucket = bucket
        self._publisher = publisher

    def store(self, image: CapturedImage) -> Event:
        """Upload the bytes and build the (validated) event; safe to call from several threads."""
        event = captured_event(image, self._bucket)
        store_image(self._storage, self._bucket, CAPTURES, image.data, image.content_type)
        return event

    def publish(self, event: Event) -> None:
        self._publisher.publish(event)

    def flush(self, timeout_s: float = 30.0) -> None:
        self._publisher.flush(timeout_s)

    def capture(self, image: CapturedImage) -> Event:
        """Store, publish and wait for the broker's acknowledgement."""
        event = self.store(image)
        self.publish(event)
        self.flush()
        return event
