"""HTTP ingest for devices that cannot speak Kafka: POST an image, get its event id once the broker has it.

    curl -F image=@photo.jpg -F camera_id=cam-7 -F site_id=site-1 http://127.0.0.1:8081/images
    curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg' \
         'http://127.0.0.1:8081/images?camera_id=cam-7&site_id=site-1'
"""

from __future__ import annotations

import logging
import threading

import click
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from infra.settings import Settings, load_settings
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


def _error(status: int, message: str) -> tuple[Response, int]:
    return jsonify(error=message), status


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


def _captured_image(settings: Settings) -> CapturedImage:
    camera_id = check_identifier("camera_id", request.values.get("camera_id"))
    site_id = check_identifier("site_id", request.values.get("site_id"))
    captured_at = request.values.get("captured_at")
    try:
        moment = parse_timestamp(captured_at) if captured_at else None
    except ValueError:
        raise UploadRefused(400, "captured_at must be an RFC 3339 date-time with an offset, e.g. "
                                 f"2026-01-31T12:00:00Z; got {captured_at[:80]!r}") from None
    if moment is not None:
        check_captured_at(moment, settings.clock_skew_s)
    data = _uploaded_bytes()
    content_type = check_upload(data, settings.max_image_bytes, settings.max_image_pixels)
    return CapturedImage(data, content_type, camera_id, site_id, moment)


def create_ingest_app(settings: Settings, sink: CaptureSink | None = None) -> Flask:
    app = Flask(__name__)
    # Bodies far over the image limit are refused from Content-Length, before a byte is read.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_image_bytes + FORM_OVERHEAD_BYTES
    capture_sink = sink or open_sink(settings)
    # EventPublisher hands the delivery failures it collected to whoever flushes next: with concurrent
    # requests one could report another's failure and miss its own. Uploads still run in parallel.
    publishing = threading.Lock()

    def capture(image: CapturedImage) -> Event:
        event = capture_sink.store(image)
        with publishing:
            capture_sink.publish(event)
            capture_sink.flush()
        return event

    @app.post("/images")
    def post_image() -> tuple[Response, int]:
        image = _captured_image(settings)
        try:
            event = capture(image)
        except SERVICE_ERRORS as error:
            log.warning("could not capture an image from %s: %s", image.camera_id, error)
            response, status = _error(503, f"the image could not be stored or announced ({error}); "
                                           "retry later, sending the same image again is safe")
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return response, status
        payload = event.payload
        log.info("captured %s from %s as %s", payload["object_key"], image.camera_id, event.event_id)
        return jsonify(event_id=event.event_id, object_key=payload["object_key"], sha256=payload["sha256"],
                       content_type=payload["content_type"]), 201

    @app.get("/health")
    def health() -> Response:
        return jsonify(status="ok")

    @app.errorhandler(UploadRefused)
    def refused(error: UploadRefused) -> tuple[Response, int]:
        return _error(error.status, error.message)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        if error.code == 413:
            return _error(413, f"request too large: images are limited to {settings.max_image_bytes} bytes")
        return _error(error.code or 500, error.description or error.name)

    return app


@click.command("ingest")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="WASTEX_INGEST_HOST")
@click.option("--port", default=8081, show_default=True, type=int, envvar="WASTEX_INGEST_PORT")
def ingest(host: str, port: int) -> None:
    """HTTP ingest: POST /images with an image and camera_id, site_id (and optionally captured_at).

    Ids are 1 to 64 of A-Z a-z 0-9 . _ : - ; a captured_at more than WASTEX_CLOCK_SKEW_S in the future is refused.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    create_ingest_app(load_settings()).run(host=host, port=port, threaded=True)
