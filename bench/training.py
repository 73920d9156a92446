"""`wastex bench training`: the training pipeline on TrashNet within a time budget, against a from-scratch
baseline (same architecture, random initialisation) trained end to end for the same wall time in the same run.

Reported: test-split accuracy, macro-F1 and per-class F1 of both; energy-score OOD AUROC of the trained model
against non-waste photos (scikit-image's photos and crops of them); training wall time; throughput of the
trained model on the serving runtime (LiteRT) at batch 32; and the serving-runtime check a registration runs
(training_job.runtime_check on the val split): every candidate's agreement with Keras and the runtime chosen.
`--keep-model DIR` keeps the trained model, for `wastex bench scoring --model DIR`.

TensorFlow is imported inside the command, so listing the benchmarks stays fast.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from bench.photos import trashnet_dir
from bench.report import print_figures

BATCH = 32
THROUGHPUT_BATCHES = 8
TARGET_ACCURACY = 0.93
TARGET_MACRO_F1 = 0.92
TARGET_AUROC = 0.90


def _serving_images_per_second(model_dir: Path, uris: list[str]) -> tuple[float, str]:
    """Images/s of the exported model on the scoring workers' runtime, batches of BATCH after a warm-up."""
    from infra.serving_runtimes import load_serving_model
    from training_job.dataset_source import ImageReader
    from training_job.input_pipeline import frame_preprocessor, images
    from training_job.serving_export import export_litert

    export_litert(model_dir)
    runtime = load_serving_model(model_dir)
    frames = images(uris[:BATCH * THROUGHPUT_BATCHES], ImageReader()).map(frame_preprocessor(runtime.input_size))
    pixels = np.stack([frame.numpy() for frame in frames])
    batches = [pixels[start:start + BATCH] for start in range(0, len(pixels) - BATCH + 1, BATCH)]
    runtime.logits(batches[0])
    started = time.perf_counter()
    for batch in batches:
        runtime.logits(batch)
    return len(batches) * BATCH / (time.perf_counter() - started), runtime.runtime


def _ood_auroc(model_dir: Path, test_logits: np.ndarray, work: Path) -> tuple[float, int]:
    import keras

    from schemas.model_artefact import KERAS_FILE
    from training_job.evaluation import ood_auroc
    from training_job.inference import predict_logits
    from training_job.ood_photos import build_ood_photo_set

    photos = build_ood_photo_set(work / "ood")
    model = keras.models.load_model(model_dir / KERAS_FILE, compile=False)
    ood_logits = predict_logits(model, [str(path) for path in photos], description="scoring OOD photos")
    return ood_auroc(test_logits, ood_logits), len(photos)


def _scratch_baseline(dataset, config, seconds: float) -> dict[str, object]:
    """The same classifier with random weights, trained end to end on augmented images for ``seconds``."""
    import keras

    from training_job.callbacks import FitProgress, StopAtDeadline
    from training_job.classifier import build_classifier
    from training_job.dataset_source import ImageReader
    from training_job.evaluation import classification_metrics
    from training_job.inference import predict_logits
    from training_job.input_pipeline import class_weights, frame_preprocessor, image_batches

    keras.utils.set_random_seed(config.seed)
    started = time.monotonic()
    model = build_classifier(config.backbone, len(dataset.classes), weights=None, dropout=config.dropout,
                             seed=config.seed)
    preprocess, loader = frame_preprocessor(int(model.input_shape[1])), ImageReader()
    train_rows, val_rows, test_rows = (dataset.split(name) for name in ("train", "val", "test"))
    train_labels = dataset.labels(train_rows)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(image_batches([row.image for row in train_rows], train_labels, loader, preprocess, config.batch_size,
                            augment_seed=config.seed, shuffle_seed=config.seed),
              validation_data=image_batches([row.image for row in val_rows], dataset.labels(val_rows), loader,
                                            preprocess, config.batch_size),
              epochs=10_000, class_weight=class_weights(train_labels, len(dataset.classes)), shuffle=False,
              verbose=0,
              callbacks=[StopAtDeadline(started + seconds), FitProgress("scratch"),
                         # No early stop: the baseline gets all its time, then its best epoch is kept.
                         keras.callbacks.EarlyStopping("val_loss", patience=10_000, restore_best_weights=True)])
    training_s = time.monotonic() - started
    logits = predict_logits(model, [row.image for row in test_rows], loader, description="evaluating scratch")
    metrics = classification_metrics(dataset.labels(test_rows), logits, dataset.classes)
    return {"scratch_accuracy": metrics.accuracy, "scratch_macro_f1": metrics.macro_f1,
            "scratch_per_class_f1": {name: round(value, 4) for name, value in metrics.per_class_f1.items()},
            "scratch_training_s": training_s}


