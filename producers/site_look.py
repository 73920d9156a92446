"""Another site's look for photos of objects on a plain board (TrashNet's): each object cut from its board and put
on a textured floor (scikit-image's bundled gravel, brick and grass textures), under another light and white
balance, seen at another camera angle. `wastex produce --look floor` simulates such a camera (the demo's second
site, whose drift the scoring monitor reports); `wastex bench newsite` builds its second site with it.

The look is a pure function of the photo's bytes and the seed: the same inputs give the same JPEG bytes, so the
generated site can be cached and a run repeated. The object is whatever is not the plain board: the bright,
low-colour region connected to the photo's border (a white object in the middle keeps its pixels).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image
from scipy import ndimage

OUTPUT_SIZE = (480, 360)  # (width, height): the second site's camera
FLOOR_NAMES = ("gravel", "brick", "grass")
MAX_CHROMA = 0.14 * 255
RELATIVE_BRIGHTNESS = 0.72
JPEG_QUALITY = 88


@dataclass(frozen=True)
class SiteLight:
    """The second site's light: channel gains (a warm, dim hall) and a gamma, varied a little per photo."""

    gains: tuple[float, float, float] = (1.0, 0.9, 0.72)
    exposure: float = 0.8
    gamma: float = 1.15
    jitter: float = 0.06


WARM_HALL = SiteLight()


@cache
def floor_texture(name: str) -> np.ndarray:
    """A scikit-image texture as float grey in [0, 1]."""
    from skimage import data

    texture = np.asarray(getattr(data, name)(), dtype=np.float32)
    if texture.ndim == 3:
        texture = texture.mean(axis=-1)
    return texture / max(float(texture.max()), 1.0)


def plain_board(pixels: np.ndarray) -> np.ndarray:
    """(h, w) float mask in [0, 1] of the plain background reachable from the border, softened at its edge."""
    brightness = pixels.mean(axis=-1)
    chroma = pixels.max(axis=-1) - pixels.min(axis=-1)
    plain = (chroma < MAX_CHROMA) & (brightness > RELATIVE_BRIGHTNESS * np.percentile(brightness, 95))
    regions, _ = ndimage.label(plain)
    border = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]]))
    board = np.isin(regions, border[border > 0])
    board = ndimage.binary_opening(board, iterations=2)
    return ndimage.gaussian_filter(board.astype(np.float32), 1.5)


def _floor(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A (h, w, 3) floor in [0, 255]: a crop of one texture, at a random scale, tinted like concrete or earth."""
    width, height = size
    texture = floor_texture(FLOOR_NAMES[rng.integers(len(FLOOR_NAMES))])
    scale = rng.uniform(0.5, 1.0)
    crop_h, crop_w = int(texture.shape[0] * scale), int(texture.shape[1] * scale * width / height)
    crop_w = min(crop_w, texture.shape[1])
    top, left = rng.integers(texture.shape[0] - crop_h + 1), rng.integers(texture.shape[1] - crop_w + 1)
    crop = Image.fromarray((texture[top:top + crop_h, left:left + crop_w] * 255).astype(np.uint8))
    grey = np.asarray(crop.resize(size, Image.BILINEAR), dtype=np.float32) / 255.0
    tint = np.array([0.55, 0.53, 0.5]) + rng.uniform(-0.06, 0.06, 3)
    return (40.0 + 150.0 * grey[..., None] * tint / tint.mean()).clip(0, 255)


def _perspective(source: list[tuple[float, float]], target: list[tuple[float, float]]) -> list[float]:
    """PIL's 8 perspective coefficients mapping output corners ``target`` to input corners ``source``."""
    rows = []
    for (x, y), (u, v) in zip(target, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    return np.linalg.solve(np.array(rows, dtype=np.float64), np.array(source, dtype=np.float64).ravel()).tolist()


def second_site_photo(data: bytes, seed: int = 0, light: SiteLight = WARM_HALL) -> bytes:
    """The JPEG bytes of ``data`` (a TrashNet photo) as the second site's camera would see it."""
    rng = np.random.default_rng([seed, int.from_bytes(hashlib.sha256(data).digest()[:8], "big")])
    photo = Image.open(io.BytesIO(data)).convert("RGB").resize(OUTPUT_SIZE, Image.BILINEAR)
    board = Image.fromarray((plain_board(np.asarray(photo, dtype=np.float32)) * 255).astype(np.uint8))
    angle = rng.uniform(-30, 30)
    tilt = rng.uniform(0.05, 0.15) * OUTPUT_SIZE[0]
    width, height = OUTPUT_SIZE
    coefficients = _perspective([(-tilt, 0), (width + tilt, 0), (width, height), (0, height)],
                                [(0, 0), (width, 0), (width, height), (0, height)])

    def view(image: Image.Image, fill: int | tuple[int, int, int]) -> np.ndarray:
        turned = image.rotate(angle, Image.BILINEAR, fillcolor=fill)
        return np.asarray(turned.transform(OUTPUT_SIZE, Image.PERSPECTIVE, coefficients, Image.BILINEAR,
                                           fillcolor=fill), dtype=np.float32)

    pixels = view(photo, (255, 255, 255))
    mask = view(board, 255)[..., None] / 255.0
    floor = _floor(rng, OUTPUT_SIZE)
    # A soft shadow of the object, offset away from the light, darkens the floor around it.
    shadow = ndimage.gaussian_filter(ndimage.shift(1.0 - mask[..., 0], (8, 6), order=1), 6)[..., None]
    scene = mask * floor * (1.0 - 0.45 * shadow) + (1.0 - mask) * pixels
    gains = np.array(light.gains) * light.exposure * (1.0 + rng.uniform(-light.jitter, light.jitter, 3))
    lit = 255.0 * (np.clip(scene * gains / 255.0, 0, 1) ** light.gamma)
    output = io.BytesIO()
    Image.fromarray(lit.round().astype(np.uint8)).save(output, "JPEG", quality=JPEG_QUALITY)
    return output.getvalue()
