"""The benchmark's second site: deterministic photos of the same objects on textured floors, in another light."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from producers.site_look import OUTPUT_SIZE, plain_board, second_site_photo


def trashnet_like(colour: tuple[int, int, int] = (170, 30, 30)) -> bytes:
    """512x384 like TrashNet: a bright white board, one large coloured object in the middle."""
    rng = np.random.default_rng(1)
    pixels = np.full((384, 512, 3), 238.0) + rng.normal(0, 2, (384, 512, 3))
    pixels[92:292, 136:376] = colour
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)


def test_the_same_photo_and_seed_give_the_same_bytes() -> None:
    photo = trashnet_like()
    assert second_site_photo(photo, seed=3) == second_site_photo(photo, seed=3)
    assert second_site_photo(photo, seed=3) != second_site_photo(photo, seed=4)
    assert second_site_photo(photo) != second_site_photo(trashnet_like((30, 30, 170)))


def test_the_floor_shows_where_the_white_board_was() -> None:
    shot = pixels(second_site_photo(trashnet_like()))
    assert shot.shape == (OUTPUT_SIZE[1], OUTPUT_SIZE[0], 3)
    corners = np.concatenate([shot[:40, :40], shot[:40, -40:], shot[-40:, :40], shot[-40:, -40:]])
    assert corners.mean() < 190  # no longer the bright board
    assert corners.std() > 8  # but a texture
    centre = shot[150:210, 200:280]
    assert centre[..., 0].mean() > 1.5 * centre[..., 1].mean()  # the red object is still there


def test_the_board_mask_covers_the_border_region_only() -> None:
    mask = plain_board(pixels(trashnet_like()))
    assert mask[:50].mean() > 0.95 and mask[120:260, 180:330].max() < 0.05
