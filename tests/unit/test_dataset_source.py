"""Datasets from manifests and folder layouts, and their errors."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from schemas.dataset_manifest import ManifestRow, split_for_digest, write_manifest
from training_job.dataset_source import DatasetError, ImageReader, image_files, load_dataset


def photo(seed: int) -> bytes:
    """A small JPEG whose bytes differ per seed."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_photos(folder: Path, count: int, first_seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(first_seed, first_seed + count):
        path = folder / f"{seed}.jpg"
        path.write_bytes(photo(seed))
        paths.append(path)
    return paths


def test_class_folders_split_by_content_hash(tmp_path: Path) -> None:
    write_photos(tmp_path / "paper", 30, 0)
    write_photos(tmp_path / "glass", 20, 100)
    (tmp_path / "glass" / "notes.txt").write_text("not an image")
    (tmp_path / ".cache").mkdir()

    dataset = load_dataset(tmp_path)

    assert dataset.classes == ["glass", "paper"]
    assert len(dataset.rows) == 50
    for row in dataset.rows:
        data = Path(row.image).read_bytes()
        assert Path(row.image).is_absolute()
        assert row.sha256 == hashlib.sha256(data).hexdigest()
        assert row.split == split_for_digest(row.sha256)
        assert row.class_name == Path(row.image).parent.name
    counts = dataset.counts()
    assert sum(counts[split]["paper"] for split in counts) == 30
    assert {len(dataset.split(name)) for name in ("train", "val", "test")} != {0}
    np.testing.assert_array_equal(dataset.labels(dataset.split("train")),
                                  [dataset.classes.index(row.class_name) for row in dataset.split("train")])


def test_split_folders_give_the_split(tmp_path: Path) -> None:
    write_photos(tmp_path / "train" / "metal", 4, 0)
    write_photos(tmp_path / "train" / "trash", 3, 10)
    write_photos(tmp_path / "val" / "metal", 2, 20)
    write_photos(tmp_path / "test" / "trash", 2, 30)

    dataset = load_dataset(tmp_path)

    assert dataset.classes == ["metal", "trash"]
    assert dataset.counts() == {"train": {"metal": 4, "trash": 3}, "val": {"metal": 2, "trash": 0},
                                "test": {"metal": 0, "trash": 2}}
    assert all(Path(row.image).parts[-3] == row.split for row in dataset.rows)


def test_split_folders_mixed_with_others_are_refused(tmp_path: Path) -> None:
    write_photos(tmp_path / "train" / "metal", 2, 0)
    write_photos(tmp_path / "validation" / "metal", 2, 10)
    with pytest.raises(DatasetError, match=r"unknown split folders \['validation'\] beside \['train'\]"):
        load_dataset(tmp_path)


def test_an_empty_class_folder_is_named(tmp_path: Path) -> None:
    write_photos(tmp_path / "glass", 2, 0)
    (tmp_path / "textile").mkdir()
    (tmp_path / "textile" / "readme.md").write_text("todo")
    with pytest.raises(DatasetError, match=r"textile holds no images"):
        load_dataset(tmp_path)


def test_a_folder_without_class_folders_is_refused(tmp_path: Path) -> None:
    write_photos(tmp_path, 3, 0)
    with pytest.raises(DatasetError, match="no class folders"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="neither a manifest file nor a folder"):
        load_dataset(tmp_path / "missing")


