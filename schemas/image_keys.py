"""Image objects are content-addressed: `images/<sha256>.<ext>` in the images bucket.

Every unit that writes an image (producers, review UI imports, dataset registration) names it this way,
and the review UI's proxy accepts nothing else.
"""

from __future__ import annotations

import re

# Pillow's format names of the accepted images, and their content types.
FORMAT_TYPES = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
                "BMP": "image/bmp", "GIF": "image/gif", "TIFF": "image/tiff"}
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/bmp": "bmp", "image/gif": "gif",
              "image/tiff": "tiff"}
CONTENT_TYPES = {extension: content_type for content_type, extension in EXTENSIONS.items()}
IMAGE_KEY = re.compile(r"images/(?P<sha256>[0-9a-f]{64})\.(?P<ext>jpg|png|webp|bmp|gif|tiff)")


def image_object_key(sha256: str, content_type: str) -> str:
    return f"images/{sha256}.{EXTENSIONS[content_type]}"
