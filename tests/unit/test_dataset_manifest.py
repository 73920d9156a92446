"""The manifest row format and the content-hash split rule."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from schemas.dataset_manifest import (
    ManifestError,
    ManifestRow,
    read_manifest,
    resolve_image,
    split_for_digest,
    write_manifest,
)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_same_bytes_always_get_the_same_split() -> None:
    photo = b"\xff\xd8 the same photo bytes"
    assert {split_for_digest(digest(photo)) for _ in range(5)} == {split_for_digest(digest(bytes(photo)))}
    assert split_for_digest(digest(photo).upper()) == split_for_digest(digest(photo))


@pytest.mark.parametrize(("leading", "split"), [
    ("00000000", "train"),
    ("cccccccc", "train"),  # just below 0.8 of the 32-bit range
    ("cccccccd", "val"),
    ("e6666666", "val"),  # just below 0.9
    ("e6666667", "test"),
    ("ffffffff", "test"),
])
def test_split_comes_from_the_leading_32_bits(leading: str, split: str) -> None:
    assert split_for_digest(leading + "0" * 56) == split
    assert split_for_digest(leading + "f" * 56) == split


def test_splits_are_about_80_10_10_over_many_images() -> None:
    counts = Counter(split_for_digest(digest(f"image {index}".encode())) for index in range(20_000))
    shares = {split: count / 20_000 for split, count in counts.items()}
    assert shares["train"] == pytest.approx(0.8, abs=0.015)
    assert shares["val"] == pytest.approx(0.1, abs=0.01)
    assert shares["test"] == pytest.approx(0.1, abs=0.01)


@pytest.mark.parametrize("bad", ["", "abc", "g" * 64, "a" * 63, "a" * 65])
def test_a_non_digest_is_refused(bad: str) -> None:
    with pytest.raises(ManifestError, match="SHA-256"):
        split_for_digest(bad)


def test_manifest_round_trip(tmp_path: Path) -> None:
    rows = [
        ManifestRow("images/a.jpg", digest(b"a"), "glass", "train"),
        ManifestRow("s3://wastex-images/images/b.jpg", digest(b"b"), "Food Organics", "test"),
        ManifestRow("/data/c.png", digest(b"c"), "papier mâché", "val"),
    ]
    path = tmp_path / "manifest.jsonl"
    write_manifest(path, rows)
    assert read_manifest(path) == rows
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {"image": "images/a.jpg", "sha256": digest(b"a"), "class": "glass", "split": "train"}
    assert list(tmp_path.iterdir()) == [path]  # no partial file left behind


def test_a_row_without_split_gets_the_digest_split(tmp_path: Path) -> None:
    sha = digest(b"no split given")
    path = tmp_path / "manifest.jsonl"
    path.write_text(json.dumps({"image": "x.jpg", "sha256": sha.upper(), "class": "metal"}) + "\n\n")
    assert read_manifest(path) == [ManifestRow("x.jpg", sha, "metal", split_for_digest(sha))]


@pytest.mark.parametrize(("line", "message"), [
    ('{"image": "x.jpg", "sha256": "%s", "class": "metal", "split": "validation"}', "unknown split 'validation'"),
    ('{"image": "x.jpg", "sha256": "1234", "class": "metal", "split": "train"}', "64 lowercase hex"),
    ('{"image": "x.jpg", "sha256": "%s", "split": "train"}', "class"),
    ('{"image": "x.jpg", "sha256": "%s", "class": " metal", "split": "train"}', "surrounding spaces"),
    ('["x.jpg"]', "JSON object"),
    ('{"image": "x.jpg",', "Expecting"),
])
def test_bad_rows_name_their_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "manifest.jsonl"
    good = json.dumps(ManifestRow("ok.jpg", digest(b"ok"), "glass", "train").to_json())
    path.write_text(good + "\n" + line.replace("%s", digest(b"x")) + "\n")
    with pytest.raises(ManifestError, match=message) as raised:
        read_manifest(path)
    assert str(raised.value).startswith(f"{path}:2:")


def test_images_resolve_relative_to_the_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "versions" / "v3.jsonl"
    assert resolve_image(manifest, "../photos/a.jpg") == str(tmp_path / "photos" / "a.jpg")
    assert resolve_image(manifest, "/abs/b.jpg") == "/abs/b.jpg"
    assert resolve_image(manifest, "s3://bucket/images/c.jpg") == "s3://bucket/images/c.jpg"


def test_a_rows_site_survives_the_round_trip_and_rows_without_one_stay_as_they_were() -> None:
    sha = "ab" * 32
    row = {"image": "s3://b/images/x.jpg", "sha256": sha, "class": "glass"}
    with_site = ManifestRow.from_json({**row, "site": "plant-b"})
    without = ManifestRow.from_json(row)
    assert with_site.site == "plant-b" and ManifestRow.from_json(with_site.to_json()) == with_site
    assert without.site is None and "site" not in without.to_json()
    with pytest.raises(ManifestError, match="site"):
        ManifestRow.from_json({"image": "x.jpg", "sha256": sha, "class": "glass", "site": ""})
