"""The images a trained model's runtime is chosen on are a fixed, capped part of its val split with their true
labels, decoded as the scoring worker decodes them; an image the worker would refuse is left out, and so is one
without a label of its own on which Keras has no top class."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from infra.images import ImageLimits
from schemas.dataset_manifest import ManifestRow
from schemas.model_artefact import KERAS_FILE, ArtefactInfo, write_artefact_info
from tests.controlled_models import GREEN, METAL_GLASS, RED, controlled_model, photo
from training_job.dataset_source import Dataset
from training_job.runtime_check import CheckImages, check_runtime, split_check_images
from training_job.serving_export import export_litert

LIMITS = ImageLimits(max_bytes=2_000_000, max_pixels=4_000_000)


def _row(name: str, class_name: str, split: str) -> ManifestRow:
    return ManifestRow(f"/images/{name}.jpg", hashlib.sha256(name.encode()).hexdigest(), class_name, split)


def test_the_check_images_of_a_split_are_its_first_by_digest_up_to_the_cap_with_their_labels() -> None:
    rows = [_row(f"{split}-{index}", "metal" if index % 3 else "glass", split)
            for split in ("train", "val") for index in range(12)]
    dataset = Dataset(["glass", "metal"], rows, "test")
    read: list[str] = []
    check = split_check_images(dataset, "val", ["metal", "glass"], lambda uri: read.append(uri) or uri.encode(),
                               limit=5)
    expected = sorted((row for row in rows if row.split == "val"), key=lambda row: row.sha256)[:5]
    assert read == [row.image for row in expected] and list(check.images) == [row.image.encode() for row in expected]
    assert list(check.labels) == [0 if row.class_name == "metal" else 1 for row in expected]
    assert check.source == "5 images of the val split"


def test_the_runtime_is_chosen_on_the_workers_pixels_and_an_image_it_would_refuse_is_left_out(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    classes, weights = METAL_GLASS
    controlled_model(tmp_path / KERAS_FILE, weights)
    write_artefact_info(tmp_path, ArtefactInfo(classes, -5.0, 0.7))
    assert export_litert(tmp_path).exported
    images = [photo(RED, 1), b"not an image", photo(GREEN, 2)]
    choice, record = check_runtime(tmp_path, CheckImages(images, [0, 0, 1], "three photos"), LIMITS)

    assert "check image 1 of three photos left out" in caplog.text
    keras = next(candidate for candidate in choice.candidates if candidate.runtime == "keras")
    assert keras.macro_f1 == 1.0  # red is metal (0), green glass (1): the refused image's label went with it
    assert {"litert", "keras"} <= {candidate.runtime for candidate in choice.candidates}
    assert all(candidate.accepted and candidate.top1_agreement == 1.0 for candidate in choice.candidates)
    fastest = max(choice.candidates, key=lambda candidate: candidate.images_per_second)
    assert choice.chosen == fastest.runtime and record["chosen"] == choice.chosen
    assert record["check_images"] == "three photos"
    assert "openvino-bf16" in {*record["skipped"], *(candidate["runtime"] for candidate in record["candidates"])}


def test_an_unlabelled_image_on_which_keras_has_no_top_class_is_left_out(tmp_path: Path) -> None:
    classes, weights = METAL_GLASS
    controlled_model(tmp_path / KERAS_FILE, weights)
    write_artefact_info(tmp_path, ArtefactInfo(classes, -5.0, 0.7))
    assert export_litert(tmp_path).exported
    grey = io.BytesIO()
    Image.new("RGB", (40, 30), (90, 90, 90)).save(grey, format="PNG")  # red = green: metal and glass tie exactly
    choice, record = check_runtime(tmp_path, CheckImages([photo(RED, 1), grey.getvalue(), photo(GREEN, 2)], None,
                                                         "three photos"), LIMITS)

    assert record["check_images"] == "three photos (1 left out: Keras has no top class on them)"
    assert all(candidate.top1_agreement == 1.0 and candidate.macro_f1 == 1.0 for candidate in choice.candidates)
