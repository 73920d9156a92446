"""The one image acceptance check and the one way image bytes are stored (under their sha256).

Every unit that takes image bytes (HTTP ingest, watch-folder, review UI imports, dataset registration, the
scoring worker's decode) asks the same questions here and translates a refusal into its own answer: the
reason codes are the dead-letter reasons, `HTTP_STATUS` gives the status an upload is refused with.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from minio import Minio
from minio.error import S3Error
from PIL import Image, UnidentifiedImageError

from infra.png_data import check_png_data
from infra.settings import Settings
from schemas.image_keys import FORMAT_TYPES, image_object_key

# Decoders that ever see untrusted bytes; PIL's JPEG decoder also opens MPO, what many cameras write.
DECODERS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
ACCEPTED = "JPEG, PNG, WebP, BMP, GIF or TIFF"

TOO_MANY_BYTES = "too_many_bytes"
TOO_MANY_PIXELS = "too_many_pixels"
NOT_AN_IMAGE = "not_an_image"
TRUNCATED_IMAGE = "truncated_image"
DECODE_ERROR = "decode_error"

# Too many pixels is 413 like too many bytes: both say "larger than this server takes", and the remedy is the
# same (send a smaller picture); 422 would suggest the file is malformed.
HTTP_STATUS = {TOO_MANY_BYTES: 413, TOO_MANY_PIXELS: 413, NOT_AN_IMAGE: 415, TRUNCATED_IMAGE: 400, DECODE_ERROR: 400}
_MISSING = {"NoSuchKey", "NoSuchObject"}


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int

    @classmethod
    def of(cls, settings: Settings) -> ImageLimits:
        return cls(settings.max_image_bytes, settings.max_image_pixels)


class ImageRefused(ValueError):
    """Bytes that will never be accepted as an image: `reason` is the code, the message names the limit."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.reason]


def read_failure(error: BaseException, image_format: str | None = None) -> ImageRefused:
    """A decoder's complaint about damaged bytes: cut off (truncated) or otherwise undecodable."""
    what = f"{image_format} image" if image_format else "image"
    reason = TRUNCATED_IMAGE if "truncated" in str(error).lower() else DECODE_ERROR
    return ImageRefused(reason, f"corrupt or truncated {what}: {error}")


def open_header(data: bytes, max_bytes: int, max_pixels: int) -> Image.Image:
    """The image opened from its header alone (nothing decoded yet), within the limits; raises ImageRefused."""
    if not data:
        raise ImageRefused(TRUNCATED_IMAGE, "empty: no image bytes received")
    if len(data) > max_bytes:
        raise ImageRefused(TOO_MANY_BYTES, f"image too large: {len(data)} bytes, more than the limit of "
                                           f"{max_bytes} bytes")
    try:
        image = _open(data)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRefused(TOO_MANY_PIXELS, "too many pixels: the header claims a picture so large it looks like "
                                            f"a decompression bomb (the limit is {max_pixels} pixels)") from None
    except UnidentifiedImageError:
        raise ImageRefused(NOT_AN_IMAGE, f"not an image in an accepted format ({ACCEPTED})") from None
    except Exception as error:  # the header was recognised but the decoder could not even start
        raise read_failure(error) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRefused(TOO_MANY_PIXELS, f"too many pixels: {width}x{height} = {width * height} "
                                            f"(the limit is {max_pixels} pixels)")
    return image


def check_image(data: bytes, max_bytes: int, max_pixels: int) -> str:
    """The content type of an acceptable, complete image, read from its bytes; raises ImageRefused otherwise.

    Memory: a PNG is checked in about 1 MB, a JPEG at 1/64 of its pixels; other formats are decoded in full
    (up to 4 bytes per pixel), so callers that check many at once bound how many (the HTTP ingest does).
    """
    image_format = open_header(data, max_bytes, max_pixels).format
    try:
        _open(data).verify()  # PNG checksums and end chunk; only decoding finds a cut-off JPEG, GIF or TIFF
        if image_format == "PNG":
            check_png_data(data)  # what decoding would find, without 4 bytes per pixel in memory
        else:
            image = _open(data)
            # JPEG decodes at 1/8 scale directly: every byte is still read, for a fraction of the work.
            image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except Exception as error:  # damaged data surfaces as OSError, SyntaxError, ValueError, struct.error...
        raise read_failure(error, image_format) from None
    return FORMAT_TYPES[image_format]


def _open(data: bytes) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=DECODERS)


@dataclass(frozen=True)
class StoredImage:
    key: str
    sha256: str
    uploaded: bool  # False: the object was in the store already and was left as it was


def store_image(storage: Minio, bucket: str, prefix: str, data: bytes, content_type: str, *,
                skip_existing: bool = False) -> StoredImage:
    """Put the bytes under `<prefix>/<sha256>.<ext>`; with skip_existing, an object already there is not uploaded.

    A capture is always put again: that refreshes its age, so retention never takes an object just captured.
    """
    sha256 = hashlib.sha256(data).hexdigest()
    key = image_object_key(sha256, content_type, prefix)
    if skip_existing and _exists(storage, bucket, key):
        return StoredImage(key, sha256, uploaded=False)
    storage.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type)
    return StoredImage(key, sha256, uploaded=True)


def _exists(storage: Minio, bucket: str, key: str) -> bool:
    try:
        storage.stat_object(bucket, key)
    except S3Error as error:
        if error.code in _MISSING:
            return False
        raise
    return True
