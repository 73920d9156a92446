"""The scoring decoder takes only the accepted formats: a picture Pillow could read in another format is refused
as not_an_image (and dead-lettered with that reason) before any decoder of that format sees its bytes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from infra.images import DECODERS
from stream_apps.scoring.decode import BadImage, ImageLimits, decode_image

LIMITS = ImageLimits(max_bytes=2_000_000, max_pixels=4_000_000)
# Formats Pillow both writes and reads, none of them a camera's: each has its own decoder, more attack surface.
OTHER_FORMATS = ("ICO", "PCX", "TGA", "PPM", "SGI", "DDS")


def _picture(image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (30, 160, 90)).save(buffer, format=image_format)
    return buffer.getvalue()


@pytest.mark.parametrize("image_format", OTHER_FORMATS)
def test_a_picture_in_a_format_outside_the_allow_list_is_refused_as_not_an_image(image_format: str) -> None:
    data = _picture(image_format)
    assert Image.open(io.BytesIO(data)).format == image_format  # Pillow alone would read it
    assert image_format not in DECODERS
    with pytest.raises(BadImage) as refusal:
        decode_image(data, 32, LIMITS)
    assert refusal.value.reason == "not_an_image"
    assert "accepted format" in refusal.value.detail


@pytest.mark.parametrize("image_format", DECODERS)
def test_a_picture_in_each_accepted_format_is_decoded(image_format: str) -> None:
    assert decode_image(_picture(image_format), 16, LIMITS).shape == (16, 16, 3)
