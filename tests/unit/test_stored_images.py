"""The training service reads only stored images: every manifest row names a content-addressed object of the images
bucket by its own digest; local paths, other buckets and other keys are refused, naming the row. `wastex train` on a
local manifest or folder keeps reading local files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from schemas.dataset_manifest import ManifestRow, UntrustedImage, stored_image_key, write_manifest
from training_job.dataset_source import DatasetError, load_dataset

BUCKET = "wastex-images"
SHA = hashlib.sha256(b"a photo").hexdigest()
OTHER_SHA = hashlib.sha256(b"another photo").hexdigest()


def _row(image: str, sha256: str = SHA) -> ManifestRow:
    return ManifestRow(image, sha256, "glass", "train")


@pytest.mark.parametrize("key", [f"images/{SHA}.jpg", f"images/{SHA}.png", f"captures/{SHA}.webp",
                                 f"captures/{SHA}.tiff"])
def test_a_stored_image_of_the_images_bucket_named_by_its_own_digest_is_trusted(key: str) -> None:
    assert stored_image_key(_row(f"s3://{BUCKET}/{key}"), BUCKET) == key


@pytest.mark.parametrize("image", [
    "../../secrets.env",  # a local path, relative to wherever the manifest is
    "/etc/passwd",
    f"file:///srv/{SHA}.jpg",
    f"s3://wastex-datasets/images/{SHA}.jpg",  # another bucket of the deployment
    f"s3://{BUCKET}-evil/images/{SHA}.jpg",  # a bucket whose name merely starts like it
    f"s3://{BUCKET}/manifests/{SHA}.jpg",  # another prefix
    f"s3://{BUCKET}/images/../captures/{SHA}.jpg",
    f"s3://{BUCKET}/images/{SHA}.jpg.exe",
    f"s3://{BUCKET}/images/{SHA}.JPG",
    f"s3://{BUCKET}/images/{SHA.upper()}.jpg",
    f"s3://{BUCKET}/images/{SHA}.svg",  # not an accepted format
    f"https://example.org/images/{SHA}.jpg",
])
def test_anything_else_is_refused_with_the_image_named(image: str) -> None:
    with pytest.raises(UntrustedImage, match="is not a stored image of the images bucket") as refusal:
        stored_image_key(_row(image), BUCKET)
    assert repr(image) in str(refusal.value)


def test_a_stored_image_under_another_digest_than_the_rows_is_refused() -> None:
    with pytest.raises(UntrustedImage, match=f"stored under the digest {OTHER_SHA}, not the row's sha256 {SHA}"):
        stored_image_key(_row(f"s3://{BUCKET}/images/{OTHER_SHA}.jpg"), BUCKET)


def test_the_service_mode_load_refuses_a_manifest_with_one_untrusted_row_naming_that_row(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, [_row(f"s3://{BUCKET}/images/{SHA}.jpg"),
                              ManifestRow("../../secrets.env", OTHER_SHA, "metal", "test")])
    with pytest.raises(DatasetError) as refusal:
        load_dataset(manifest, images_bucket=BUCKET)
    message = str(refusal.value)
    assert message.startswith(f"manifest {manifest}, row 2 (metal, sha256 {OTHER_SHA[:12]}): image")
    assert "'../../secrets.env' is not a stored image of the images bucket" in message


def test_the_service_mode_load_takes_a_manifest_of_stored_images_as_it_is(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.jsonl"
    rows = [_row(f"s3://{BUCKET}/images/{SHA}.jpg"), ManifestRow(f"s3://{BUCKET}/captures/{OTHER_SHA}.png",
                                                                   OTHER_SHA, "metal", "val")]
    write_manifest(manifest, rows)
    assert load_dataset(manifest, images_bucket=BUCKET).rows == rows


def test_the_service_mode_load_refuses_a_folder(tmp_path: Path) -> None:
    (tmp_path / "glass").mkdir()
    with pytest.raises(DatasetError, match="the training service trains only on manifests"):
        load_dataset(tmp_path, images_bucket=BUCKET)


def test_a_local_manifest_for_wastex_train_still_reads_local_paths(tmp_path: Path) -> None:
    (tmp_path / "photo.jpg").write_bytes(b"a photo")
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, [_row("photo.jpg")])
    (row,) = load_dataset(manifest).rows
    assert row.image == str(tmp_path / "photo.jpg")
