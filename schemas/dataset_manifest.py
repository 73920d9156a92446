"""Dataset manifests: which images a dataset version holds, with their class and split.

A manifest is JSON Lines, one object per image:
``{"image": "...", "sha256": "<64 hex>", "class": "glass", "split": "train"}``, with an optional ``"site"``: the
site whose camera captured the image (absent for seed and imported images), which the trainer balances by.
``image`` is a local path (absolute, or relative to the manifest file) or ``s3://bucket/key``; ``sha256``
is the digest of the image bytes. The training job reads manifests and the version builder writes them,
so both take the row format and the split rule from here.

The split comes from the content digest (``split_for_digest``), so an image keeps its split in every
version that contains it, and a test image never leaks into a later training set.

The training service trusts a manifest's rows only as far as ``stored_image_key`` allows: each names a
content-addressed object of the images bucket by its own digest, never a local path or another bucket.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from schemas.image_keys import IMAGE_KEY

SPLITS = ("train", "val", "test")
# Cumulative upper bounds of each split on [0, 1): 80% train, 10% val, 10% test.
SPLIT_BOUNDS = ((0.8, "train"), (0.9, "val"), (1.0, "test"))
_DIGEST = re.compile(r"[0-9a-f]{64}")
_LEADING_HEX_DIGITS = 8  # 32 bits: fine enough for 80/10/10, and the same on every platform


class ManifestError(ValueError):
    """A manifest row or file that does not follow the format."""


class UntrustedImage(ManifestError):
    """A manifest row naming an image the training service must not read: not a stored image of the images bucket."""


def split_for_digest(sha256_hex: str) -> str:
    """"train", "val" or "test" from the leading 32 bits of an image's SHA-256 (80/10/10)."""
    digest = sha256_hex.lower()
    if not _DIGEST.fullmatch(digest):
        raise ManifestError(f"not a SHA-256 hex digest: {sha256_hex!r}")
    position = int(digest[:_LEADING_HEX_DIGITS], 16) / 16**_LEADING_HEX_DIGITS
    return next(split for bound, split in SPLIT_BOUNDS if position < bound)


@dataclass(frozen=True)
class ManifestRow:
    image: str  # local path or s3://bucket/key
    sha256: str
    class_name: str  # "class" in the file
    split: str
    site: str | None = None  # where the image was captured; None: a seed or imported image

    def __post_init__(self) -> None:
        if not self.image:
            raise ManifestError("a manifest row needs an image path or URI")
        if not _DIGEST.fullmatch(self.sha256):
            raise ManifestError(f"{self.image}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if not self.class_name or self.class_name != self.class_name.strip():
            raise ManifestError(f"{self.image}: class must be a non-empty name without surrounding spaces, "
                                f"got {self.class_name!r}")
        if self.split not in SPLITS:
            raise ManifestError(f"{self.image}: unknown split {self.split!r}; expected one of {', '.join(SPLITS)}")

    @classmethod
    def from_json(cls, document: dict) -> ManifestRow:
        """A row from its JSON object; a missing or null split is derived from the digest."""
        if not isinstance(document, dict):
            raise ManifestError(f"a manifest row must be a JSON object, got {type(document).__name__}")
        missing = [key for key in ("image", "sha256", "class") if not isinstance(document.get(key), str)]
        if missing:
            raise ManifestError(f"manifest row without string field(s) {', '.join(missing)}: {document}")
        sha256 = document["sha256"].lower()
        split = document.get("split")
        if split is None and _DIGEST.fullmatch(sha256):
            split = split_for_digest(sha256)
        site = document.get("site")
        if site is not None and (not isinstance(site, str) or not site.strip()):
            raise ManifestError(f"{document['image']}: site must be a non-empty string when given, got {site!r}")
        return cls(document["image"], sha256, document["class"], split, site)

    def to_json(self) -> dict[str, str]:
        row = {"image": self.image, "sha256": self.sha256, "class": self.class_name, "split": self.split}
        return row if self.site is None else {**row, "site": self.site}


def read_manifest(path: Path) -> list[ManifestRow]:
    """Every row of a JSON Lines manifest (blank lines skipped); errors name the line."""
    rows = []
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(ManifestRow.from_json(json.loads(line)))
            except (json.JSONDecodeError, ManifestError) as error:
                raise ManifestError(f"{path}:{number}: {error}") from None
    return rows


def manifest_bytes(rows: Iterable[ManifestRow]) -> bytes:
    """The JSON Lines text of rows: the same rows in the same order always give the same bytes (and checksum)."""
    return "".join(json.dumps(row.to_json(), ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def write_manifest(path: Path, rows: Iterable[ManifestRow]) -> None:
    """Write rows as JSON Lines; the file appears complete or not at all."""
    path = Path(path)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_bytes(manifest_bytes(rows))
    partial.replace(path)


def resolve_image(manifest_path: Path, image: str) -> str:
    """A row's image as an s3:// URI or an absolute path (relative paths are relative to the manifest)."""
    if image.startswith("s3://"):
        return image
    location = Path(image).expanduser()
    return str(location if location.is_absolute() else (Path(manifest_path).parent / location).resolve())


def stored_image_key(row: ManifestRow, images_bucket: str) -> str:
    """The object key of a row naming ``s3://<images_bucket>/images/<sha256>.<ext>`` (or ``captures/<sha256>.<ext>``,
    a labelled capture kept where it was captured) with the row's own sha256; raises UntrustedImage otherwise.

    The version builder and `dataset register` write only such rows; anything else (a local path such as
    ``../../secrets.env``, another bucket, another key) would have the trainer read what no dataset holds.
    """
    bucket_prefix = f"s3://{images_bucket}/"
    key = row.image[len(bucket_prefix):] if row.image.startswith(bucket_prefix) else None
    match = IMAGE_KEY.fullmatch(key) if key is not None else None
    if match is None:
        raise UntrustedImage(f"image {row.image!r} is not a stored image of the images bucket: training service "
                             f"manifests may name only {bucket_prefix}images/<sha256>.<ext> (or captures/...) objects")
    if match["sha256"] != row.sha256:
        raise UntrustedImage(f"image {row.image!r} is stored under the digest {match['sha256']}, not the row's "
                             f"sha256 {row.sha256}")
    return key
