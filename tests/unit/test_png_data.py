"""The PNG check inflates the pixel data in slices instead of decoding the picture, and refuses what Pillow's
decoder refuses: a cut-off or damaged stream, an unknown row filter."""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable

import pytest
from PIL import Image

from infra.images import ImageRefused, check_image
from infra.png_data import SLICE_BYTES, PngDataError, check_png_data, scanline_runs

LIMIT_BYTES, LIMIT_PIXELS = 10_000_000, 40_000_000


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, bit_depth: int = 8, colour_type: int = 2, interlaced: bool = False,
         damage: Callable[[bytearray, int], bytearray] = lambda rows, _: rows, seed: int = 7) -> bytes:
    """A PNG written row by row (Pillow writes no interlaced PNG), every checksum right: only `damage` is wrong."""
    rng = random.Random(seed)
    rows = bytearray()
    runs = scanline_runs(width, height, bit_depth, colour_type, interlaced)
    for count, width_bytes in runs:
        for _ in range(count):
            rows += bytes([rng.randrange(5)]) + rng.randbytes(width_bytes - 1)
    data = zlib.compress(bytes(damage(rows, runs[-1][1])))
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, int(interlaced))
    palette = _chunk(b"PLTE", bytes(range(256)) * 3) if colour_type == 3 else b""
    idat = b"".join(_chunk(b"IDAT", data[i:i + 50]) for i in range(0, len(data), 50))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + palette + idat + _chunk(b"IEND", b"")


def _pillow_decodes(data: bytes) -> bool:
    try:
        Image.open(io.BytesIO(data)).load()
    except Exception:
        return False
    return True


def _accepted(data: bytes) -> bool:
    try:
        check_image(data, LIMIT_BYTES, LIMIT_PIXELS)
    except ImageRefused:
        return False
    return True


def _unknown_first_filter(rows: bytearray, _: int) -> bytearray:
    rows[0] = 5
    return rows


def _unknown_last_filter(rows: bytearray, last_row: int) -> bytearray:
    rows[-last_row] = 200
    return rows


DAMAGE: dict[str, Callable[[bytearray, int], bytearray]] = {
    "none": lambda rows, _: rows,
    "one-byte-short": lambda rows, _: rows[:-1],
    "half-the-data": lambda rows, _: rows[:len(rows) // 2],
    "unknown-filter-first-row": _unknown_first_filter,
    "unknown-filter-last-row": _unknown_last_filter,
    "more-data-than-rows": lambda rows, _: rows + bytes(100),
}
SHAPES = [(10, 9, 8, 2, False), (10, 9, 8, 2, True), (10, 9, 16, 6, True), (3, 2, 8, 0, True), (10, 9, 8, 3, False)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}-depth{s[2]}-type{s[3]}-interlaced{s[4]}")
@pytest.mark.parametrize("damage", DAMAGE)
def test_the_check_accepts_exactly_what_pillow_decodes(shape: tuple, damage: str) -> None:
    data = _png(*shape, damage=DAMAGE[damage])
    assert _accepted(data) == _pillow_decodes(data) == (damage in {"none", "more-data-than-rows"})


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"])
def test_every_png_pillow_writes_is_accepted(mode: str) -> None:
    buffer = io.BytesIO()
    Image.effect_noise((37, 23), 60).convert(mode).save(buffer, format="PNG")
    assert check_image(buffer.getvalue(), LIMIT_BYTES, LIMIT_PIXELS) == "image/png"


def test_a_cut_off_stream_is_truncated_and_a_bad_filter_a_decode_error() -> None:
    with pytest.raises(ImageRefused) as cut:
        check_image(_png(10, 9, damage=DAMAGE["half-the-data"]), LIMIT_BYTES, LIMIT_PIXELS)
    assert cut.value.reason == "truncated_image" and "stops after" in cut.value.message
    with pytest.raises(ImageRefused) as filtered:
        check_image(_png(10, 9, damage=DAMAGE["unknown-filter-first-row"]), LIMIT_BYTES, LIMIT_PIXELS)
    assert filtered.value.reason == "decode_error" and "filter type 5" in filtered.value.message


def test_a_damaged_deflate_stream_is_a_decode_error() -> None:
    data = bytearray(_png(10, 9))
    start = data.index(b"IDAT") + 4
    data[start + 2:start + 12] = bytes(10)  # past the zlib header, inside the compressed blocks
    data[start + 50:start + 54] = struct.pack(">I", zlib.crc32(bytes(data[start - 4:start + 50])))
    with pytest.raises(ImageRefused) as refused:
        check_image(bytes(data), LIMIT_BYTES, LIMIT_PIXELS)
    assert refused.value.reason in {"decode_error", "truncated_image"}


def test_a_bomb_is_inflated_in_slices_and_every_row_is_read() -> None:
    """A 6300x6300 picture of one colour: 130 KB of PNG, 119 MB of rows; none of them is ever held at once."""
    width = height = 6300
    row = b"\x00" + bytes(3 * width)
    stream = zlib.compress(row * height, 9)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")
    assert len(row) * height > 100 * SLICE_BYTES
    check_png_data(data)
    short = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(row * (height - 1), 9))
    with pytest.raises(PngDataError, match=f"stops after {len(row) * (height - 1)} of {len(row) * height}"):
        check_png_data(short + _chunk(b"IEND", b""))


def test_interlaced_passes_skip_the_empty_ones() -> None:
    assert scanline_runs(1, 1, 8, 2, interlaced=True) == [(1, 4)]
    assert scanline_runs(8, 8, 8, 0, interlaced=True) == [(1, 2), (1, 2), (1, 3), (2, 3), (2, 5), (4, 5), (4, 9)]
    assert scanline_runs(9, 2, 1, 0, interlaced=False) == [(2, 3)]
