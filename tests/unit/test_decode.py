"""Decoding refuses each kind of bad input with its own reason and decodes good images to model size."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from stream_apps.scoring.decode import BadImage, ImageLimits, decode_image
from tests.images import png_header_only

LIMITS = ImageLimits(max_bytes=2_000_000, max_pixels=4_000_000)


def _jpeg(width: int = 640, height: int = 480, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_a_good_jpeg_becomes_a_model_sized_rgb_array() -> None:
    pixels = decode_image(_jpeg(colour=(200, 30, 30)), 224, LIMITS)
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
    assert np.abs(pixels.reshape(-1, 3).mean(axis=0) - (200, 30, 30)).max() < 6


def test_greyscale_and_alpha_images_become_rgb() -> None:
    for mode in ("L", "RGBA", "P"):
        buffer = io.BytesIO()
        Image.new(mode, (50, 40)).save(buffer, format="PNG")
        assert decode_image(buffer.getvalue(), 32, LIMITS).shape == (32, 32, 3)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"this is a text file, not a photo", "not_an_image"),
        (_jpeg()[:2000], "truncated_image"),
        (_jpeg(64, 48)[:400], "truncated_image"),
        (png_header_only(5000, 5000), "too_many_pixels"),
        (png_header_only(100_000, 100_000), "too_many_pixels"),
        (b"\xff\xd8" + b"\0" * 2_000_001, "too_many_bytes"),
    ],
    ids=["text", "truncated", "truncated-in-header", "pixels-over-limit", "pixels-over-pil-bomb-limit", "bytes"],
)
def test_bad_input_is_refused_with_its_reason(data: bytes, reason: str) -> None:
    with pytest.raises(BadImage) as refusal:
        decode_image(data, 224, LIMITS)
    assert refusal.value.reason == reason
    assert refusal.value.detail
