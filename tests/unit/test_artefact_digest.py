"""The content digest that addresses a model artefact: what a worker loads, and nothing else."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from schemas.model_artefact import (
    CLASSES_FILE,
    CONFUSION_MATRIX_FILE,
    KERAS_FILE,
    METRICS_FILE,
    SERVING_FILE,
    THRESHOLDS_FILE,
    ArtefactInfo,
    artefact_digest,
    write_artefact_info,
)


def _artefact(folder: Path, weights: bytes = b"keras weights", serving: bytes | None = b"tflite") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / KERAS_FILE).write_bytes(weights)
    if serving is not None:
        (folder / SERVING_FILE).write_bytes(serving)
    write_artefact_info(folder, ArtefactInfo(["glass", "metal"], -5.0, 0.7))
    return folder


def test_the_digest_is_a_sha256_over_the_sorted_names_and_file_digests(tmp_path: Path) -> None:
    folder = _artefact(tmp_path / "a")
    expected = hashlib.sha256()
    for name in sorted((KERAS_FILE, SERVING_FILE, CLASSES_FILE, THRESHOLDS_FILE)):
        expected.update(f"{name}\0{hashlib.sha256((folder / name).read_bytes()).hexdigest()}\n".encode())
    digest = artefact_digest(folder)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest == expected.hexdigest()


def test_the_same_content_in_another_folder_has_the_same_digest(tmp_path: Path) -> None:
    assert artefact_digest(_artefact(tmp_path / "a")) == artefact_digest(_artefact(tmp_path / "b"))


@pytest.mark.parametrize("name", [KERAS_FILE, SERVING_FILE, CLASSES_FILE, THRESHOLDS_FILE])
def test_changing_any_loaded_file_changes_the_digest(tmp_path: Path, name: str) -> None:
    folder = _artefact(tmp_path / "a")
    before = artefact_digest(folder)
    with (folder / name).open("ab") as handle:
        handle.write(b"\n")
    assert artefact_digest(folder) != before


def test_metrics_and_plots_added_later_leave_the_digest_alone(tmp_path: Path) -> None:
    folder = _artefact(tmp_path / "a")
    before = artefact_digest(folder)
    (folder / METRICS_FILE).write_text('{"accuracy": 0.9}')
    (folder / CONFUSION_MATRIX_FILE).write_bytes(b"png")
    (folder / "comparison.json").write_text("{}")
    assert artefact_digest(folder) == before


def test_an_artefact_without_its_serving_export_differs_from_one_with_it(tmp_path: Path) -> None:
    with_export = artefact_digest(_artefact(tmp_path / "a"))
    without = artefact_digest(_artefact(tmp_path / "b", serving=None))
    assert with_export != without


def test_file_contents_are_not_interchangeable_between_names(tmp_path: Path) -> None:
    """The name is part of each pair: swapping the bytes of two files changes the digest."""
    first = _artefact(tmp_path / "a", weights=b"one", serving=b"two")
    second = _artefact(tmp_path / "b", weights=b"two", serving=b"one")
    assert artefact_digest(first) != artefact_digest(second)


@pytest.mark.parametrize("name", [KERAS_FILE, CLASSES_FILE, THRESHOLDS_FILE])
def test_a_folder_missing_a_required_file_has_no_digest(tmp_path: Path, name: str) -> None:
    folder = _artefact(tmp_path / "a")
    (folder / name).unlink()
    with pytest.raises(FileNotFoundError, match=name):
        artefact_digest(folder)
