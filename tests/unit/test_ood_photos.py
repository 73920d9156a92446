"""The OOD photo set: scikit-image's photos and crops of them, written offline and reproducibly."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from training_job.ood_photos import available_photos, build_ood_photo_set, ood_photos

CROPS = 3


@pytest.fixture(scope="module")
def photo_count() -> int:
    return len(available_photos())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return build_ood_photo_set(tmp_path_factory.mktemp("ood"), crops_per_photo=CROPS, seed=0)


def test_the_photos_the_design_relies_on_are_available_offline() -> None:
    photos = available_photos()
    assert {"chelsea", "coffee", "astronaut"} <= set(photos)
    assert all(image.ndim == 3 and image.shape[2] == 3 and image.dtype.name == "uint8" for image in photos.values())


def test_every_photo_is_written_whole_and_as_crops(built: list[Path], photo_count: int) -> None:
    assert len(built) == photo_count * (1 + CROPS)
    assert len(set(built)) == len(built)
    assert all(path.exists() for path in built)


def test_files_are_decodable_rgb_jpegs(built: list[Path]) -> None:
    sizes = set()
    for path in built:
        with Image.open(path) as picture:
            picture.load()
            assert picture.format == "JPEG" and picture.mode == "RGB"
            sizes.add(picture.size)
    # Crops of varied size and aspect, not one fixed box.
    assert len({round(width / height, 1) for width, height in sizes}) > 5


def test_the_set_is_deterministic_for_a_seed(built: list[Path], tmp_path: Path) -> None:
    again = build_ood_photo_set(tmp_path / "again", crops_per_photo=CROPS, seed=0)
    assert [path.name for path in again] == [path.name for path in built]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(again, built, strict=True))

    other = build_ood_photo_set(tmp_path / "other", crops_per_photo=CROPS, seed=1)
    changed = {a.name for a, b in zip(other, built, strict=True) if a.read_bytes() != b.read_bytes()}
    assert changed == {path.name for path in built if "_crop" in path.name}


def test_command_builds_the_set_and_reports_the_count(tmp_path: Path, photo_count: int) -> None:
    result = CliRunner().invoke(ood_photos, [str(tmp_path / "set"), "--crops", "1", "--seed", "5"])

    assert result.exit_code == 0, result.output
    assert f"wrote {photo_count * 2} " in result.output
    assert len(list((tmp_path / "set").glob("*.jpg"))) == photo_count * 2
