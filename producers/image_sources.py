"""Where simulated cameras get their pictures: a folder of photos, or generated images."""

from __future__ import annotations

import io
import itertools
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from producers.capture import CONTENT_TYPES

IMAGE_SUFFIXES = {f".{extension}" for extension in CONTENT_TYPES}


def folder_images(folder: Path) -> list[Path]:
    """Every image file under folder (recursively), in a stable order."""
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"no image files under {folder}")
    return paths


def folder_source(folder: Path, seed: int = 0) -> Iterator[tuple[bytes, str]]:
    """(bytes, content type) of the folder's images in a seeded shuffled order, cycling when the count exceeds
    them: a camera sees the classes mixed, not one class folder after another (which would skew every window)."""
    paths = folder_images(folder)
    random.Random(seed).shuffle(paths)
    for path in itertools.cycle(paths):
        yield path.read_bytes(), CONTENT_TYPES[path.suffix.lower().lstrip(".")]


def floor_look_source(images: Iterator[tuple[bytes, str]], seed: int = 0) -> Iterator[tuple[bytes, str]]:
    """The images as a camera at another site sees them (`producers.site_look`): always JPEG."""
    from producers.site_look import second_site_photo

    for data, _ in images:
        yield second_site_photo(data, seed), "image/jpeg"


def synthetic_image(seed: int, size: tuple[int, int] = (384, 288)) -> bytes:
    """A unique JPEG: a noisy background with a few coloured shapes, like an object on a belt."""
    rng = np.random.default_rng(seed)
    background = rng.integers(60, 200, size=3)
    pixels = np.clip(background + rng.normal(0, 12, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = int(rng.integers(0, size[0] // 2)), int(rng.integers(0, size[1] // 2))
        x1, y1 = x0 + int(rng.integers(40, size[0] // 2)), y0 + int(rng.integers(40, size[1] // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def synthetic_source(seed: int) -> Iterator[tuple[bytes, str]]:
    for index in itertools.count():
        yield synthetic_image(seed * 1_000_003 + index), "image/jpeg"
