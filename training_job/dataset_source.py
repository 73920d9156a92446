"""Labelled images for training and evaluation, from a manifest or a folder layout.

Accepted sources:
- a manifest file (``schemas.dataset_manifest``): images by local path or ``s3://`` URI; with ``images_bucket``
  (the training service), only stored images of that bucket (``stored_image_key``), and no folders;
- a folder with one sub-folder per class (TrashNet, RealWaste): splits come from the content digest;
- a folder with ``train``/``val``/``test`` sub-folders, each holding class folders: the layout gives the split.

Image bytes are read through an ``ImageLoader`` (a callable ``uri -> bytes``), so the same pipeline reads
local files and objects in MinIO.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from minio import Minio

from infra.object_store import parse_s3_uri
from schemas.dataset_manifest import (
    SPLITS,
    ManifestError,
    ManifestRow,
    read_manifest,
    resolve_image,
    split_for_digest,
    stored_image_key,
)

log = logging.getLogger(__name__)

# What tf.io.decode_image reads; other files in a class folder (notes, thumbs.db) are ignored.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif"})

ImageLoader = Callable[[str], bytes]


class DatasetError(ValueError):
    """A dataset that cannot be used as given: empty, unreadable, or not in a known layout."""


class ImageReader:
    """The default loader: local paths from disk, ``s3://`` URIs from MinIO (client made on first use)."""

    def __init__(self, s3_client: Callable[[], Minio] | None = None) -> None:
        self._make_client = s3_client
        self._client: Minio | None = None

    def __call__(self, uri: str) -> bytes:
        if not uri.startswith("s3://"):
            return Path(uri).read_bytes()
        if self._client is None:
            self._client = self._make_client() if self._make_client else self._settings_client()
        bucket, key = parse_s3_uri(uri)
        response = self._client.get_object(bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    @staticmethod
    def _settings_client() -> Minio:
        from infra.clients import minio_client
        from infra.settings import load_settings

        return minio_client(load_settings())


@dataclass(frozen=True)
class Dataset:
    """Images with a class and a split; ``image`` of each row is an absolute path or an s3:// URI."""

    classes: list[str]
    rows: list[ManifestRow]
    source: str
    # Digests dropped because identical bytes carried different classes.
    conflicting_digests: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[ManifestRow]:
        if name not in SPLITS:
            raise DatasetError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return [row for row in self.rows if row.split == name]

    def labels(self, rows: list[ManifestRow], classes: list[str] | None = None) -> np.ndarray:
        """Class indices of rows in ``classes`` (default: this dataset's class list)."""
        index = {name: position for position, name in enumerate(classes or self.classes)}
        unknown = sorted({row.class_name for row in rows} - index.keys())
        if unknown:
            raise DatasetError(f"classes {unknown} are not among {list(index)}")
        return np.array([index[row.class_name] for row in rows], dtype=np.int64)

    def site_counts(self) -> dict[str, dict[str, int]]:
        """Images per site and class (site "seed" for rows without a site), for the run's record."""
        counted = Counter((row.site or "seed", row.class_name) for row in self.rows)
        return {site: {name: counted[site, name] for name in self.classes if counted[site, name]}
                for site in sorted({site for site, _ in counted})}

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and class."""
        counted = Counter((row.split, row.class_name) for row in self.rows)
        return {split: {name: counted[split, name] for name in self.classes} for split in SPLITS}


def image_files(folder: Path) -> list[Path]:
    """Image files under folder (recursively, hidden files skipped), sorted for a stable order."""
    folder = Path(folder)
    try:
        next(folder.iterdir(), None)  # rglob skips unreadable folders silently; fail loudly instead
        return sorted(path for path in folder.rglob("*")
                      if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
                      and not any(part.startswith(".") for part in path.relative_to(folder).parts))
    except OSError as error:
        raise DatasetError(f"cannot read folder {folder}: {error}") from None


def load_dataset(source: Path, loader: ImageLoader | None = None, *, images_bucket: str | None = None) -> Dataset:
    """A dataset from a manifest file or a folder layout (see the module docstring).

    ``images_bucket``: the source is a manifest the training service fetched, whose every row must name a stored
    image of that bucket; a row that does not is a DatasetError naming it (a bad dataset: it fails for good).
    """
    source = Path(source)
    loader = loader or ImageReader()
    if source.is_file():
        return _manifest_dataset(source, images_bucket)
    if images_bucket is not None:
        raise DatasetError(f"{source} is not a manifest file: the training service trains only on manifests")
    if not source.is_dir():
        raise DatasetError(f"{source} is neither a manifest file nor a folder")
    folders = _sub_folders(source)
    if not folders:
        raise DatasetError(f"{source} has no class folders (expected one sub-folder per class, or "
                           f"{'/'.join(SPLITS)} folders holding class folders)")
    split_folders = [folder for folder in folders if folder.name in SPLITS]
    if not split_folders:
        return _build(_class_folder_rows(source, None, loader), str(source))
    strays = sorted(folder.name for folder in folders if folder.name not in SPLITS)
    if strays:
        raise DatasetError(f"{source}: unknown split folders {strays} beside "
                           f"{[folder.name for folder in split_folders]}; expected only {', '.join(SPLITS)}")
    rows = [row for folder in split_folders for row in _class_folder_rows(folder, folder.name, loader)]
    return _build(rows, str(source))


def _sub_folders(folder: Path) -> list[Path]:
    try:
        return sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))
    except OSError as error:
        raise DatasetError(f"cannot read folder {folder}: {error}") from None


def _class_folder_rows(folder: Path, split: str | None, loader: ImageLoader) -> list[ManifestRow]:
    rows = []
    class_folders = _sub_folders(folder)
    if not class_folders:
        raise DatasetError(f"{folder} has no class folders")
    for class_folder in class_folders:
        files = image_files(class_folder)
        if not files:
            raise DatasetError(f"class folder {class_folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for path in files:
            try:
                digest = hashlib.sha256(loader(str(path.resolve()))).hexdigest()
            except OSError as error:
                raise DatasetError(f"cannot read image {path}: {error}") from None
            rows.append(ManifestRow(str(path.resolve()), digest, class_folder.name,
                                    split or split_for_digest(digest)))
    return rows


def _manifest_dataset(path: Path, images_bucket: str | None) -> Dataset:
    try:
        listed = read_manifest(path)
        if images_bucket is not None:
            for number, row in enumerate(listed, start=1):
                try:
                    stored_image_key(row, images_bucket)
                except ManifestError as error:
                    raise DatasetError(f"manifest {path}, row {number} ({row.class_name}, sha256 "
                                       f"{row.sha256[:12]}): {error}") from None
        rows = [ManifestRow(resolve_image(path, row.image), row.sha256, row.class_name, row.split, row.site)
                for row in listed]
    except (ManifestError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path} is not a valid manifest: {error}") from None
    except OSError as error:
        raise DatasetError(f"cannot read manifest {path}: {error}") from None
    if not rows:
        raise DatasetError(f"manifest {path} lists no images")
    return _build(rows, str(path))


def _build(rows: list[ManifestRow], source: str) -> Dataset:
    """Drop repeated images: a copy of the same class adds nothing, copies in different classes are label noise."""
    by_digest: dict[str, list[ManifestRow]] = defaultdict(list)
    for row in rows:
        by_digest[row.sha256].append(row)
    kept, conflicting = [], []
    for digest, copies in by_digest.items():
        if len({row.class_name for row in copies}) > 1:
            conflicting.append(digest)
            log.warning("dropping %s: the same image is labelled %s", digest[:12],
                        ", ".join(f"{row.class_name} ({row.image})" for row in copies))
            continue
        kept.append(copies[0])
    classes = sorted({row.class_name for row in rows})
    empty = sorted(set(classes) - {row.class_name for row in kept})
    if empty:
        raise DatasetError(f"{source}: classes {empty} have no images left after dropping conflicting copies")
    return Dataset(classes, kept, source, conflicting)
