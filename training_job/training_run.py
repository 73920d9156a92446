"""One training run end to end: train, calibrate the OOD thresholds, evaluate, write the model directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from schemas.model_artefact import CONFUSION_MATRIX_FILE, KERAS_FILE, METRICS_FILE, ArtefactInfo, write_artefact_info
from schemas.ood_scores import Thresholds
from training_job.artefacts import (
    CONFIG_FILE,
    write_json,
    write_model_summary,
    write_training_log,
)
from training_job.callbacks import EpochCallback, stderr_console
from training_job.dataset_source import Dataset, ImageLoader
from training_job.evaluation import calibrate_thresholds, classification_metrics, save_confusion_matrix_png
from training_job.inference import predict_logits
from training_job.trainer import TrainConfig, TrainedModel, config_document, train_classifier


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    classes: list[str]
    thresholds: Thresholds
    metrics: dict[str, Any]  # the content of metrics.json
    logits: np.ndarray  # of the evaluated split's images, in the dataset's order
    trained: TrainedModel


def run_training(dataset: Dataset, out_dir: Path, config: TrainConfig, loader: ImageLoader | None = None,
                 from_model: Path | None = None, console: Console = stderr_console,
                 on_epoch: EpochCallback | None = None) -> RunResult:
    """Train on the train split; thresholds from the val split; metrics on the test split (val if none).

    ``on_epoch`` is called after every training epoch (see ``train_classifier``).
    """
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty: give a new directory for the model")
    trained = train_classifier(dataset, config, loader, from_model, console, on_epoch)
    model, classes = trained.model, trained.classes
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir / KERAS_FILE)

    # Calibrated on the saved model's own logits, so the thresholds fit exactly what will serve.
    val_rows = dataset.split("val")
    thresholds = calibrate_thresholds(predict_logits(model, [row.image for row in val_rows], loader,
                                                     description="calibrating on val", console=console))
    write_artefact_info(out_dir, ArtefactInfo(classes, thresholds.tau_energy, thresholds.tau_softmax))

    split = "test" if dataset.split("test") else "val"
    rows = dataset.split(split)
    logits = predict_logits(model, [row.image for row in rows], loader, description=f"evaluating on {split}",
                            console=console)
    metrics = classification_metrics(dataset.labels(rows, classes), logits, classes)
    save_confusion_matrix_png(metrics, out_dir / CONFUSION_MATRIX_FILE, f"{split} split, {len(rows)} images")
    document = {"split": split, "images": len(rows), **metrics.to_json(),
                "tau_energy": thresholds.tau_energy, "tau_softmax": thresholds.tau_softmax,
                "training_s": round(trained.timings["training_s"], 2)}
    write_json(out_dir / METRICS_FILE, document)
    write_training_log(out_dir, trained.history)
    write_json(out_dir / CONFIG_FILE, config_document(trained, dataset, from_model))
    write_model_summary(out_dir, model)
    console.print(f"{split}: accuracy {metrics.accuracy:.4f}, macro-F1 {metrics.macro_f1:.4f} "
                  f"({len(rows)} images); model in {out_dir}")
    return RunResult(out_dir, classes, thresholds, document, logits, trained)
