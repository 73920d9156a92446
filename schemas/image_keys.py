"""Image objects are content-addressed under one of two prefixes of the images bucket.

- `captures/<sha256>.<ext>`: what cameras and the ingest send; the only objects ever deleted automatically
  (once classified and unreferenced, see infra/image_retention.py).
- `images/<sha256>.<ext>`: the dataset store, written by `wastex dataset register` and review UI imports.

The review UI's proxy accepts keys of these two forms and nothing else.
"""

from __future__ import annotations

import re

CAPTURES = "captures"
DATASET_STORE = "images"
PREFIXES = (CAPTURES, DATASET_STORE)

# Pillow's format names of the accepted images, and their content types.
FORMAT_TYPES = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
                "BMP": "image/bmp", "GIF": "image/gif", "TIFF": "image/tiff"}
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/bmp": "bmp", "image/gif": "gif",
              "image/tiff": "tiff"}
CONTENT_TYPES = {extension: content_type for content_type, extension in EXTENSIONS.items()}
IMAGE_KEY = re.compile(r"(?P<prefix>captures|images)/(?P<sha256>[0-9a-f]{64})\.(?P<ext>jpg|png|webp|bmp|gif|tiff)")


def image_object_key(sha256: str, content_type: str, prefix: str = DATASET_STORE) -> str:
    if prefix not in PREFIXES:
        raise ValueError(f"images live under {' or '.join(PREFIXES)}/, not {prefix!r}")
    return f"{prefix}/{sha256}.{EXTENSIONS[content_type]}"
