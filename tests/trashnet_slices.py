"""Small slices of the shared TrashNet photos for tests: linked in place, never copied into the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TRASHNET_ENV = "WASTEX_TRASHNET_DIR"


@pytest.fixture(scope="session")
def trashnet() -> Path:
    """The TrashNet folder that .ci/run passes in through WASTEX_TRASHNET_DIR."""
    folder = os.environ.get(TRASHNET_ENV)
    if not folder:
        pytest.fail(f"{TRASHNET_ENV} is not set: point it at the TrashNet photos "
                    f"(.ci/run uses ../shared/datasets/trashnet)", pytrace=False)
    if not Path(folder, "glass").is_dir():
        pytest.fail(f"{TRASHNET_ENV}={folder} has no glass/ folder: not the TrashNet layout", pytrace=False)
    return Path(folder)


def trashnet_slice(trashnet: Path, target: Path, classes: list[str], per_split: dict[str, int],
                   skip: int = 0) -> Path:
    """train/val/test folders of links to photos of each class, from the `skip`-th photo on."""
    for name in classes:
        photos = iter(sorted((trashnet / name).glob("*.jpg"))[skip:])
        for split, count in per_split.items():
            folder = target / split / name
            folder.mkdir(parents=True)
            for _ in range(count):
                photo = next(photos)
                (folder / photo.name).symlink_to(photo)
    return target


def trashnet_photos(trashnet: Path, name: str, first: int, count: int) -> list[Path]:
    """Photos `first` ... `first + count - 1` of one class, in name order."""
    return sorted((trashnet / name).glob("*.jpg"))[first:first + count]