@click.command()
@click.option("--dataset", type=click.Path(file_okay=False, path_type=Path),
              help="TrashNet folder (default: $WASTEX_TRASHNET_DIR).")
@click.option("--minutes", default=20.0, show_default=True, type=click.FloatRange(min=1),
              help="Training wall-time budget, for the model and for the from-scratch baseline each.")
@click.option("--baseline/--no-baseline", default=True, show_default=True,
              help="Also train the from-scratch baseline (doubles the run time).")
@click.option("--keep-model", type=click.Path(file_okay=False, path_type=Path),
              help="Copy the trained model folder here (for `wastex bench scoring --model`).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def training(dataset: Path | None, minutes: float, baseline: bool, keep_model: Path | None, as_json: bool) -> None:
    """Accuracy, macro-F1 and OOD AUROC of a model trained on TrashNet within --minutes, vs. from scratch."""
    from infra.images import ImageLimits
    from infra.settings import load_settings
    from training_job.dataset_source import ImageReader, load_dataset
    from training_job.runtime_check import check_runtime, split_check_images
    from training_job.trainer import TrainConfig
    from training_job.training_run import run_training

    data = load_dataset(trashnet_dir(dataset))
    config = TrainConfig(time_budget_s=minutes * 60)
    with tempfile.TemporaryDirectory(prefix="wastex-bench-training-") as scratch:
        work = Path(scratch)
        run = run_training(data, work / "model", config)
        auroc, ood_images = _ood_auroc(run.out_dir, run.logits, work)
        throughput, runtime = _serving_images_per_second(run.out_dir, [row.image for row in data.split("test")])
        _, runtime_check = check_runtime(run.out_dir, split_check_images(data, "val", run.classes, ImageReader()),
                                         ImageLimits.of(load_settings()))
        if keep_model is not None:
            shutil.copytree(run.out_dir, keep_model)

    training_s = run.trained.timings["training_s"]
    figures: dict[str, object] = {
        "accuracy": run.metrics["accuracy"],
        "macro_f1": run.metrics["macro_f1"],
        "weighted_f1": run.metrics["weighted_f1"],
        "per_class_f1": {name: round(value, 4) for name, value in run.metrics["per_class_f1"].items()},
        "ood_auroc": auroc,
        "ood_images": ood_images,
        "test_images": run.metrics["images"],
        "training_s": training_s,
        "caching_s": run.trained.timings["caching_s"],
        "augmented_views": run.trained.augmented_views,
        "epochs": {phase: sum(record["phase"] == phase for record in run.trained.history)
                   for phase in ("head", "fine-tune")},
        "inference_ips": throughput,
        "inference_runtime": runtime,
        "batch_size": BATCH,
        "serving_runtime": runtime_check["chosen"],
        "runtime_check": runtime_check,
    }
    if baseline:
        figures.update(_scratch_baseline(data, config, training_s))
    targets = {
        f"accuracy >= {TARGET_ACCURACY}": run.metrics["accuracy"] >= TARGET_ACCURACY,
        f"macro_f1 >= {TARGET_MACRO_F1}": run.metrics["macro_f1"] >= TARGET_MACRO_F1,
        f"ood_auroc >= {TARGET_AUROC}": auroc >= TARGET_AUROC,
        f"training within {minutes:g} min": training_s <= minutes * 60,
    }
    print_figures("Training benchmark (TrashNet, held-out test split)", figures, targets, as_json)
