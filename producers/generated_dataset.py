"""A generated waste dataset for running the product without real photos (the demo's fallback).

Each class has a look of its own (colour, shape, texture) with random placement, size and noise, so a
model can learn it from a few dozen images; `textile` is left out of the seed dataset and shown to the
cameras, so the model flags it as unknown and operators have something to label.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = (320, 240)
Draw = Callable[[ImageDraw.ImageDraw, np.random.Generator, tuple[int, int, int, int]], None]


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], spread: int = 18) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-spread, spread + 1), 0, 255)) for c in colour)


def _cardboard(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[int, int, int, int]) -> None:
    draw.rectangle(box, fill=_jitter(rng, (150, 105, 60)))
    for x in range(box[0], box[2], 9):  # corrugation
        draw.line((x, box[1], x, box[3]), fill=_jitter(rng, (120, 80, 45)), width=2)


def _glass(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[int, int, int, int]) -> None:
    draw.ellipse(box, fill=_jitter(rng, (60, 150, 80)), outline=_jitter(rng, (200, 240, 210)), width=4)


def _metal(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[int, int, int, int]) -> None:
    draw.ellipse(box, fill=_jitter(rng, (165, 165, 170), 10))
    cx, cy = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
    draw.ellipse((cx - 12, cy - 20, cx + 4, cy - 4), fill=(245, 245, 250))  # a highlight


def _paper(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[int, int, int, int]) -> None:
    draw.rectangle(box, fill=_jitter(rng, (240, 240, 232), 8))
    for y in range(box[1] + 10, box[3] - 6, 12):  # lines of text
        draw.line((box[0] + 8, y, box[2] - 8, y), fill=(40, 40, 50), width=2)


def _plastic(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[int, int, int, int]) -> None:
    colour = [(30, 80, 220), (220, 40, 40), (240, 210, 30)][int(rng.integers(0, 3))]
    width = (box[2] - box[0]) // 3
    draw.rounded_rectangle((box[0] + width, box[1], box[2] - width, box[3]), radius=18, fill=_jitter(rng, colour))


def _trash(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[int, int, int, int]) -> None:
    for _ in range(25):
        x, y = int(rng.integers(box[0], box[2])), int(rng.integers(box[1], box[3]))
        r = int(rng.integers(4, 14))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=_jitter(rng, (70, 60, 50), 30))


def _textile(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[int, int, int, int]) -> None:
    stripe = _jitter(rng, (170, 40, 160), 30)
    for y in range(box[1], box[3], 14):
        draw.rectangle((box[0], y, box[2], y + 6), fill=stripe)


SEED_CLASSES: dict[str, Draw] = {"cardboard": _cardboard, "glass": _glass, "metal": _metal, "paper": _paper,
                                 "plastic": _plastic, "trash": _trash}
UNSEEN_CLASSES: dict[str, Draw] = {"textile": _textile}


def generated_photo(draw_object: Draw, seed: int) -> bytes:
    """A JPEG of one object on a noisy conveyor belt."""
    rng = np.random.default_rng(seed)
    belt = rng.integers(70, 110)
    pixels = np.clip(belt + rng.normal(0, 10, size=(SIZE[1], SIZE[0], 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    width, height = int(rng.integers(110, 200)), int(rng.integers(90, 170))
    x0, y0 = int(rng.integers(0, SIZE[0] - width)), int(rng.integers(0, SIZE[1] - height))
    draw_object(ImageDraw.Draw(image), rng, (x0, y0, x0 + width, y0 + height))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def write_dataset(folder: Path, per_class: int, classes: dict[str, Draw], first_seed: int = 0) -> Path:
    """One sub-folder per class (the TrashNet layout); files already there are kept, not rewritten."""
    for class_index, (name, draw_object) in enumerate(sorted(classes.items())):
        target = folder / name
        target.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            path = target / f"{name}-{first_seed + index:05d}.jpg"
            if not path.exists():
                path.write_bytes(generated_photo(draw_object, (first_seed + index) * 101 + class_index))
    return folder
