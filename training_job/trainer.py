"""Two-phase transfer learning of the waste classifier on cached outputs of its frozen layers.

1. The training images pass through the frozen layers once per view (one plain view and augmented ones);
   the outputs are cached (``feature_cache``). Phase 1 trains the head on the pooled features.
2. Phase 2 unfreezes the top backbone blocks and fine-tunes them with the head, on the cached activations
   at the cut, at a lower learning rate.
Both phases stop early on validation loss and keep their best weights; a time budget can end either.

Every training image carries a loss weight (``site_balanced_weights``): classes weigh the same, and within a class
a site with a few labelled images weighs as much as the seed images, so a new site's first labels move the model
while the old site keeps its share. Augmented views also vary the floor, the light and the camera's angle; the images
of such a new site's few labels (``few_shot_images``) get more of them, sharing their weight.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from rich.console import Console

from schemas.model_artefact import CLASSES_FILE, KERAS_FILE
from training_job.artefacts import CONFIG_FILE
from training_job.calibration import HeadInputs, penultimate_features
from training_job.callbacks import (
    BudgetedCosineDecay,
    EpochCallback,
    EpochLog,
    FitProgress,
    StopAtDeadline,
    stderr_console,
)
from training_job.classifier import build_classifier, grow_head, split_classifier
from training_job.dataset_source import Dataset, DatasetError, ImageLoader, ImageReader
from training_job.feature_cache import CachedOutputs, FrozenOutputs
from training_job.input_pipeline import (
    cached_view_weights,
    few_shot_extra_views,
    few_shot_images,
    frame_preprocessor,
    image_batches,
    site_balanced_weights,
)
from training_job.site_augmentation import LookVariation

HEAD_BATCH_SIZE = 64
HEAD_PATIENCE = 5
HEAD_MIN_EPOCHS = 5  # head epochs run on cached features (seconds each): a run whose caching overran still gets them
DEADLINE_MARGIN_S = 10.0


@dataclass(frozen=True)
class TrainConfig:
    backbone: str = "efficientnet_lite0"
    weights: str | None = "imagenet"  # or None (random initialisation), or a weights file
    batch_size: int = 64  # on 2 CPU cores, 64 trains the top blocks ~1.6x faster per image than 32
    augmented_views: int = 8  # augmented passes of the training images, besides the plain one
    trainable_blocks: int = 4  # backbone blocks fine-tuned in phase 2, besides the layers after them
    head_epochs: int = 40
    head_learning_rate: float = 1e-3
    finetune_epochs: int = 12
    finetune_learning_rate: float = 3e-4
    label_smoothing: float = 0.1
    dropout: float = 0.2
    patience: int = 3  # phase 2 epochs without a better validation loss before stopping
    time_budget_s: float | None = None  # wall time for the whole training, caching included
    caching_share: float = 0.45  # augmented views stop being added once this share of the budget is used
    site_balance: float = 1.0  # 0: classes balanced only; 1: every (site, class) group of a class weighs the same
    background_share: float = 0.5  # share of augmented views shown on a generated floor instead of a plain board
    white_balance: float = 0.15  # augmented views scale each colour channel by a gain in [1 - this, 1 + this]
    colour_temperature: float = 0.3  # augmented views' red and blue gains are 1 + t and 1 - t, t in [-this, this]
    seed: int = 0


@dataclass
class TrainedModel:
    model: keras.Model
    classes: list[str]
    config: TrainConfig
    history: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    augmented_views: int = 0  # how many augmented views were cached within the budget
    few_shot_views: int = 0  # extra augmented views cached of few-shot images (``few_shot_images``)
    stopped_by_deadline: bool = False
    head_inputs: HeadInputs | None = None  # what the trained head reads, for out-of-fold calibration


def base_model(from_model: Path) -> tuple[keras.Model, list[str], dict[str, Any]]:
    """A model directory written by a previous run: (model, its classes, its training config or {})."""
    model = keras.models.load_model(from_model / KERAS_FILE, compile=False)
    classes = [line.strip() for line in (from_model / CLASSES_FILE).read_text().splitlines() if line.strip()]
    config_file = from_model / CONFIG_FILE
    config = json.loads(config_file.read_text()).get("training", {}) if config_file.is_file() else {}
    return model, classes, config


def initial_model(dataset: Dataset, config: TrainConfig, from_model: Path | None
                  ) -> tuple[keras.Model, list[str], TrainConfig]:
    """A fresh classifier, or the model in ``from_model`` with its head grown for the dataset's new classes.

    Known classes keep their position (and head rows); new ones are appended in name order.
    """
    if from_model is None:
        model = build_classifier(config.backbone, len(dataset.classes), config.weights, config.dropout, config.seed)
        return model, list(dataset.classes), config
    model, known, base_config = base_model(from_model)
    classes = known + sorted(set(dataset.classes) - set(known))
    if "backbone" in base_config:
        config = replace(config, backbone=base_config["backbone"])
    return grow_head(model, len(classes), config.seed), classes, config


def _one_hot_batches(inputs: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int,
                     shuffle_seed: int | None = None, sample_weights: np.ndarray | None = None) -> tf.data.Dataset:
    weights = np.ones(len(labels), np.float32) if sample_weights is None else sample_weights
    dataset = tf.data.Dataset.from_tensor_slices((inputs, labels, weights))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    return (dataset.batch(batch_size)
            .map(lambda x, y, w: (tf.cast(x, tf.float32), tf.one_hot(y, num_classes), w))
            .prefetch(tf.data.AUTOTUNE))


def _labelled_splits(dataset: Dataset, classes: list[str]) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """(train uris, train labels, val uris, val labels); every class needs training images."""
    train_rows, val_rows = dataset.split("train"), dataset.split("val")
    if not train_rows or not val_rows:
        raise DatasetError(f"{dataset.source}: training needs train and val images "
                           f"(found {len(train_rows)} and {len(val_rows)})")
    train_labels = dataset.labels(train_rows, classes)
    present = set(train_labels.tolist())
    absent = [name for index, name in enumerate(classes) if index not in present]
    if absent:
        raise DatasetError(f"{dataset.source}: no training images of {absent}")
    return ([row.image for row in train_rows], train_labels, [row.image for row in val_rows],
            dataset.labels(val_rows, classes))


def _cache_views(frozen: FrozenOutputs, batches: Callable[..., tf.data.Dataset], config: TrainConfig,
                 caching_limit: float | None, result: TrainedModel) -> CachedOutputs:
    """The plain view of the training images, then augmented views until the caching share of the budget."""
    views = [frozen.run(batches(), "caching train (plain)")]
    for view in range(1, config.augmented_views + 1):
        view_started = time.monotonic()
        views.append(frozen.run(batches(augment_seed=config.seed * 1000 + view),
                                f"caching train (augmented view {view}/{config.augmented_views})"))
        result.augmented_views = view
        # Stop when one more view (as long as this one took) would run past the caching share.
        if caching_limit is not None and 2 * time.monotonic() - view_started > caching_limit:
            break
    return CachedOutputs.concatenate(views)


def _fit(model: keras.Model, train: tuple[np.ndarray, np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], *,
         batch_size: int, epochs: int, learning_rate: float, num_classes: int, config: TrainConfig,
         callbacks: list[keras.callbacks.Callback]) -> None:
    """Fit ``model`` on cached (inputs, labels, sample weights) of the train split, validating on (inputs, labels)
    of the val split, unweighted."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), metrics=["accuracy"],
                  # Categorical (one-hot) because the sparse loss has no label smoothing.
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True,
                                                            label_smoothing=config.label_smoothing))
    inputs, labels, weights = train
    model.fit(_one_hot_batches(inputs, labels, num_classes, batch_size, config.seed, weights),
              validation_data=_one_hot_batches(*val, num_classes, 256),
              epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)


