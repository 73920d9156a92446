"""HTTP ingest for cameras that cannot speak Kafka: POST an image with the camera's token, get its event id once
the broker has it. The token fixes the camera and site the image is announced as (`wastex ingest token create`).

    curl -H "Authorization: Bearer $TOKEN" -F image=@photo.jpg http://127.0.0.1:8081/images
    curl -H "Authorization: Bearer $TOKEN" --data-binary @photo.jpg -H 'Content-Type: image/jpeg' \
         http://127.0.0.1:8081/images

Work is bounded: a fixed pool of request threads (waitress), a connection limit, a body size limit and at most
WASTEX_INGEST_MAX_DECODES images checked at once; beyond that the answer is 503 with Retry-After.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from infra.clients import db_sessions
from infra.retry import is_transient
from infra.settings import Settings
from infra.web_server import WebServer, listening
from producers import ingest_metrics
from producers.camera_tokens import CameraIdentity, CameraTokens, TokenRejected
from producers.capture import CapturedImage, CaptureSink
from producers.upload_checks import (
    SERVICE_ERRORS,
    UploadRefused,
    check_captured_at,
    check_identifier,
    check_upload,
    open_sink,
)
from schemas.events import Event, parse_timestamp

log = logging.getLogger(__name__)

# Room for the multipart boundaries and form fields around an image of the largest accepted size.
FORM_OVERHEAD_BYTES = 64 * 1024
RETRY_AFTER_S = 5
# A request waits this long for a free decode slot, then is told to come back: threads queued on the slots would
# leave none to answer the cheap requests (401s, /health).
DECODE_WAIT_S = 1.0
BUSY_RETRY_AFTER_S = 2
# Idle keep-alive connections (and stalled uploads) are closed after this long, so they do not hold the connection
# limit: waitress's default, 120 s checked every 30 s, let 30 quiet cameras lock everyone else out for 150 s.
IDLE_TIMEOUT_S = 10
IDLE_CHECK_S = 2


class TryLater(Exception):
    """The request was fine but cannot be served now (a store down, every decode slot busy): 503."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class NotAuthenticated(Exception):
    """No usable bearer token: 401 with WWW-Authenticate."""


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> tuple[Response, int]:
    response = jsonify(error=message)
    response.headers.update(headers or {})
    return response, status


def _uploaded_bytes() -> bytes:
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("image")
        if upload is None:
            raise UploadRefused(400, "multipart upload without a file field named 'image'")
        return upload.read()
    if request.mimetype.startswith("image/") or request.mimetype == "application/octet-stream":
        return request.get_data(cache=False)
    raise UploadRefused(400, "send the image as multipart field 'image', or as the raw body with "
                             "Content-Type image/*")


def _bearer_token() -> str:
    credentials = request.authorization
    if credentials is None or credentials.type != "bearer" or not credentials.token:
        raise NotAuthenticated("send the camera's token as 'Authorization: Bearer <token>' "
                               "(tokens come from `wastex ingest token create`)")
    return credentials.token


def _authenticate(tokens: CameraTokens) -> CameraIdentity:
    token = _bearer_token()
    try:
        return tokens.authenticate(token)
    except TokenRejected as rejected:
        raise NotAuthenticated(str(rejected)) from None
    except Exception as error:
        if not is_transient(error):
            raise
        log.warning("cannot check camera tokens, PostgreSQL is unreachable: %s", error)
        raise TryLater("camera tokens cannot be checked right now (the database is unreachable); retry later",
                       RETRY_AFTER_S) from None


def _check_claims(identity: CameraIdentity) -> None:
    """A camera_id or site_id sent along must be the token's own: the token, not the client, names the camera."""
    for field, own in (("camera_id", identity.camera_id), ("site_id", identity.site_id)):
        claimed = request.values.get(field)
        if claimed is None or claimed == "":
            continue
        check_identifier(field, claimed)
        if claimed != own:
            raise UploadRefused(403, f"this token posts as camera {identity.camera_id} at site {identity.site_id}, "
                                     f"not as {field} {claimed}; leave {field} out or use that camera's token")


def _captured_at(settings: Settings) -> datetime | None:
    captured_at = request.values.get("captured_at")
    try:
        moment = parse_timestamp(captured_at) if captured_at else None
    except ValueError:
        raise UploadRefused(400, "captured_at must be an RFC 3339 date-time with an offset, e.g. "
                                 f"2026-01-31T12:00:00Z; got {captured_at[:80]!r}") from None
    if moment is not None:
        check_captured_at(moment, settings.clock_skew_s)
    return moment


