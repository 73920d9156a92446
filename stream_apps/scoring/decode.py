"""Image bytes -> a model-sized RGB array, refusing what is not a sane image before decoding it.

The header checks (size, pixels, format) are the shared acceptance rules of infra/images.py and the decode is
infra/model_frames.py (the trainer's runtime check decodes the same way); this module translates a refusal into
a dead-letter reason.
"""

from __future__ import annotations

import numpy as np

from infra.images import ImageLimits, ImageRefused
from infra.model_frames import decode_frame

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
        return decode_frame(data, size, limits)
    except ImageRefused as refusal:
        raise BadImage(refusal.reason, refusal.message) from None
