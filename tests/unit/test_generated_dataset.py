"""The demo's generated dataset: one folder per class, reproducible, and classes that look different."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from producers.generated_dataset import SEED_CLASSES, UNSEEN_CLASSES, generated_photo, write_dataset

pytestmark = pytest.mark.unit


def test_a_dataset_has_every_class_folder_and_is_reproducible(tmp_path: Path) -> None:
    first = write_dataset(tmp_path / "a", 3, SEED_CLASSES)
    second = write_dataset(tmp_path / "b", 3, SEED_CLASSES)
    assert sorted(p.name for p in first.iterdir()) == sorted(SEED_CLASSES)
    for name in SEED_CLASSES:
        files = sorted((first / name).iterdir())
        assert len(files) == 3
        assert [f.read_bytes() for f in files] == [f.read_bytes() for f in sorted((second / name).iterdir())]
    assert len({f.read_bytes() for f in first.rglob("*.jpg")}) == 3 * len(SEED_CLASSES)  # no two alike


def test_classes_differ_in_colour_more_than_images_within_a_class() -> None:
    def colour(draw, seed: int) -> np.ndarray:
        pixels = np.asarray(Image.open(io.BytesIO(generated_photo(draw, seed))), dtype=float)
        foreground = pixels[np.abs(pixels - pixels.mean(axis=(0, 1))).sum(axis=2) > 60]
        return foreground.mean(axis=0)

    classes = {**SEED_CLASSES, **UNSEEN_CLASSES}
    means = {name: np.mean([colour(draw, seed) for seed in range(4)], axis=0) for name, draw in classes.items()}
    names = list(means)
    closest = min(np.linalg.norm(means[a] - means[b]) for i, a in enumerate(names) for b in names[i + 1:]
                  if {a, b} != {"metal", "paper"})  # those two differ in shape and texture, not in colour
    assert closest > 20
