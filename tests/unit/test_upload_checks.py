"""Upload checks trust the image header, never the name or the claimed type, and refuse with a clear status."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from producers.capture import CONTENT_TYPES
from producers.upload_checks import UploadRefused, check_captured_at, check_identifier, check_upload
from schemas.image_keys import FORMAT_TYPES
from tests.images import png_header_only

MAX_BYTES = 2_000_000
MAX_PIXELS = 4_000_000


def _image(image_format: str, size: tuple[int, int] = (320, 240), **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 40).convert("RGB").save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _refusal(data: bytes, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> UploadRefused:
    with pytest.raises(UploadRefused) as refused:
        check_upload(data, max_bytes, max_pixels)
    return refused.value


@pytest.mark.parametrize(("image_format", "content_type"), [
    ("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp"), ("BMP", "image/bmp"),
    ("GIF", "image/gif"), ("TIFF", "image/tiff"),
])
def test_accepted_formats_report_their_content_type(image_format: str, content_type: str) -> None:
    assert check_upload(_image(image_format), MAX_BYTES, MAX_PIXELS) == content_type


def test_the_type_comes_from_the_bytes_not_the_file_name(tmp_path) -> None:
    misnamed = tmp_path / "photo.png"
    misnamed.write_bytes(_image("JPEG"))
    assert check_upload(misnamed.read_bytes(), MAX_BYTES, MAX_PIXELS) == "image/jpeg"
    misnamed.write_bytes(_image("PNG"))
    assert check_upload(misnamed.read_bytes(), MAX_BYTES, MAX_PIXELS) == "image/png"


def test_a_camera_mpo_file_is_a_jpeg() -> None:
    frame = Image.new("RGB", (64, 48), (10, 200, 30))
    buffer = io.BytesIO()
    frame.save(buffer, format="MPO", save_all=True, append_images=[frame])
    assert check_upload(buffer.getvalue(), MAX_BYTES, MAX_PIXELS) == "image/jpeg"


def test_every_reported_type_is_one_the_event_schema_accepts() -> None:
    assert set(FORMAT_TYPES.values()) <= set(CONTENT_TYPES.values())


@pytest.mark.parametrize("data", [
    b"this is a text file, not a photo",
    b"%PDF-1.7\n" + b"\0" * 100,
    _image("ICO", (32, 32)),  # a real image, but not a format the pipeline takes
], ids=["text", "pdf", "icon"])
def test_what_is_not_an_accepted_image_is_415(data: bytes) -> None:
    refused = _refusal(data)
    assert refused.status == 415
    assert "JPEG" in refused.message


def test_too_many_bytes_is_413_and_names_the_limit() -> None:
    refused = _refusal(_image("BMP", (400, 300)), max_bytes=100_000)  # 360 kB of pixels
    assert refused.status == 413
    assert "100000 bytes" in refused.message


@pytest.mark.parametrize(("width", "height"), [(3000, 2000), (100_000, 100_000)],
                         ids=["over-the-limit", "over-pil-bomb-limit"])
def test_a_header_claiming_too_many_pixels_is_413(width: int, height: int) -> None:
    refused = _refusal(png_header_only(width, height))
    assert refused.status == 413
    assert "pixels" in refused.message and str(MAX_PIXELS) in refused.message


def test_a_real_image_just_over_the_pixel_limit_is_413() -> None:
    refused = _refusal(_image("PNG", (201, 100)), max_pixels=20_000)
    assert refused.status == 413
    assert "201x100 = 20100" in refused.message and "20000 pixels" in refused.message


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "GIF", "TIFF", "BMP"])
@pytest.mark.parametrize("keep", [0.5, 0.999], ids=["half", "all-but-the-end"])
def test_a_truncated_image_is_400(image_format: str, keep: float) -> None:
    data = _image(image_format)
    refused = _refusal(data[: int(len(data) * keep)])
    assert refused.status == 400
    assert "truncated" in refused.message or "corrupt" in refused.message


def test_an_empty_upload_is_400() -> None:
    refused = _refusal(b"")
    assert refused.status == 400 and "empty" in refused.message


@pytest.mark.parametrize("value", ["cam-1", "site_7.north", "plant:line-2", "x" * 64])
def test_identifiers_of_letters_digits_and_dot_underscore_colon_dash_are_accepted(value: str) -> None:
    assert check_identifier("camera_id", value) == value


@pytest.mark.parametrize("value", [None, "", "cam 1", "cam\t1", "cam\x001", "site/7", "caméra", "x" * 65],
                         ids=["none", "empty", "space", "tab", "nul", "slash", "accent", "too-long"])
def test_missing_or_malformed_identifiers_are_400(value: str | None) -> None:
    with pytest.raises(UploadRefused) as refused:
        check_identifier("camera_id", value)
    assert refused.value.status == 400 and "camera_id" in refused.value.message


def test_a_capture_time_within_the_clock_skew_is_accepted() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    for moment in (now - timedelta(days=3), now, now + timedelta(seconds=299)):
        assert check_captured_at(moment, 300, now) == moment


def test_a_capture_time_further_in_the_future_than_the_clock_skew_is_400() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with pytest.raises(UploadRefused) as refused:
        check_captured_at(now + timedelta(seconds=301), 300, now)
    assert refused.value.status == 400 and "future" in refused.value.message
