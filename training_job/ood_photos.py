"""A set of non-waste photographs for OOD evaluation, built offline from the photos scikit-image ships.

Each photo is written whole and as deterministic random crops of varied size and aspect, so the set is
larger than the handful of photos and exercises the model at several scales.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from PIL import Image
from skimage import color, data, util

# Real photographs bundled inside the scikit-image package (no pooch download). Synthetic pictures
# (checkerboard, logo, phantom) and scanned text are left out: they test nothing a camera will see.
PHOTO_NAMES = (
    "astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "retina", "rocket",
)
LONG_SIDE = 448  # written files are at most this big: above the 224-299 px model inputs, small on disk
MIN_CROP_AREA, MAX_CROP_AREA = 0.1, 0.6  # fraction of the photo a crop covers
MAX_ASPECT = 2.0  # crops range from 1:2 to 2:1
JPEG_QUALITY = 90


def available_photos() -> dict[str, np.ndarray]:
    """The photos of PHOTO_NAMES this scikit-image installation holds, as uint8 RGB arrays."""
    photos = {}
    for name in PHOTO_NAMES:
        try:
            image = getattr(data, name)()
        # A missing file surfaces as ModuleNotFoundError (pooch absent) or OSError/ValueError (no network).
        except (AttributeError, ImportError, OSError, ValueError):
            continue
        photos[name] = _as_rgb(image)
    return photos


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = util.img_as_ubyte(image)
    if image.ndim == 2:
        return color.gray2rgb(image)
    return image[..., :3]


def _random_crop(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    area = rng.uniform(MIN_CROP_AREA, MAX_CROP_AREA) * height * width
    aspect = np.exp(rng.uniform(-np.log(MAX_ASPECT), np.log(MAX_ASPECT)))  # width / height, log-uniform
    crop_height = int(np.clip(round(np.sqrt(area / aspect)), 16, height))
    crop_width = int(np.clip(round(np.sqrt(area * aspect)), 16, width))
    top = int(rng.integers(0, height - crop_height + 1))
    left = int(rng.integers(0, width - crop_width + 1))
    return image[top:top + crop_height, left:left + crop_width]


def _write_jpeg(image: np.ndarray, path: Path) -> Path:
    picture = Image.fromarray(image)
    scale = LONG_SIDE / max(picture.size)
    if scale < 1.0:
        picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                                 Image.Resampling.BILINEAR)
    picture.save(path, format="JPEG", quality=JPEG_QUALITY)
    return path


def build_ood_photo_set(out_dir: Path, crops_per_photo: int = 8, seed: int = 0) -> list[Path]:
    """Write every available photo and `crops_per_photo` crops of each to out_dir as JPEG; return the paths."""
    if crops_per_photo < 0:
        raise ValueError(f"crops_per_photo must be >= 0, got {crops_per_photo}")
    photos = available_photos()
    if not photos:
        raise RuntimeError("scikit-image ships none of the expected sample photos")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, image in photos.items():
        # One generator per photo, so a photo's crops do not change when another photo is missing.
        rng = np.random.default_rng([seed, PHOTO_NAMES.index(name)])
        paths.append(_write_jpeg(image, out_dir / f"{name}.jpg"))
        for crop in range(crops_per_photo):
            paths.append(_write_jpeg(_random_crop(image, rng), out_dir / f"{name}_crop{crop:02d}.jpg"))
    return paths


@click.command(name="ood-photos")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--crops", default=8, show_default=True, type=click.IntRange(min=0), help="Random crops per photo.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Seed of the crop positions and sizes.")
def ood_photos(out_dir: Path, crops: int, seed: int) -> None:
    """Write non-waste photographs (scikit-image's photos and crops of them) to OUT_DIR for OOD evaluation."""
    paths = build_ood_photo_set(out_dir, crops_per_photo=crops, seed=seed)
    click.echo(f"wrote {len(paths)} OOD photos to {out_dir}")
