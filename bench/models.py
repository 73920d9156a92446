"""Models the benchmarks serve: ImageNet EfficientNet-Lite0 with a seeded, untrained TrashNet head."""

from __future__ import annotations

from pathlib import Path

from schemas.model_artefact import KERAS_FILE, ArtefactInfo, write_artefact_info
from schemas.ood_scores import SEED_TAU_ENERGY, SEED_TAU_SOFTMAX

TRASHNET_CLASSES = ["cardboard", "glass", "metal", "paper", "plastic", "trash"]


def untrained_head_model(folder: Path, seed: int = 0) -> None:
    """The serving cost of a trained model; another seed gives another model of the same cost."""
    import keras

    from training_job.backbones.registry import build_backbone

    extractor, _, _ = build_backbone("efficientnet_lite0", "imagenet")
    head = keras.layers.Dense(len(TRASHNET_CLASSES), kernel_initializer=keras.initializers.GlorotUniform(seed=seed))
    keras.Model(extractor.input, head(extractor.output)).save(folder / KERAS_FILE)
    write_artefact_info(folder, ArtefactInfo(TRASHNET_CLASSES, SEED_TAU_ENERGY, SEED_TAU_SOFTMAX))
