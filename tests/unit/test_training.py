"""A tiny training run on a slice of TrashNet, its model directory, fine-tuning into more classes, evaluate."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from schemas.model_artefact import CLASSES_FILE, CONFUSION_MATRIX_FILE, KERAS_FILE, ArtefactInfo, read_artefact_info
from tests.trashnet_slices import trashnet_slice
from training_job.artefacts import (
    CONFIG_FILE,
    MODEL_SUMMARY_FILE,
    TRAINING_LOG_CSV,
    TRAINING_LOG_JSON,
)
from training_job.cli import evaluate
from training_job.dataset_source import load_dataset
from training_job.evaluation import energy_percentiles, flagged
from training_job.inference import predict_logits
from training_job.ood_photos import build_ood_photo_set
from training_job.serving_export import export_litert
from training_job.trainer import TrainConfig
from training_job.training_run import RunResult, run_training

CLASSES = ["cardboard", "glass", "metal"]
PER_SPLIT = {"train": 20, "val": 8, "test": 16}
REVIEW_RATE = 0.1
DRIFTING_REVIEW_RATE = 0.4
TINY = TrainConfig(batch_size=16, augmented_views=1, trainable_blocks=1, head_epochs=10, finetune_epochs=1)


@pytest.fixture(scope="module")
def tiny_slice(trashnet: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trashnet_slice(trashnet, tmp_path_factory.mktemp("slice"), CLASSES, PER_SPLIT)


@pytest.fixture(scope="module")
def tiny_run(tiny_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunResult]:
    yield run_training(load_dataset(tiny_slice), tmp_path_factory.mktemp("run") / "model", TINY,
                       review_rate=REVIEW_RATE, drifting_review_rate=DRIFTING_REVIEW_RATE)


def test_tiny_run_beats_chance_on_its_test_split(tiny_run: RunResult) -> None:
    assert tiny_run.metrics["split"] == "test" and tiny_run.metrics["images"] == 3 * PER_SPLIT["test"]
    assert tiny_run.metrics["accuracy"] >= 0.65, tiny_run.metrics["report"]  # chance: 1/3
    assert tiny_run.metrics["macro_f1"] >= 0.6, tiny_run.metrics["report"]
    phases = [record["phase"] for record in tiny_run.trained.history]
    assert phases.count("fine-tune") == 1 and 1 <= phases.count("head") <= TINY.head_epochs


def test_model_directory_holds_every_artefact(tiny_run: RunResult) -> None:
    folder = tiny_run.out_dir
    for name in (KERAS_FILE, CLASSES_FILE, "thresholds.json", "metrics.json", CONFUSION_MATRIX_FILE,
                 TRAINING_LOG_CSV, TRAINING_LOG_JSON, CONFIG_FILE, MODEL_SUMMARY_FILE):
        assert (folder / name).stat().st_size > 0, name
    assert (folder / CONFUSION_MATRIX_FILE).read_bytes().startswith(b"\x89PNG")
    log = json.loads((folder / TRAINING_LOG_JSON).read_text())
    assert len(log) == len(tiny_run.trained.history)
    assert len((folder / TRAINING_LOG_CSV).read_text().splitlines()) == len(log) + 1
    assert "val_loss" in log[-1] and log[-1]["phase"] == "fine-tune"
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["training"]["backbone"] == "efficientnet_lite0" and config["classes"] == CLASSES
    assert "block14_project_conv" in (folder / MODEL_SUMMARY_FILE).read_text()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["accuracy"] == tiny_run.metrics["accuracy"] and set(metrics["per_class_f1"]) == set(CLASSES)


def test_saved_model_loads_without_custom_objects_and_emits_logits(tiny_run: RunResult, tiny_slice: Path) -> None:
    model = keras.models.load_model(tiny_run.out_dir / KERAS_FILE, compile=False)
    assert model.input_shape == (None, 224, 224, 3)
    assert model.layers[-1].get_config()["activation"] == "linear"
    test_rows = load_dataset(tiny_slice).split("test")
    np.testing.assert_allclose(predict_logits(model, [row.image for row in test_rows]), tiny_run.logits,
                               rtol=1e-4, atol=1e-4)


def test_thresholds_and_the_energy_reference_travel_with_the_model(tiny_run: RunResult, tiny_slice: Path) -> None:
    info = read_artefact_info(tiny_run.out_dir)
    assert info == ArtefactInfo(CLASSES, tiny_run.thresholds.tau_energy, tiny_run.thresholds.tau_softmax,
                                tiny_run.energy_quantiles, tiny_run.drifting_camera_thresholds)
    quantiles = info.energy_quantiles
    assert len(quantiles) == 101 and np.all(np.diff(quantiles) >= 0)
    # The drift reference is the saved model's own energies on the val split, not the out-of-fold heads'.
    model = keras.models.load_model(tiny_run.out_dir / KERAS_FILE)
    val = predict_logits(model, [row.image for row in load_dataset(tiny_slice).split("val")])
    np.testing.assert_allclose(quantiles, energy_percentiles(val), rtol=1e-4, atol=1e-4)


def test_the_thresholds_come_from_val_and_out_of_fold_training_scores_and_report_what_they_cost(
        tiny_run: RunResult) -> None:
    metrics = tiny_run.metrics
    assert metrics["calibration_images"] == 3 * (PER_SPLIT["val"] + PER_SPLIT["train"])
    assert metrics["review_rate_target"] == REVIEW_RATE
    flagged_test = flagged(tiny_run.logits, tiny_run.thresholds)
    assert metrics["review_rate"] == pytest.approx(flagged_test.mean())
    assert 0.0 <= metrics["ood_recall"] <= 1.0 and metrics["ood_images"] >= 14 and 0.0 <= metrics["ood_auroc"] <= 1.0
    assert json.loads((tiny_run.out_dir / "metrics.json").read_text())["ood_recall"] == metrics["ood_recall"]
    assert tiny_run.trained.timings["calibration_s"] < 60


def test_drifting_cameras_get_a_stricter_pair_that_flags_every_image_the_regular_pair_flags_and_more(
        tiny_run: RunResult) -> None:
    regular, drifting = tiny_run.thresholds, tiny_run.drifting_camera_thresholds
    assert drifting.tau_energy < regular.tau_energy and drifting.tau_softmax > regular.tau_softmax
    flagged_regular, flagged_drifting = flagged(tiny_run.logits, regular), flagged(tiny_run.logits, drifting)
    assert np.all(flagged_drifting[flagged_regular]) and flagged_drifting.sum() > flagged_regular.sum()
    assert tiny_run.metrics["drifting_camera_review_rate"] == pytest.approx(flagged_drifting.mean())


def test_the_model_exports_to_litert(tiny_run: RunResult, tmp_path: Path) -> None:
    shutil.copy2(tiny_run.out_dir / KERAS_FILE, tmp_path / KERAS_FILE)
    report = export_litert(tmp_path)
    assert report.exported, report.detail


def test_fine_tuning_into_a_new_class_keeps_the_known_classes_first(
        tiny_run: RunResult, trashnet: Path, tmp_path: Path) -> None:
    grown = trashnet_slice(trashnet, tmp_path / "slice", [*CLASSES, "plastic"], {"train": 6, "val": 3, "test": 3})
    config = replace(TINY, augmented_views=0, head_epochs=1, backbone="mobilenet_v2")
    run = run_training(load_dataset(grown), tmp_path / "model", config, from_model=tiny_run.out_dir)
    assert run.classes == [*CLASSES, "plastic"]
    assert read_artefact_info(run.out_dir).classes == run.classes
    recorded = json.loads((run.out_dir / CONFIG_FILE).read_text())
    assert recorded["from_model"] == str(tiny_run.out_dir)
    assert recorded["training"]["backbone"] == "efficientnet_lite0"  # the base model's, not the option's
    model = keras.models.load_model(run.out_dir / KERAS_FILE, compile=False)
    assert model.output_shape == (None, 4)


def test_evaluate_prints_one_json_object(tiny_run: RunResult, tiny_slice: Path, tmp_path: Path) -> None:
    build_ood_photo_set(tmp_path / "ood", crops_per_photo=1)
    result = CliRunner().invoke(evaluate, ["--model", str(tiny_run.out_dir), "--dataset", str(tiny_slice),
                                           "--ood", str(tmp_path / "ood"), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["accuracy"] == pytest.approx(tiny_run.metrics["accuracy"])
    assert document["macro_f1"] == pytest.approx(tiny_run.metrics["macro_f1"])
    assert set(document["per_class_f1"]) == set(CLASSES)
    assert 0.0 <= document["ood_auroc"] <= 1.0 and document["ood_images"] >= 14


def test_evaluate_refuses_classes_the_model_does_not_know(tiny_run: RunResult, trashnet: Path,
                                                          tmp_path: Path) -> None:
    other = trashnet_slice(trashnet, tmp_path / "slice", ["paper"], {"test": 2})
    result = CliRunner().invoke(evaluate, ["--model", str(tiny_run.out_dir), "--dataset", str(other), "--json"])
    assert result.exit_code == 1
    assert "['paper'] are not among ['cardboard', 'glass', 'metal']" in result.output
