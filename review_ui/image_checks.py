"""What an imported file must be: a complete image in an accepted format within the size limits."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from schemas.image_keys import FORMAT_TYPES

_DECODERS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")


class ImageRefused(ValueError):
    """A file that will never be accepted as an image; the message says why."""


def _open(data: bytes) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=_DECODERS)


def check_image(data: bytes, max_bytes: int, max_pixels: int) -> str:
    """The content type of an acceptable image; raises ImageRefused naming the problem otherwise."""
    if not data:
        raise ImageRefused("empty file")
    if len(data) > max_bytes:
        raise ImageRefused(f"too large: {len(data)} bytes, the limit is {max_bytes}")
    try:
        image = _open(data)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRefused(f"too many pixels (the limit is {max_pixels})") from None
    except UnidentifiedImageError:
        raise ImageRefused("not an image (JPEG, PNG, WebP, BMP, GIF or TIFF)") from None
    except Exception as error:
        raise ImageRefused(f"corrupt or truncated image: {error}") from None
    if image.width * image.height > max_pixels:
        raise ImageRefused(f"too many pixels: {image.width}x{image.height} (the limit is {max_pixels})")
    image_format = image.format
    try:
        complete = _open(data)
        complete.draft("RGB", (max(1, complete.width // 8), max(1, complete.height // 8)))
        complete.load()
    except Exception as error:  # cut-off or damaged data surfaces only when decoding
        raise ImageRefused(f"corrupt or truncated {image_format} image: {error}") from None
    return FORMAT_TYPES[image_format]