@contextmanager
def _decode_slot(slots: threading.Semaphore, size: int) -> Iterator[None]:
    if not slots.acquire(timeout=DECODE_WAIT_S):
        raise TryLater(f"busy: {size} images are being checked already; retry in a few seconds", BUSY_RETRY_AFTER_S)
    try:
        yield
    finally:
        slots.release()


def create_ingest_app(settings: Settings, sink: CaptureSink | None = None,
                      tokens: CameraTokens | None = None) -> Flask:
    app = Flask(__name__)
    # Bodies far over the image limit are refused from Content-Length, before a byte is read.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_image_bytes + FORM_OVERHEAD_BYTES
    if settings.metrics_enabled:
        ingest_metrics.install(app)
    capture_sink = sink or open_sink(settings)
    camera_tokens = tokens or CameraTokens(db_sessions(settings))
    # Checking an image may decode it (up to 4 bytes per pixel, see infra/images.check_image): a fixed number
    # at once bounds the memory the ingest needs, however many cameras post.
    decode_slots = threading.BoundedSemaphore(settings.ingest_max_decodes)
    # EventPublisher hands the delivery failures it collected to whoever flushes next: with concurrent
    # requests one could report another's failure and miss its own. Uploads still run in parallel.
    publishing = threading.Lock()

    def capture(image: CapturedImage) -> Event:
        event = capture_sink.store(image)
        with publishing:
            capture_sink.publish(event)
            capture_sink.flush()
        return event

    def captured_image() -> CapturedImage:
        identity = _authenticate(camera_tokens)
        _check_claims(identity)
        moment = _captured_at(settings)
        data = _uploaded_bytes()
        with _decode_slot(decode_slots, settings.ingest_max_decodes):
            content_type = check_upload(data, settings.max_image_bytes, settings.max_image_pixels)
        return CapturedImage(data, content_type, identity.camera_id, identity.site_id, moment)

    @app.post("/images")
    def post_image() -> tuple[Response, int]:
        image = captured_image()
        try:
            event = capture(image)
        except SERVICE_ERRORS as error:
            log.warning("could not capture an image from %s: %s", image.camera_id, error)
            raise TryLater(f"the image could not be stored or announced ({error}); retry later, sending the same "
                           "image again is safe", RETRY_AFTER_S) from None
        payload = event.payload
        log.info("captured %s from %s as %s", payload["object_key"], image.camera_id, event.event_id)
        return jsonify(event_id=event.event_id, object_key=payload["object_key"], sha256=payload["sha256"],
                       content_type=payload["content_type"], camera_id=image.camera_id, site_id=image.site_id), 201

    @app.get("/health")
    def health() -> Response:
        return jsonify(status="ok")

    @app.errorhandler(NotAuthenticated)
    def not_authenticated(error: NotAuthenticated) -> tuple[Response, int]:
        log.info("refused an upload from %s without a valid camera token: %s", request.remote_addr, error)
        return _error(401, str(error), {"WWW-Authenticate": 'Bearer realm="wastex-ingest"'})

    @app.errorhandler(TryLater)
    def try_later(error: TryLater) -> tuple[Response, int]:
        return _error(503, error.message, {"Retry-After": str(error.retry_after_s)})

    @app.errorhandler(UploadRefused)
    def refused(error: UploadRefused) -> tuple[Response, int]:
        return _error(error.status, error.message)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        if error.code == 413:
            return _error(413, f"request too large: images are limited to {settings.max_image_bytes} bytes")
        return _error(error.code or 500, error.description or error.name)

    return app


def create_ingest_server(settings: Settings, app: Flask, host: str, port: int) -> WebServer:
    """The app on waitress with bounded threads, connections (more wait in the backlog) and request bodies."""
    return listening(app, host, port, threads=settings.ingest_threads,
                         connection_limit=settings.ingest_connection_limit, backlog=settings.ingest_backlog,
                         max_request_body_size=app.config["MAX_CONTENT_LENGTH"], channel_timeout=IDLE_TIMEOUT_S,
                         cleanup_interval=IDLE_CHECK_S, ident="wastex-ingest")
