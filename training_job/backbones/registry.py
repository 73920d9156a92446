"""Backbones selectable by name, each with its input size and preprocessing.

``build_backbone`` returns a feature extractor without the ImageNet classifier, ending in global average
pooling (one feature vector per image). Every extractor takes float32 RGB pixels in [0, 255] and normalises
them in its first layer, so a classifier built on it meets the model artefact contract unchanged.

Keras never downloads anything here: ImageNet weights for the ``keras.applications`` backbones are used
only when their file is given by path or is already in the Keras cache (``$KERAS_HOME/models``, by default
``~/.keras/models``); otherwise they start from random initialisation, with a warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from training_job.backbones.efficientnet_lite import build_efficientnet_lite0
from training_job.backbones.imagenet_weights import load_imagenet_weights

log = logging.getLogger(__name__)

Weights = str | os.PathLike[str] | None


@dataclass(frozen=True)
class Backbone:
    name: str
    input_size: int
    # (input_shape, weights file or None) -> feature extractor
    build: Callable[[tuple[int, int, int], str | None], keras.Model]
    # Name of the no-top ImageNet weights file that keras.applications caches; None when weights are ported.
    keras_cache_file: str | None = None

    def preprocess(self, images: tf.Tensor) -> tf.Tensor:
        """Decoded RGB images (one or a batch, any size, uint8 or float) -> this backbone's input.

        The full frame resized bilinearly to ``input_size`` (no crop), float32 in [0, 255], as the
        scoring workers prepare frames; it works eagerly and inside ``tf.data``.
        """
        return tf.image.resize(images, (self.input_size, self.input_size), method="bilinear", antialias=True)


def _efficientnet_lite0(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
    model = build_efficientnet_lite0(input_shape, include_top=False, pooling="avg")
    if weights is not None:
        model.load_weights(weights)
    return model


def _keras_application(constructor: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
    def build(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
        # [0, 255] -> [-1, 1]: preprocess_input's "tf" mode, which MobileNetV2 and InceptionV3 share.
        # Passing the rescaled tensor keeps the model flat (no nested sub-model), so fine-tuning can
        # unfreeze its top layers directly; the layer has no weights, so Keras' weight files still fit.
        pixels = keras.Input(shape=input_shape, name="image")
        rescaled = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescaling")(pixels)
        return constructor(
            input_shape=input_shape, input_tensor=rescaled, include_top=False, weights=weights, pooling="avg"
        )

    return build


BACKBONES: dict[str, Backbone] = {
    backbone.name: backbone
    for backbone in (
        Backbone("efficientnet_lite0", 224, _efficientnet_lite0),
        Backbone(
            "mobilenet_v2", 224, _keras_application(keras.applications.MobileNetV2),
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        ),
        Backbone(
            "inception_v3", 299, _keras_application(keras.applications.InceptionV3),
            "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
    )
}


def keras_models_dir() -> Path:
    """Where ``keras.utils.get_file`` caches ``keras.applications`` weights."""
    return Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser() / "models"


def build_backbone(
    name: str, weights: Weights = "imagenet"
) -> tuple[keras.Model, int, Callable[[tf.Tensor], tf.Tensor]]:
    """Build backbone ``name`` as ``(feature_extractor, input_size, preprocess_fn)``.

    ``weights`` is ``"imagenet"``, ``None`` (random initialisation) or the path of a weights file for this
    feature extractor. ``"imagenet"`` uses the offline port for ``efficientnet_lite0`` and the Keras
    cache for the others, falling back to random initialisation when the cache has no file.
    ``preprocess_fn`` is ``Backbone.preprocess``: resizing only, the normalisation is inside the model.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    backbone = BACKBONES[name]
    input_shape = (backbone.input_size, backbone.input_size, 3)
    if weights != "imagenet":
        model = backbone.build(input_shape, None if weights is None else os.fspath(weights))
    elif backbone.keras_cache_file is None:
        model = load_imagenet_weights(backbone.build(input_shape, None))
    else:
        cached = keras_models_dir() / backbone.keras_cache_file
        if not cached.is_file():
            log.warning("no ImageNet weights for %s at %s: starting from random initialisation", name, cached)
        model = backbone.build(input_shape, os.fspath(cached) if cached.is_file() else None)
    return model, backbone.input_size, backbone.preprocess
