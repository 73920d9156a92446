"""A folder of labelled images as a seed dataset version: one sub-folder per class (TrashNet, RealWaste), or
train/val/test sub-folders that each hold class folders. Class names go through an optional mapping file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from schemas.dataset_manifest import SPLITS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


class SeedFolderError(ValueError):
    """A folder or mapping file that cannot become a seed version; the message says why."""


@dataclass(frozen=True)
class SeedImage:
    path: Path
    label: str
    split: str | None  # from a train/val/test folder; None: from the image's digest


def read_mapping(path: Path | None) -> dict[str, str]:
    """A JSON object {"folder name": "class name"}; folders it does not name keep their names."""
    if path is None:
        return {}
    try:
        mapping = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise SeedFolderError(f"cannot read the class mapping {path}: {error}") from None
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                                for k, v in mapping.items()):
        raise SeedFolderError(f"{path}: the class mapping must be a JSON object of folder name -> class name")
    return {key: value.strip() for key, value in mapping.items()}


def _visible_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _class_folders(folder: Path, mapping: dict[str, str], split: str | None) -> list[SeedImage]:
    images = []
    for class_folder in _visible_folders(folder):
        files = _images(class_folder)
        if not files:
            raise SeedFolderError(f"{class_folder} holds no images")
        label = mapping.get(class_folder.name, class_folder.name)
        images += [SeedImage(path, label, split) for path in files]
    return images


def seed_images(folder: Path, mapping: dict[str, str]) -> list[SeedImage]:
    """Every image of the folder with its (mapped) class and, for split folders, its split."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SeedFolderError(f"{folder} is not a folder")
    sub_folders = _visible_folders(folder)
    if not sub_folders:
        raise SeedFolderError(f"{folder} has no class folders")
    names = {p.name for p in sub_folders}
    if names & set(SPLITS):
        if not names <= set(SPLITS):
            raise SeedFolderError(f"{folder} mixes split folders ({', '.join(sorted(names & set(SPLITS)))}) "
                                  f"with others ({', '.join(sorted(names - set(SPLITS)))})")
        return [image for split in sorted(names) for image in _class_folders(folder / split, mapping, split)]
    return _class_folders(folder, mapping, None)
