"""Image bytes -> the frame a model is fed (schemas.model_artefact): the full image resized bilinearly, no crop.

One decode for the scoring worker and for the trainer's runtime check, so a runtime is chosen on exactly the
pixels it will serve.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from infra.images import ImageLimits, open_header, read_failure


def decode_frame(data: bytes, size: int, limits: ImageLimits) -> np.ndarray:
    """A (size, size, 3) uint8 array; raises ImageRefused for bytes outside the limits or not decodable."""
    image = open_header(data, limits.max_bytes, limits.max_pixels)
    try:
        # JPEG can decode at 1/2, 1/4 or 1/8 scale directly: far less work for camera-sized frames.
        image.draft("RGB", (size, size))
        image.load()
    except Exception as error:
        raise read_failure(error, image.format) from None
    rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)
