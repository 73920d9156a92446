"""A folder of class folders becomes a camera stream that mixes the classes, the same way on every run."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from producers.image_sources import folder_source

pytestmark = pytest.mark.unit


def _class_folders(root: Path, classes: int = 3, per_class: int = 10) -> None:
    for label in range(classes):
        folder = root / f"class-{label}"
        folder.mkdir(parents=True)
        for index in range(per_class):
            (folder / f"{index:02d}.jpg").write_bytes(f"{label}:{index}".encode())


def test_a_folder_stream_mixes_the_classes_instead_of_showing_one_folder_after_another(tmp_path: Path) -> None:
    _class_folders(tmp_path)

    first_ten = [data.decode().split(":")[0] for data, _ in itertools.islice(folder_source(tmp_path), 10)]

    assert len(set(first_ten)) > 1


def test_a_folder_stream_shows_every_image_once_per_cycle_in_the_same_order_on_every_run(tmp_path: Path) -> None:
    _class_folders(tmp_path)

    one_run = [data for data, _ in itertools.islice(folder_source(tmp_path), 60)]
    again = [data for data, _ in itertools.islice(folder_source(tmp_path), 60)]

    assert one_run == again
    assert len(set(one_run[:30])) == 30 and one_run[30:] == one_run[:30]
