"""Image bytes -> a model-sized RGB array, refusing what is not a sane image before decoding it.

The header checks (size, pixels, format) are the shared acceptance rules of infra/images.py; this module
adds the decode to an array and the translation of a refusal into a dead-letter reason.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from infra.images import ImageLimits, ImageRefused, open_header, read_failure

__all__ = ["BadImage", "ImageLimits", "decode_image"]


class BadImage(ValueError):
    """An image that cannot be scored; `reason` is the dead-letter reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode_image(data: bytes, size: int, limits: ImageLimits) -> np.ndarray:
    """Decode to a (size, size, 3) uint8 array: the full frame, resized bilinearly, no crop."""
    try:
        image = open_header(data, limits.max_bytes, limits.max_pixels)
        try:
            # JPEG can decode at 1/2, 1/4 or 1/8 scale directly: far less work for camera-sized frames.
            image.draft("RGB", (size, size))
            image.load()
        except Exception as error:
            raise read_failure(error, image.format) from None
    except ImageRefused as refusal:
        raise BadImage(refusal.reason, refusal.message) from None
    rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)
