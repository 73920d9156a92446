"""Models whose logits the tests control, and photos of one dominant colour for them to score.

A controlled model's logits are `mean RGB of the image @ weights` (one column per class), so a test
decides which class, or none (flat logits: OOD), each colour gets.
"""

from __future__ import annotations

import io
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from infra.settings import Settings
from schemas.ood_scores import Thresholds
from training_job.model_registry import import_model

RED, GREEN, GREY = (220, 20, 20), (20, 220, 20), (128, 128, 128)
# Red -> metal, green -> glass, grey -> flat logits (OOD).
METAL_GLASS = ["metal", "glass"], np.array([[0.3, -0.3], [-0.3, 0.3], [0.0, 0.0]])
# The same, plus grey -> paper (19.2 against 0): a model that learnt a new class.
METAL_GLASS_PAPER = ["metal", "glass", "paper"], np.array([[0.3, -0.3, 0.05], [-0.3, 0.3, 0.05], [0.0, 0.0, 0.05]])


def controlled_model(path: Path, weights: np.ndarray) -> Path:
    inputs = keras.Input((32, 32, 3))
    means = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(weights.shape[1], use_bias=False)
    outputs = dense(means)
    dense.set_weights([weights.astype(np.float32)])
    keras.Model(inputs, outputs).save(path)
    return path


def photo(colour: tuple[int, int, int], seed: int, fmt: str = "JPEG") -> bytes:
    """A distinct image of one dominant colour (distinct bytes: images are content-addressed)."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.integers(-8, 9, size=(48, 64, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def import_controlled(isolated: Settings, folder: Path, version: str, classes_weights: tuple[list[str], np.ndarray],
                      drifting_camera: Thresholds | None = None) -> str:
    """A controlled model registered (LiteRT export checked) as `version`, with thresholds that fit it."""
    classes, weights = classes_weights
    imported = import_model(isolated, controlled_model(folder / f"{version}.keras", weights), classes,
                            version=version, tau_energy=-5.0, tau_softmax=0.7, drifting_camera=drifting_camera)
    assert imported.export.exported, imported.export.detail
    return imported.version
