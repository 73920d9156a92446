"""Bad records written straight to images.captured, past every producer-side check.

Each has an event id, so the harness can ask for its one outcome: a dead letter, while the images after
it keep flowing.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid

from minio import Minio

from infra.clients import kafka_producer
from infra.settings import Settings
from producers.capture import CapturedImage, CaptureSink
from schemas.codec import encode
from schemas.topics import IMAGES_CAPTURED

NOT_AN_IMAGE = b"this is a text file named like a photo, not an image\n" * 20


def _raw(document: dict) -> bytes:
    # ensure_ascii keeps the NUL as the JSON escape \u0000: valid JSON that PostgreSQL text refuses.
    return json.dumps(document, ensure_ascii=True).encode()


def _variant(good: dict, **payload: object) -> dict:
    return {**good, "event_id": str(uuid.uuid4()), "payload": {**good["payload"], **payload}}


def poison_records(sink: CaptureSink, storage: Minio, photo: bytes) -> dict[str, tuple[str, bytes]]:
    """{event id: (key, raw value)}: a NUL camera id, a schema-invalid ImageCaptured, bytes that are no image."""
    good = json.loads(encode(sink.store(CapturedImage(photo, "image/jpeg", "fault-cam-poison", "bench"))))
    nul_camera = _variant(good, camera_id="cam\x00nul")
    invalid = _variant(good, size_bytes="many", sha256="not-a-digest")
    # Stored directly: every producer refuses such bytes, a record naming them can still reach the topic.
    digest = hashlib.sha256(NOT_AN_IMAGE).hexdigest()
    key = f"{good['payload']['object_key'].rsplit('/', 1)[0]}/{digest}.jpg"  # where this producer stores captures
    storage.put_object(good["payload"]["bucket"], key, io.BytesIO(NOT_AN_IMAGE), len(NOT_AN_IMAGE),
                       content_type="image/jpeg")
    garbage = _variant(good, sha256=digest, object_key=key, size_bytes=len(NOT_AN_IMAGE))
    return {doc["event_id"]: (doc["payload"]["camera_id"], _raw(doc)) for doc in (nul_camera, invalid, garbage)}


def publish_raw(isolated: Settings, records: dict[str, tuple[str, bytes]]) -> None:
    """Produce the records as they are (no validation) and wait for the broker's acknowledgement."""
    producer = kafka_producer(isolated)
    topic = IMAGES_CAPTURED.full_name(isolated.topic_prefix)
    for key, value in records.values():
        producer.produce(topic, key=key.encode(), value=value)
    if producer.flush(60):
        raise RuntimeError("poison records not acknowledged by the broker within 60 s")