def test_an_unreadable_folder_is_a_dataset_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_photos(tmp_path / "glass", 2, 0)
    locked = tmp_path / "metal"
    write_photos(locked, 2, 10)
    listing = Path.iterdir

    def iterdir(self: Path):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return listing(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    with pytest.raises(DatasetError, match=r"cannot read folder .*metal.*Permission denied"):
        load_dataset(tmp_path)


def test_copies_of_one_image_are_kept_once_and_conflicting_labels_dropped(tmp_path: Path) -> None:
    write_photos(tmp_path / "glass", 3, 0)
    write_photos(tmp_path / "plastic", 3, 10)
    (tmp_path / "glass" / "copy.jpg").write_bytes(photo(1))  # same class: one image
    (tmp_path / "plastic" / "glass_twin.jpg").write_bytes(photo(2))  # two classes: ambiguous

    dataset = load_dataset(tmp_path)

    assert len(dataset.rows) == 5
    assert dataset.conflicting_digests == [hashlib.sha256(photo(2)).hexdigest()]
    assert len({row.sha256 for row in dataset.rows}) == 5


def test_manifest_datasets_resolve_paths_and_keep_their_splits(tmp_path: Path) -> None:
    photos = write_photos(tmp_path / "photos", 3, 0)
    rows = [ManifestRow(f"photos/{path.name}", hashlib.sha256(path.read_bytes()).hexdigest(), name, split)
            for path, name, split in zip(photos, ["cardboard", "cardboard", "Textile Trash"],
                                         ["test", "train", "val"], strict=True)]
    rows.append(ManifestRow("s3://wastex-images/images/x.jpg", "ab" * 32, "Textile Trash", "train"))
    write_manifest(tmp_path / "v1.jsonl", rows)

    dataset = load_dataset(tmp_path / "v1.jsonl")

    assert dataset.classes == ["Textile Trash", "cardboard"]
    assert [row.split for row in dataset.rows] == ["test", "train", "val", "train"]
    assert dataset.rows[0].image == str(photos[0])
    assert dataset.rows[3].image == "s3://wastex-images/images/x.jpg"


def test_bad_manifests_are_dataset_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="lists no images"):
        load_dataset(tmp_path / "empty.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"image": "a.jpg", "sha256": "%s", "class": "x", "split": "dev"}\n'
                                        % ("0" * 64))
    with pytest.raises(DatasetError, match=r"bad.jsonl:1: .*unknown split 'dev'"):
        load_dataset(tmp_path / "bad.jsonl")


def test_unknown_split_names_and_classes_are_refused(tmp_path: Path) -> None:
    write_photos(tmp_path / "glass", 3, 0)
    dataset = load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="unknown split 'validation'"):
        dataset.split("validation")
    with pytest.raises(DatasetError, match=r"\['glass'\] are not among \['metal'\]"):
        dataset.labels(dataset.rows, ["metal"])


def test_the_reader_fetches_s3_uris_through_the_client(tmp_path: Path) -> None:
    class FakeResponse:
        def __init__(self, data: bytes) -> None:
            self.data, self.closed, self.released = data, False, False

        def read(self) -> bytes:
            return self.data

        def close(self) -> None:
            self.closed = True

        def release_conn(self) -> None:
            self.released = True

    class FakeMinio:
        def __init__(self) -> None:
            self.requests: list[tuple[str, str]] = []
            self.responses: list[FakeResponse] = []

        def get_object(self, bucket: str, key: str) -> FakeResponse:
            self.requests.append((bucket, key))
            self.responses.append(FakeResponse(f"{bucket}/{key}".encode()))
            return self.responses[-1]

    client = FakeMinio()
    reader = ImageReader(lambda: client)
    local = write_photos(tmp_path, 1, 0)[0]
    assert reader("s3://wastex-images/images/ab.jpg") == b"wastex-images/images/ab.jpg"
    assert reader(str(local)) == local.read_bytes()
    assert client.requests == [("wastex-images", "images/ab.jpg")]
    assert client.responses[0].closed and client.responses[0].released


def test_image_files_skip_hidden_and_non_image_files(tmp_path: Path) -> None:
    write_photos(tmp_path / "a", 2, 0)
    write_photos(tmp_path / ".thumbs", 2, 10)
    (tmp_path / "a" / "b.PNG").write_bytes(b"png")
    (tmp_path / "a" / "c.txt").write_text("text")
    assert [path.relative_to(tmp_path).as_posix() for path in image_files(tmp_path)] == ["a/0.jpg", "a/1.jpg",
                                                                                          "a/b.PNG"]
