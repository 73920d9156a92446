"""HTTP ingest against the real MinIO and Kafka: an accepted image is stored and announced before the answer,
a refused one is neither, and a store failure is an error the client can retry."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import urllib3
from flask.testing import FlaskClient
from minio import Minio
from PIL import Image

from infra.clients import minio_client
from infra.publisher import EventPublisher
from infra.settings import Settings
from producers.capture import CaptureSink
from producers.http_ingest import create_ingest_app
from producers.upload_checks import open_sink
from schemas.image_keys import CAPTURES, image_object_key
from tests.images import png_header_only
from tests.integration.captured_tail import CapturedTail

MAX_BYTES = 300_000
MAX_PIXELS = 2_000_000


def object_key(sha256: str, content_type: str) -> str:
    return image_object_key(sha256, content_type, CAPTURES)


def _in_the_future(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def _jpeg(width: int = 320, height: int = 240) -> bytes:
    """A picture no other test uploads, so removing its object afterwards cannot disturb anyone."""
    pixels = np.random.default_rng().integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


@pytest.fixture()
def limited(settings: Settings) -> Settings:
    return dataclasses.replace(settings, max_image_bytes=MAX_BYTES, max_image_pixels=MAX_PIXELS)


@pytest.fixture()
def client(limited: Settings) -> FlaskClient:
    return create_ingest_app(limited).test_client()


@pytest.fixture()
def tail(settings: Settings) -> Iterator[CapturedTail]:
    reader = CapturedTail(settings)
    yield reader
    reader.close()


@pytest.fixture()
def camera() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def _read(storage: Minio, bucket: str, key: str) -> bytes:
    response = storage.get_object(bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


@pytest.mark.parametrize("encoding", ["multipart", "raw"])
def test_an_accepted_image_is_stored_and_announced_before_the_answer(
        encoding: str, client: FlaskClient, tail: CapturedTail, storage: Minio, uploaded: list[str],
        settings: Settings, camera: str) -> None:
    data = _jpeg()
    fields = {"camera_id": camera, "site_id": "site-test", "captured_at": "2026-03-01T08:30:00+01:00"}
    if encoding == "multipart":
        response = client.post("/images", data={**fields, "image": (io.BytesIO(data), "belt.png")})
    else:  # the claimed type is wrong on purpose: the bytes decide
        response = client.post("/images", query_string=fields, data=data, content_type="image/png")

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    uploaded.append(body["object_key"])
    sha256 = hashlib.sha256(data).hexdigest()
    assert body["sha256"] == sha256
    assert body["object_key"] == object_key(sha256, "image/jpeg")
    assert _read(storage, settings.bucket_images, body["object_key"]) == data

    (event,) = tail.events(camera)
    assert event.event_id == body["event_id"]
    assert event.payload == {
        "bucket": settings.bucket_images, "object_key": body["object_key"], "sha256": sha256,
        "size_bytes": len(data), "content_type": "image/jpeg", "camera_id": camera, "site_id": "site-test",
        "captured_at": "2026-03-01T07:30:00.000Z",
    }


def _multipart(camera: str, data: bytes, **extra: str) -> dict:
    return {"data": {"camera_id": camera, "site_id": "site-test", "image": (io.BytesIO(data), "x.jpg"), **extra}}


REFUSALS = {
    "text": (415, "accepted format", lambda c: _multipart(c, b"a text file, not a photo")),
    "too-many-bytes": (413, f"{MAX_BYTES} bytes", lambda c: _multipart(c, b"\xff\xd8" + b"\0" * MAX_BYTES)),
    "far-too-many-bytes": (413, "request too large", lambda c: _multipart(c, b"\0" * (4 * MAX_BYTES))),
    "header-bomb": (413, f"{MAX_PIXELS} pixels", lambda c: _multipart(c, png_header_only(100_000, 100_000))),
    "too-many-pixels": (413, f"{MAX_PIXELS} pixels", lambda c: _multipart(c, png_header_only(2000, 1001))),
    "truncated": (400, "truncated", lambda c: _multipart(c, _jpeg()[:3000])),
    "empty-body": (400, "empty", lambda c: {"query_string": {"camera_id": c, "site_id": "s"}, "data": b"",
                                            "content_type": "image/jpeg"}),
    "no-image-field": (400, "'image'", lambda c: {"data": {"camera_id": c, "site_id": "s"},
                                                   "content_type": "multipart/form-data"}),
    "not-an-upload": (400, "Content-Type image/*", lambda c: {"query_string": {"camera_id": c, "site_id": "s"},
                                                              "json": {"image": "aGVsbG8="}}),
    "missing-camera-id": (400, "camera_id is required", lambda c: {"data": {"site_id": "s",
                                                                             "image": (io.BytesIO(_jpeg()), "x")}}),
    "camera-id-with-space": (400, "camera_id must be", lambda c: _multipart("cam 1", _jpeg())),
    "camera-id-with-nul": (400, "camera_id must be", lambda c: _multipart(f"{c}\x00", _jpeg())),
    "camera-id-with-nul-in-the-query": (400, "camera_id must be", lambda c: {
        "query_string": {"camera_id": f"cam\x00{c}", "site_id": "s"}, "data": _jpeg(), "content_type": "image/jpeg"}),
    "site-id-with-slash": (400, "site_id must be", lambda c: {"data": {"camera_id": c, "site_id": "site/7",
                                                                        "image": (io.BytesIO(_jpeg()), "x")}}),
    "captured-at-in-the-future": (400, "in the future", lambda c: _multipart(c, _jpeg(),
                                                                             captured_at=_in_the_future(3600))),
    "missing-site-id": (400, "site_id is required", lambda c: {"data": {"camera_id": c,
                                                                         "image": (io.BytesIO(_jpeg()), "x")}}),
    "bad-captured-at": (400, "RFC 3339", lambda c: _multipart(c, _jpeg(), captured_at="yesterday 10:00")),
}


@pytest.mark.parametrize("kind", REFUSALS)
def test_a_refusal_is_a_json_error_and_announces_nothing(
        kind: str, client: FlaskClient, tail: CapturedTail, camera: str) -> None:
    status, words, request = REFUSALS[kind]
    response = client.post("/images", **request(camera))
    assert response.status_code == status
    assert response.is_json and words in response.get_json()["error"]
    assert tail.events(camera) == []


@pytest.mark.parametrize("down", ["kafka", "minio"])
def test_a_store_failure_is_503_and_a_retry_succeeds(
        down: str, limited: Settings, client: FlaskClient, tail: CapturedTail, uploaded: list[str],
        camera: str) -> None:
    working = open_sink(limited)
    if down == "kafka":
        publisher = EventPublisher(limited, **{"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 1500})
        sink = CaptureSink(minio_client(limited), limited.bucket_images, publisher)
    else:
        unreachable = Minio("127.0.0.1:1", access_key="x", secret_key="y", secure=False,
                            http_client=urllib3.PoolManager(retries=False))
        sink = CaptureSink(unreachable, limited.bucket_images, EventPublisher(limited))
    data = _jpeg()
    uploaded.append(object_key(hashlib.sha256(data).hexdigest(), "image/jpeg"))
    failing = create_ingest_app(limited, sink).test_client()

    response = failing.post("/images", **_multipart(camera, data))
    assert response.status_code == 503
    assert "retry" in response.get_json()["error"] and response.headers["Retry-After"]
    assert tail.events(camera) == []

    retried = create_ingest_app(limited, working).test_client().post("/images", **_multipart(camera, data))
    assert retried.status_code == 201
    assert [e.event_id for e in tail.events(camera)] == [retried.get_json()["event_id"]]


def test_health(client: FlaskClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}
