"""Image bytes -> a model-sized RGB array, refusing what is not a sane image before decoding it."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int


class BadImage(ValueError):
    """An image that cannot be scored; `reason` is the dead-letter reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _read_failure(error: OSError) -> BadImage:
    reason = "truncated_image" if "truncated" in str(error).lower() else "decode_error"
    return BadImage(reason, str(error))


def decode_image(data: bytes, size: int, limits: ImageLimits) -> np.ndarray:
    """Decode to a (size, size, 3) uint8 array: the full frame, resized bilinearly, no crop."""
    if len(data) > limits.max_bytes:
        raise BadImage("too_many_bytes", f"{len(data)} bytes, the limit is {limits.max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BadImage("too_many_pixels", str(error)) from None
    except UnidentifiedImageError:
        raise BadImage("not_an_image", f"{len(data)} bytes that no image decoder recognises") from None
    except OSError as error:  # the header itself is cut off
        raise _read_failure(error) from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise BadImage("too_many_pixels", f"{width}x{height} = {width * height} pixels, the limit is "
                                          f"{limits.max_pixels}")
    try:
        # JPEG can decode at 1/2, 1/4 or 1/8 scale directly: far less work for camera-sized frames.
        image.draft("RGB", (size, size))
        image.load()
    except OSError as error:
        raise _read_failure(error) from None
    except Exception as error:
        raise BadImage("decode_error", f"{type(error).__name__}: {error}") from None
    rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)
