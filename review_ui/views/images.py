"""Image bytes and thumbnails from the images bucket, for signed-in operators only."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, abort, request
from minio.error import S3Error

from review_ui.image_proxy import ForbiddenKey, checked_key, thumbnail
from review_ui.views.common import services

blueprint = Blueprint("images", __name__)
# Objects are content-addressed (the key contains the sha256): the bytes behind a key never change.
CACHE_CONTROL = "private, max-age=31536000, immutable"


def _fetch(key: str) -> bytes:
    svc = services()
    try:
        response = svc.storage.get_object(svc.settings.bucket_images, key)
    except S3Error as error:
        if error.code in {"NoSuchKey", "NoSuchObject"}:
            abort(404, "the image is no longer in the image store")
        raise
    try:
        return response.read(svc.settings.max_image_bytes + 1)
    finally:
        response.close()
        response.release_conn()


def _serve(key: str, etag_suffix: str, render: Callable[[bytes, str], tuple[bytes, str]]) -> Response:
    try:
        content_type, sha256 = checked_key(key)
    except ForbiddenKey as error:
        abort(404, str(error))
    etag = sha256 + etag_suffix
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    else:
        body, mimetype = render(_fetch(key), content_type)
        response = Response(body, mimetype=mimetype)
    response.set_etag(etag)
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.headers["Content-Disposition"] = "inline"
    return response


def _small(data: bytes, content_type: str) -> tuple[bytes, str]:
    try:
        return thumbnail(data, services().settings.max_image_pixels), "image/jpeg"
    except Exception:  # kept for review but not decodable by PIL: say so instead of failing with a 500
        abort(415, "this image cannot be shown as a thumbnail")


@blueprint.get("/images/<path:key>")
def image(key: str) -> Response:
    """The image bytes of a key captures/<sha256>.<ext> or images/<sha256>.<ext> of the images bucket (else 404).

    Cached by the browser for a year (the key names the content); ETag is the sha256.
    """
    return _serve(key, "", lambda data, content_type: (data, content_type))


@blueprint.get("/thumbnails/<path:key>")
def thumb(key: str) -> Response:
    """A JPEG thumbnail (at most 240x240) of the same images; same rules and caching as /images."""
    return _serve(key, "-thumb", _small)
