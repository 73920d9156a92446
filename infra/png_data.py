"""A PNG's pixel data checked the way a decoder reads it, without holding the picture in memory.

Decoding a PNG to check it costs 4 bytes per pixel: a 150 KB PNG of 6300x6300 took 150 MB. Inflating its data
stream in slices and checking every row's filter byte finds what decoding would (a damaged or cut-off stream,
an unknown filter) in about one slice of memory. Chunk checksums are Pillow's `verify()`'s job.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
# Adam7 interlacing: first column, first row, column step and row step of each of the seven passes.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_LAST_FILTER = 4  # None, Sub, Up, Average, Paeth
SLICE_BYTES = 1 << 20


class PngDataError(ValueError):
    """Pixel data a decoder would refuse; the message says "truncated" when the data stops early."""


def scanline_runs(width: int, height: int, bit_depth: int, colour_type: int, interlaced: bool
                  ) -> list[tuple[int, int]]:
    """(rows, bytes per row including its filter byte) of each pass over the image, in stream order."""
    bits_per_pixel = _CHANNELS[colour_type] * bit_depth
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    runs = []
    for first_column, first_row, column_step, row_step in passes:
        columns = -(-(width - first_column) // column_step)
        rows = -(-(height - first_row) // row_step)
        if columns > 0 and rows > 0:  # a small interlaced image has empty passes, with no rows in the stream
            runs.append((rows, 1 + (columns * bits_per_pixel + 7) // 8))
    return runs


class _Scanlines:
    """Follows the inflated stream through the rows it must contain, checking each row's filter byte."""

    def __init__(self, runs: list[tuple[int, int]]) -> None:
        self._runs = runs
        self._run = 0
        self._offset = 0  # bytes of the current run seen so far
        self.expected = sum(rows * width for rows, width in runs)
        self.seen = 0

    @property
    def complete(self) -> bool:
        return self._run == len(self._runs)

    def feed(self, piece: bytes) -> None:
        start = 0
        while start < len(piece) and not self.complete:
            rows, width = self._runs[self._run]
            part = piece[start:start + rows * width - self._offset]
            filters = part[(-self._offset) % width::width]
            if filters and max(filters) > _LAST_FILTER:
                raise PngDataError(f"unknown row filter type {max(filters)} (PNG knows 0 to {_LAST_FILTER})")
            self._offset += len(part)
            self.seen += len(part)
            start += len(part)
            if self._offset == rows * width:
                self._run, self._offset = self._run + 1, 0


def _image_data(data: bytes) -> Iterator[memoryview]:
    """The contents of the IDAT chunks, in order: the image a decoder shows (an animation's first frame)."""
    view = memoryview(data)
    position = len(_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        if kind == b"IDAT":
            yield view[position + 8:position + 8 + length]
        elif kind == b"IEND":
            return
        position += 12 + length


def check_png_data(data: bytes) -> None:
    """Raises PngDataError or zlib.error unless the pixel data inflates to every row the header promises."""
    if not data.startswith(_SIGNATURE) or data[12:16] != b"IHDR":
        raise PngDataError("not a PNG file: no signature and header chunk")
    width, height, bit_depth, colour_type, _, _, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    scanlines = _Scanlines(scanline_runs(width, height, bit_depth, colour_type, interlace == 1))
    inflater = zlib.decompressobj()
    for chunk in _image_data(data):
        pending: bytes | memoryview = chunk
        while not scanlines.complete:
            # A bounded slice at a time: a few KB can inflate to hundreds of MB.
            piece = inflater.decompress(pending, SLICE_BYTES)
            scanlines.feed(piece)
            pending = inflater.unconsumed_tail
            if not pending and len(piece) < SLICE_BYTES:
                break
        if scanlines.complete:
            return
    raise PngDataError(f"image file is truncated: the pixel data stops after {scanlines.seen} of "
                       f"{scanlines.expected} bytes")