def train_classifier(dataset: Dataset, config: TrainConfig, loader: ImageLoader | None = None,
                     from_model: Path | None = None, console: Console = stderr_console,
                     on_epoch: EpochCallback | None = None) -> TrainedModel:
    """Train on the dataset's train split, stopping on its val split; see the module docstring.

    ``on_epoch`` receives each epoch's record (as in ``history``) with the phase's planned ``epochs``.
    """
    started = time.monotonic()
    budget = config.time_budget_s
    # Stop fitting a little early: the epoch's validation pass and the restore of the best weights follow.
    fit_deadline = None if budget is None else started + budget - DEADLINE_MARGIN_S
    loader = loader or ImageReader()
    keras.utils.set_random_seed(config.seed)
    model, classes, config = initial_model(dataset, config, from_model)
    train_uris, train_labels, val_uris, val_labels = _labelled_splits(dataset, classes)
    train_sites = [row.site for row in dataset.split("train")]  # in the order of train_uris
    weights = site_balanced_weights(train_labels, train_sites, len(classes), config.site_balance)
    result = TrainedModel(model, classes, config)

    parts = split_classifier(model, config.trainable_blocks)
    frozen = FrozenOutputs(parts.frozen, console)
    preprocess = frame_preprocessor(int(model.input_shape[1]))
    val = frozen.run(image_batches(val_uris, val_labels, loader, preprocess, config.batch_size), "caching val")
    variation = LookVariation(config.background_share, config.white_balance, config.colour_temperature)
    train = _cache_views(frozen, partial(image_batches, train_uris, train_labels, loader, preprocess,
                                         config.batch_size, variation=variation), config,
                         None if budget is None else started + config.caching_share * budget, result)
    few = few_shot_images(train_labels, train_sites)
    extra_views = few_shot_extra_views(few.size, len(train_uris)) if config.augmented_views else 0
    if extra_views:
        # Ten labels of a new site seen in two or three views teach the fine-tuned blocks those ten pictures;
        # seen in many, they teach the site.
        uris = [train_uris[index] for index in few] * extra_views
        train = CachedOutputs.concatenate([train, frozen.run(
            image_batches(uris, np.tile(train_labels[few], extra_views), loader, preprocess, config.batch_size,
                          augment_seed=config.seed * 1000 + 999, variation=variation),
            f"caching train ({extra_views} more views of {few.size} few-shot images)")])
    result.few_shot_views = extra_views * few.size
    # The cached views repeat the training images in order, then the few-shot images' extra views.
    view_weights = cached_view_weights(weights, result.augmented_views + 1, few, extra_views)
    result.timings["caching_s"] = time.monotonic() - started
    console.print(f"cached {len(train.labels)} training views ({len(train_uris)} images x "
                  f"{result.augmented_views + 1}, {result.few_shot_views} more of {few.size} few-shot images) and "
                  f"{len(val.labels)} validation images in {result.timings['caching_s']:.0f} s")
    phase_started = time.monotonic()
    stop = StopAtDeadline(fit_deadline, min_epochs=HEAD_MIN_EPOCHS)
    _fit(parts.head, (train.features, train.labels, view_weights), (val.features, val.labels),
         batch_size=HEAD_BATCH_SIZE, epochs=config.head_epochs, learning_rate=config.head_learning_rate,
         num_classes=len(classes), config=config,
         callbacks=[keras.callbacks.EarlyStopping("val_loss", patience=HEAD_PATIENCE, restore_best_weights=True),
                    FitProgress("head", console), EpochLog("head", result.history, started, on_epoch), stop])
    result.timings["head_s"] = time.monotonic() - phase_started

    phase_started = time.monotonic()
    if config.finetune_epochs > 0 and not stop.stopped:
        steps = config.finetune_epochs * math.ceil(len(train.labels) / config.batch_size)
        _fit(parts.top, (train.activations, train.labels, view_weights), (val.activations, val.labels),
             batch_size=config.batch_size, epochs=config.finetune_epochs,
             learning_rate=config.finetune_learning_rate, num_classes=len(classes), config=config,
             callbacks=[keras.callbacks.EarlyStopping("val_loss", patience=config.patience, restore_best_weights=True),
                        BudgetedCosineDecay(config.finetune_learning_rate, steps, fit_deadline),
                        FitProgress("fine-tune", console), EpochLog("fine-tune", result.history, started, on_epoch),
                        stop])
    result.timings["finetune_s"] = time.monotonic() - phase_started
    result.timings["training_s"] = time.monotonic() - started
    result.stopped_by_deadline = stop.stopped
    result.head_inputs = HeadInputs(penultimate_features(parts, train.activations[:len(train_uris)]), train_labels,
                                    weights, penultimate_features(parts, val.activations), val.labels)
    model.trainable = True  # the saved model carries no training-time freezing
    return result


def config_document(trained: TrainedModel, dataset: Dataset, from_model: Path | None) -> dict[str, Any]:
    """What ``config.json`` records: the training settings, the data and what the budget allowed."""
    return {
        "training": asdict(trained.config),
        "classes": trained.classes,
        "dataset": {"source": dataset.source, "images": dataset.counts(), "sites": dataset.site_counts(),
                    "dropped_conflicting_digests": dataset.conflicting_digests},
        "from_model": None if from_model is None else str(from_model),
        "augmented_views_cached": trained.augmented_views,
        "few_shot_views_cached": trained.few_shot_views,
        "stopped_by_deadline": trained.stopped_by_deadline,
        "timings_s": {name: round(value, 2) for name, value in trained.timings.items()},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
