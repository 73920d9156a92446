"""HTTP ingest against the real MinIO, Kafka and PostgreSQL: only a camera's token gets an image in, as that camera;
an accepted image is stored and announced before the answer, a refused one is neither, and a store failure is an
error the client can retry."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import requests
import urllib3
from confluent_kafka import KafkaException
from flask.testing import FlaskClient
from minio import Minio
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from infra.clients import db_sessions, minio_client
from infra.db.models import CameraToken
from infra.publisher import EventPublisher
from infra.settings import Settings
from producers.camera_tokens import CameraTokens, IssuedToken, issue_token, revoke_tokens, token_digest
from producers.capture import CaptureSink
from producers.http_ingest import create_ingest_app, create_ingest_server
from producers.upload_checks import open_sink
from schemas.image_keys import CAPTURES, image_object_key
from tests.images import png_header_only
from tests.integration.captured_tail import CapturedTail

MAX_BYTES = 300_000
MAX_PIXELS = 2_000_000
SITE = "site-test"


def object_key(sha256: str, content_type: str) -> str:
    return image_object_key(sha256, content_type, CAPTURES)


def _in_the_future(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def _jpeg(width: int = 320, height: int = 240) -> bytes:
    """A picture no other test uploads."""
    pixels = np.random.default_rng().integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


class IngestServer:
    """The ingest on waitress (as `wastex ingest serve` runs it) on a free local port, in a thread."""

    def __init__(self, settings: Settings) -> None:
        self._server = create_ingest_server(settings, create_ingest_app(settings), "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.effective_port}"
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        def close() -> None:  # runs in the server's own loop, which then ends with nothing left to watch
            for channel in list(self._server.active_channels.values()):
                channel.close()
            self._server.close()

        self._server.trigger.pull_trigger(close)
        self._thread.join(timeout=10)
        self._server.task_dispatcher.shutdown()


@pytest.fixture(scope="module")
def limited(deployment: Settings) -> Settings:
    return dataclasses.replace(deployment, max_image_bytes=MAX_BYTES, max_image_pixels=MAX_PIXELS)


@pytest.fixture(scope="module")
def sessions(deployment: Settings) -> sessionmaker:
    return db_sessions(deployment)


@pytest.fixture()
def camera() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def _issue(sessions: sessionmaker, camera: str) -> IssuedToken:
    with sessions() as session, session.begin():
        return issue_token(session, camera, SITE, "test")


@pytest.fixture()
def token(sessions: sessionmaker, camera: str) -> IssuedToken:
    return _issue(sessions, camera)


def _bearer(token: IssuedToken) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.token}"}


@pytest.fixture()
def client(limited: Settings, token: IssuedToken) -> FlaskClient:
    test_client = create_ingest_app(limited).test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token.token}"
    return test_client


@pytest.fixture(scope="module")
def server(limited: Settings) -> Iterator[IngestServer]:
    running = IngestServer(limited)
    yield running
    running.stop()


@pytest.fixture()
def tail(deployment: Settings) -> Iterator[CapturedTail]:
    reader = _open_tail(deployment)
    yield reader
    reader.close()


def _open_tail(settings: Settings) -> CapturedTail:
    """The deployment's topics are new: their partitions may still be electing a leader for a moment."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return CapturedTail(settings)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _read(storage: Minio, bucket: str, key: str) -> bytes:
    response = storage.get_object(bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


@pytest.mark.parametrize("encoding", ["multipart", "raw"])
def test_an_accepted_image_is_stored_and_announced_before_the_answer(
        encoding: str, client: FlaskClient, tail: CapturedTail, deployment: Settings, camera: str) -> None:
    data = _jpeg()
    fields = {"camera_id": camera, "site_id": SITE, "captured_at": "2026-03-01T08:30:00+01:00"}
    if encoding == "multipart":
        response = client.post("/images", data={**fields, "image": (io.BytesIO(data), "belt.png")})
    else:  # the claimed type is wrong on purpose: the bytes decide
        response = client.post("/images", query_string=fields, data=data, content_type="image/png")

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    sha256 = hashlib.sha256(data).hexdigest()
    assert body["sha256"] == sha256
    assert body["object_key"] == object_key(sha256, "image/jpeg")
    assert _read(minio_client(deployment), deployment.bucket_images, body["object_key"]) == data

    (event,) = tail.events(camera)
    assert event.event_id == body["event_id"]
    assert event.payload == {
        "bucket": deployment.bucket_images, "object_key": body["object_key"], "sha256": sha256,
        "size_bytes": len(data), "content_type": "image/jpeg", "camera_id": camera, "site_id": SITE,
        "captured_at": "2026-03-01T07:30:00.000Z",
    }


def _multipart(camera: str, data: bytes, **extra: str) -> dict:
    return {"data": {"camera_id": camera, "site_id": SITE, "image": (io.BytesIO(data), "x.jpg"), **extra}}


REFUSALS = {
    "text": (415, "accepted format", lambda c: _multipart(c, b"a text file, not a photo")),
    "too-many-bytes": (413, f"{MAX_BYTES} bytes", lambda c: _multipart(c, b"\xff\xd8" + b"\0" * MAX_BYTES)),
    "far-too-many-bytes": (413, "request too large", lambda c: _multipart(c, b"\0" * (4 * MAX_BYTES))),
    "header-bomb": (413, f"{MAX_PIXELS} pixels", lambda c: _multipart(c, png_header_only(100_000, 100_000))),
    "too-many-pixels": (413, f"{MAX_PIXELS} pixels", lambda c: _multipart(c, png_header_only(2000, 1001))),
    "truncated": (400, "truncated", lambda c: _multipart(c, _jpeg()[:3000])),
    "empty-body": (400, "empty", lambda c: {"query_string": {"camera_id": c}, "data": b"",
                                            "content_type": "image/jpeg"}),
    "no-image-field": (400, "'image'", lambda c: {"data": {"camera_id": c}, "content_type": "multipart/form-data"}),
    "not-an-upload": (400, "Content-Type image/*", lambda c: {"query_string": {"camera_id": c},
                                                              "json": {"image": "aGVsbG8="}}),
    "camera-id-with-space": (400, "camera_id must be", lambda c: _multipart("cam 1", _jpeg())),
    "camera-id-with-nul": (400, "camera_id must be", lambda c: _multipart(f"{c}\x00", _jpeg())),
    "camera-id-with-nul-in-the-query": (400, "camera_id must be", lambda c: {
        "query_string": {"camera_id": f"cam\x00{c}"}, "data": _jpeg(), "content_type": "image/jpeg"}),
    "site-id-with-slash": (400, "site_id must be", lambda c: {"data": {"camera_id": c, "site_id": "site/7",
                                                                        "image": (io.BytesIO(_jpeg()), "x")}}),
    "another-camera": (403, "this token posts as camera", lambda c: _multipart("cam-b", _jpeg())),
    "another-site": (403, f"at site {SITE}", lambda c: _multipart(c, _jpeg(), site_id="site-other")),
    "captured-at-in-the-future": (400, "in the future", lambda c: _multipart(c, _jpeg(),
                                                                             captured_at=_in_the_future(3600))),
    "bad-captured-at": (400, "RFC 3339", lambda c: _multipart(c, _jpeg(), captured_at="yesterday 10:00")),
}


@pytest.mark.parametrize("kind", REFUSALS)
def test_a_refusal_is_a_json_error_and_announces_nothing(
        kind: str, client: FlaskClient, tail: CapturedTail, camera: str) -> None:
    status, words, request = REFUSALS[kind]
    response = client.post("/images", **request(camera))
    assert response.status_code == status
    assert response.is_json and words in response.get_json()["error"]
    assert tail.events(camera) == [] and tail.events("cam-b") == []


@pytest.mark.parametrize("down", ["kafka", "minio"])
def test_a_store_failure_is_503_and_a_retry_succeeds(
        down: str, limited: Settings, tail: CapturedTail, token: IssuedToken, camera: str) -> None:
    working = open_sink(limited)
    if down == "kafka":
        publisher = EventPublisher(limited, **{"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 1500})
        sink = CaptureSink(minio_client(limited), limited.bucket_images, publisher)
    else:
        unreachable = Minio("127.0.0.1:1", access_key="x", secret_key="y", secure=False,
                            http_client=urllib3.PoolManager(retries=False))
        sink = CaptureSink(unreachable, limited.bucket_images, EventPublisher(limited))
    data = _jpeg()
    failing = create_ingest_app(limited, sink).test_client()

    response = failing.post("/images", headers=_bearer(token), **_multipart(camera, data))
    assert response.status_code == 503
    assert "retry" in response.get_json()["error"] and response.headers["Retry-After"]
    assert tail.events(camera) == []

    retried = create_ingest_app(limited, working).test_client().post("/images", headers=_bearer(token),
                                                                     **_multipart(camera, data))
    assert retried.status_code == 201
    assert [e.event_id for e in tail.events(camera)] == [retried.get_json()["event_id"]]


def test_health_needs_no_token(server: IngestServer) -> None:
    response = requests.get(f"{server.url}/health", timeout=30)
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer  ", "Basic Y2FtOnB3",
                                           "Bearer wxc_not-a-token-anyone-was-given", "wxc_no-scheme"])
def test_an_upload_without_a_known_token_is_401_and_announces_nothing(
        authorization: str | None, server: IngestServer, tail: CapturedTail, camera: str) -> None:
    headers = {"Content-Type": "image/jpeg"} | ({} if authorization is None else {"Authorization": authorization})
    response = requests.post(f"{server.url}/images", params={"camera_id": camera}, data=_jpeg(), headers=headers,
                             timeout=30)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "token" in response.json()["error"]
    assert tail.events(camera) == []


def test_a_revoked_token_is_refused_on_its_very_next_request(
        server: IngestServer, sessions: sessionmaker, token: IssuedToken, tail: CapturedTail, camera: str) -> None:
    def post() -> requests.Response:
        return requests.post(f"{server.url}/images", data=_jpeg(), timeout=30,
                             headers={**_bearer(token), "Content-Type": "image/jpeg"})

    accepted = post()
    assert accepted.status_code == 201, accepted.text
    with sessions() as session, session.begin():
        assert [row.prefix for row in revoke_tokens(session, prefix=token.prefix)] == [token.prefix]

    refused = post()
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert [event.event_id for event in tail.events(camera)] == [accepted.json()["event_id"]]


def test_a_token_posts_as_its_own_camera_and_site_only(
        server: IngestServer, sessions: sessionmaker, tail: CapturedTail, camera: str) -> None:
    camera_a, camera_b = camera, f"{camera}-b"
    token_a, _ = _issue(sessions, camera_a), _issue(sessions, camera_b)

    def post(**fields: str) -> requests.Response:
        return requests.post(f"{server.url}/images", headers=_bearer(token_a), data=fields, timeout=30,
                             files={"image": ("belt.jpg", _jpeg(), "image/jpeg")})

    as_b = post(camera_id=camera_b, site_id=SITE)
    assert as_b.status_code == 403
    assert f"this token posts as camera {camera_a}" in as_b.json()["error"]
    assert post(camera_id=camera_a, site_id="another-site").status_code == 403

    unnamed, named = post(), post(camera_id=camera_a, site_id=SITE)
    assert unnamed.status_code == named.status_code == 201
    assert unnamed.json()["camera_id"] == camera_a and unnamed.json()["site_id"] == SITE
    events = tail.events(camera_a)
    assert [event.event_id for event in events] == [unnamed.json()["event_id"], named.json()["event_id"]]
    assert {(event.payload["camera_id"], event.payload["site_id"]) for event in events} == {(camera_a, SITE)}
    assert tail.events(camera_b) == []


def test_a_token_notes_its_first_use_and_not_every_use(
        server: IngestServer, sessions: sessionmaker, token: IssuedToken) -> None:
    def last_used() -> datetime | None:
        with sessions() as session:
            return session.scalars(select(CameraToken.last_used_at)
                                   .where(CameraToken.token_sha256 == token_digest(token.token))).one()

    def post() -> None:
        response = requests.post(f"{server.url}/images", data=_jpeg(), timeout=30,
                                 headers={**_bearer(token), "Content-Type": "image/jpeg"})
        assert response.status_code == 201

    assert last_used() is None
    post()
    first = last_used()
    assert first is not None
    post()
    assert last_used() == first


def test_an_unreachable_database_is_503_with_retry_after_not_401(limited: Settings, token: IssuedToken) -> None:
    nowhere = dataclasses.replace(limited, database_url_override="postgresql+psycopg2://x:y@127.0.0.1:1/none")
    app = create_ingest_app(limited, tokens=CameraTokens(db_sessions(nowhere)))
    response = app.test_client().post("/images", headers=_bearer(token), data=_jpeg(), content_type="image/jpeg")
    assert response.status_code == 503
    assert response.headers["Retry-After"] and "database" in response.get_json()["error"]


def test_with_every_decode_slot_taken_an_upload_is_503_with_retry_after(
        limited: Settings, token: IssuedToken, tail: CapturedTail, camera: str) -> None:
    app = create_ingest_app(dataclasses.replace(limited, ingest_max_decodes=0))
    response = app.test_client().post("/images", headers=_bearer(token), data=_jpeg(), content_type="image/jpeg")
    assert response.status_code == 503
    assert response.headers["Retry-After"] and "busy" in response.get_json()["error"]
    assert tail.events(camera) == []


def test_a_body_far_over_the_limit_is_413_from_the_server_itself(server: IngestServer, token: IssuedToken) -> None:
    response = requests.post(f"{server.url}/images", data=b"\xff\xd8" + bytes(20 * MAX_BYTES), timeout=30,
                             headers={**_bearer(token), "Content-Type": "image/jpeg"})
    assert response.status_code == 413
