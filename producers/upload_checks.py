"""What an upload must be before it is stored, and which failures mean "the stores are down, try again".

Shared by the HTTP ingest and the watch-folder: both refuse bad files with an HTTP status and a message
that names the limit, and both keep a file (or let the client retry) when Kafka or MinIO fail.
"""

from __future__ import annotations

import io
import re
import warnings

from confluent_kafka import KafkaException
from minio.error import MinioException
from PIL import Image, UnidentifiedImageError
from urllib3.exceptions import HTTPError as Urllib3Error

from infra.clients import minio_client
from infra.publisher import EventPublisher, PublishError
from infra.settings import Settings
from producers.capture import CaptureSink
from schemas.image_keys import FORMAT_TYPES

# Decoder name -> the content type ImageCaptured allows. MPO is what many cameras write: a JPEG with a
# second frame appended, readable by every JPEG decoder.
_DECODERS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")  # PIL's JPEG decoder is the one that opens MPO
_ACCEPTED = "JPEG, PNG, WebP, BMP, GIF or TIFF"
_IDENTIFIER = re.compile(r"\S{1,64}")

# The upload was fine but a store did not confirm it: the same upload can be retried (its object key is its
# sha256; at worst the event is announced twice, which consumers tolerate).
SERVICE_ERRORS: tuple[type[BaseException], ...] = (PublishError, KafkaException, MinioException, Urllib3Error)

# librdkafka keeps retrying an unacknowledged event for 5 minutes by default, so an event reported as
# failed could still be delivered after the client has retried: a duplicate. Give up well before
# CaptureSink.flush does (30 s), so a reported failure is final.
DELIVERY_TIMEOUT_MS = 10_000


class UploadRefused(ValueError):
    """An upload that will never be accepted as it is; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_upload(data: bytes, max_bytes: int, max_pixels: int) -> str:
    """The content type of an acceptable image, read from its header; raises UploadRefused otherwise.

    Too many pixels is 413 like too many bytes: both say "the content is larger than this server takes",
    and the client's remedy is the same (send a smaller picture); 422 would suggest the file is malformed.
    """
    if not data:
        raise UploadRefused(400, "empty upload: no image bytes received")
    if len(data) > max_bytes:
        raise UploadRefused(413, f"image too large: more than the limit of {max_bytes} bytes")
    try:
        image = _open(data)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadRefused(413, "too many pixels: the header claims a picture so large it looks like a "
                                 f"decompression bomb (the limit is {max_pixels} pixels)") from None
    except UnidentifiedImageError:
        raise UploadRefused(415, f"not an image in an accepted format ({_ACCEPTED})") from None
    except Exception as error:  # the header was recognised but the decoder could not even start
        raise UploadRefused(400, f"corrupt or truncated image: {error}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise UploadRefused(413, f"too many pixels: {width}x{height} = {width * height} "
                                 f"(the limit is {max_pixels} pixels)")
    _check_complete(data, image.format)
    return FORMAT_TYPES[image.format]


def _open(data: bytes) -> Image.Image:
    """Read the header only; decoders outside the accepted formats never see untrusted bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=_DECODERS)


def _check_complete(data: bytes, image_format: str) -> None:
    """verify() checks PNG checksums and the end chunk; only decoding finds a cut-off JPEG, GIF or TIFF."""
    try:
        _open(data).verify()
        image = _open(data)
        # JPEG decodes at 1/8 scale directly: every byte is still read, for a fraction of the work.
        image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
        image.load()
    except Exception as error:  # damaged data surfaces as OSError, SyntaxError, ValueError, struct.error...
        raise UploadRefused(400, f"corrupt or truncated {image_format} image: {error}") from None


def check_identifier(field: str, value: str | None) -> str:
    """A camera or site id as ImageCaptured requires it: 1 to 64 characters, no whitespace."""
    if value is None or value == "":
        raise UploadRefused(400, f"{field} is required")
    if not _IDENTIFIER.fullmatch(value):
        raise UploadRefused(400, f"{field} must be 1 to 64 characters without whitespace, got {value[:80]!r}")
    return value


def open_sink(settings: Settings) -> CaptureSink:
    """A sink to the configured stores whose failures are final within DELIVERY_TIMEOUT_MS."""
    publisher = EventPublisher(settings, **{"message.timeout.ms": DELIVERY_TIMEOUT_MS})
    return CaptureSink(minio_client(settings), settings.bucket_images, publisher)
