"""The image proxy: only content-addressed image keys, only from the images bucket, as images.

A key is accepted only in the exact forms images are written in (`captures/<sha256>.<ext>` by the producers,
`images/<sha256>.<ext>` by registration and imports), so no crafted key (`../`, another prefix, a URL, an
encoded slash) can name any other object or bucket.
"""

from __future__ import annotations

import io

from PIL import Image

from infra.images import DECODERS
from schemas.image_keys import CONTENT_TYPES, IMAGE_KEY

THUMBNAIL_SIZE = (240, 240)


class ForbiddenKey(ValueError):
    """An object key the proxy will not fetch."""


def checked_key(key: str) -> tuple[str, str]:
    """(content type, sha256) of an acceptable image key; raises ForbiddenKey otherwise."""
    match = IMAGE_KEY.fullmatch(key)
    if match is None:
        raise ForbiddenKey("only captures/<sha256>.<ext> and images/<sha256>.<ext> objects of the images bucket "
                           "can be shown")
    return CONTENT_TYPES[match["ext"]], match["sha256"]


def thumbnail(data: bytes, max_pixels: int) -> bytes:
    """A small JPEG of an image (decoded at reduced scale where the format allows)."""
    with Image.open(io.BytesIO(data), formats=DECODERS) as image:
        if image.width * image.height > max_pixels:
            raise ValueError(f"{image.width}x{image.height} is more than {max_pixels} pixels")
        image.draft("RGB", THUMBNAIL_SIZE)
        small = image.convert("RGB")
        small.thumbnail(THUMBNAIL_SIZE)
        out = io.BytesIO()
        small.save(out, format="JPEG", quality=80)
        return out.getvalue()
