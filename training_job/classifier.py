"""The waste classifier: a backbone, dropout and a Dense head emitting logits, in one flat Keras model.

Only built-in layers, so ``keras.models.load_model(path, compile=False)`` needs no custom objects, and the
model takes the artefact contract's frames (normalisation is the backbone's first layer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import keras

from training_job.backbones.registry import build_backbone

HEAD_LAYER = "logits"
HEAD_DROPOUT_LAYER = "head_dropout"

# The layer that ends each block of a backbone, as (name pattern, group with the block index).
# EfficientNet-Lite0 "block3_add"/"block0_project_bn", MobileNetV2 "block_7_add", InceptionV3 "mixed4".
_BLOCK_LAYER_PATTERNS = (re.compile(r"block(\d+)_"), re.compile(r"block_(\d+)_"), re.compile(r"mixed(\d+)$"))


def build_classifier(backbone: str, num_classes: int, weights: str | None = "imagenet", dropout: float = 0.2,
                     seed: int = 0) -> keras.Model:
    """Backbone ``backbone`` (see ``training_job.backbones.registry``) with a fresh ``num_classes`` head."""
    extractor, _, _ = build_backbone(backbone, weights)
    features = keras.layers.Dropout(dropout, name=HEAD_DROPOUT_LAYER)(extractor.output)
    logits = keras.layers.Dense(num_classes, kernel_initializer=keras.initializers.GlorotUniform(seed),
                                name=HEAD_LAYER)(features)
    # keras.applications models list their one input; a bare tensor keeps calls free of structure warnings.
    (pixels,) = extractor.inputs
    return keras.Model(pixels, logits, name=f"{backbone}_classifier")


def head_layer(model: keras.Model) -> keras.layers.Dense:
    head = model.layers[-1]
    if not isinstance(head, keras.layers.Dense):
        raise ValueError(f"the model must end in a Dense layer emitting logits, not {type(head).__name__}")
    return head


def grow_head(model: keras.Model, num_classes: int, seed: int = 0) -> keras.Model:
    """The model with a head for ``num_classes`` classes: the old classes keep their head rows (kernel
    columns and biases, in order), only the added classes start from a fresh initialisation."""
    head = head_layer(model)
    known = head.units
    if num_classes < known:
        raise ValueError(f"the head cannot shrink from {known} to {num_classes} classes")
    if num_classes == known:
        return model
    grown = keras.layers.Dense(num_classes, kernel_initializer=keras.initializers.GlorotUniform(seed),
                               name=head.name)
    outputs = grown(head.input)
    kernel, bias = grown.get_weights()
    old_kernel, old_bias = head.get_weights()
    kernel[:, :known], bias[:known] = old_kernel, old_bias
    grown.set_weights([kernel, bias])
    return keras.Model(model.input, outputs, name=model.name)


def block_outputs(model: keras.Model) -> list[str]:
    """Names of the layers that end each backbone block, first block first."""
    for pattern in _BLOCK_LAYER_PATTERNS:
        last_layer: dict[int, str] = {}
        for layer in model.layers:
            match = pattern.match(layer.name)
            if match:
                last_layer[int(match[1])] = layer.name
        if last_layer:
            return [last_layer[index] for index in sorted(last_layer)]
    raise ValueError(f"no backbone blocks recognised in model {model.name!r}")


@dataclass(frozen=True)
class ModelParts:
    """Views of one classifier cut after a backbone block; they share the classifier's layers and weights.

    ``frozen`` maps frames to (activations at the cut, pooled features): the part that never trains, so
    its outputs can be computed once and cached. ``top`` maps cut activations to logits (the unfrozen
    blocks and the head, fine-tuned in phase 2); ``head`` maps pooled features to logits (phase 1).
    """

    frozen: keras.Model
    top: keras.Model
    head: keras.Model
    trainable_blocks: int


def split_classifier(model: keras.Model, trainable_blocks: int) -> ModelParts:
    """Cut ``model`` so that its last ``trainable_blocks`` blocks (and the layers after them) can train.

    Batch normalisation stays frozen everywhere (inference statistics), as recommended for fine-tuning
    on a small dataset; every layer below the cut is frozen.
    """
    blocks = block_outputs(model)
    if not 0 <= trainable_blocks < len(blocks):
        raise ValueError(f"trainable_blocks must lie in [0, {len(blocks) - 1}], got {trainable_blocks}")
    cut = model.get_layer(blocks[len(blocks) - 1 - trainable_blocks]).output
    head = head_layer(model)
    dropout = model.layers[-2] if isinstance(model.layers[-2], keras.layers.Dropout) else None
    features = dropout.input if dropout is not None else head.input

    top = keras.Model(cut, model.output, name="top")
    frozen = keras.Model(model.input, [cut, features], name="frozen")
    pooled = keras.Input(shape=tuple(features.shape[1:]), name="pooled_features")
    head_model = keras.Model(pooled, head(dropout(pooled) if dropout is not None else pooled), name="head")

    model.trainable = True
    top_layers = {id(layer) for layer in top.layers}
    for layer in model.layers:
        layer.trainable = id(layer) in top_layers and not isinstance(layer, keras.layers.BatchNormalization)
    return ModelParts(frozen, top, head_model, trainable_blocks)

