"""The classifier model: growing its head for new classes, and cutting it for the two training phases."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from schemas.model_artefact import ArtefactInfo, write_artefact_info
from training_job.artefacts import CONFIG_FILE
from training_job.classifier import build_classifier, grow_head, head_layer, split_classifier
from training_job.dataset_source import Dataset
from training_job.trainer import TrainConfig, initial_model

SIX = ["cardboard", "glass", "metal", "paper", "plastic", "trash"]


@pytest.fixture(scope="module")
def six_class_model() -> keras.Model:
    model = build_classifier("efficientnet_lite0", len(SIX), weights=None, seed=1)
    kernel, bias = head_layer(model).get_weights()
    rng = np.random.default_rng(0)  # as after training: no row is at its initial value
    head_layer(model).set_weights([rng.normal(size=kernel.shape).astype("float32"),
                                   rng.normal(size=bias.shape).astype("float32")])
    return model


def test_a_seventh_class_keeps_the_six_head_rows(six_class_model: keras.Model, tmp_path: Path) -> None:
    folder = tmp_path / "six"
    folder.mkdir()
    six_class_model.save(folder / "model.keras")
    write_artefact_info(folder, ArtefactInfo(SIX, -5.0, 0.6))
    (folder / CONFIG_FILE).write_text(json.dumps({"training": {"backbone": "efficientnet_lite0"}}))
    # The new class sorts first by name, yet goes last: known classes keep their logit positions.
    dataset = Dataset(sorted([*SIX, "Food Organics"]), [], "seven classes")

    model, classes, _ = initial_model(dataset, TrainConfig(), from_model=folder)

    assert classes == [*SIX, "Food Organics"]
    old_kernel, old_bias = head_layer(six_class_model).get_weights()
    kernel, bias = head_layer(model).get_weights()
    assert kernel.shape == (1280, 7) and bias.shape == (7,)
    np.testing.assert_array_equal(kernel[:, :6], old_kernel)
    np.testing.assert_array_equal(bias[:6], old_bias)
    assert np.isfinite(kernel[:, 6]).all() and np.abs(kernel[:, 6]).sum() > 0 and bias[6] == 0.0
    np.testing.assert_array_equal(model.get_layer("block15_project_conv").kernel.numpy(),
                                  six_class_model.get_layer("block15_project_conv").kernel.numpy())


def test_the_head_grows_but_never_shrinks(six_class_model: keras.Model) -> None:
    assert grow_head(six_class_model, 6) is six_class_model
    with pytest.raises(ValueError, match="cannot shrink from 6 to 5"):
        grow_head(six_class_model, 5)


@pytest.mark.parametrize("trainable_blocks", [0, 3])
def test_the_parts_compose_to_the_whole_model(six_class_model: keras.Model, trainable_blocks: int) -> None:
    parts = split_classifier(six_class_model, trainable_blocks)
    pixels = np.random.default_rng(0).uniform(0, 255, size=(2, 224, 224, 3)).astype("float32")
    activations, features = parts.frozen(pixels, training=False)
    expected = np.asarray(six_class_model(pixels, training=False))
    np.testing.assert_allclose(np.asarray(parts.top(activations, training=False)), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(parts.head(features, training=False)), expected, rtol=1e-5, atol=1e-5)

    trainable = {layer.name for layer in six_class_model.layers if layer.trainable and layer.weights}
    first_trainable = 16 - trainable_blocks  # EfficientNet-Lite0 has blocks 0..15
    assert "logits" in trainable and "head_conv" in trainable
    assert {f"block{index}_project_conv" for index in range(first_trainable, 16)} <= trainable
    assert f"block{first_trainable - 1}_project_conv" not in trainable
    assert not any(name.endswith("_bn") for name in trainable)  # batch norm keeps its statistics


def test_cutting_too_deep_is_refused(six_class_model: keras.Model) -> None:
    with pytest.raises(ValueError, match=r"trainable_blocks must lie in \[0, 15\]"):
        split_classifier(six_class_model, 16)


@pytest.mark.parametrize(("backbone", "blocks"), [("mobilenet_v2", 16), ("inception_v3", 11)])
def test_the_other_backbones_cut_at_their_blocks(backbone: str, blocks: int, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # random weights, whatever the Keras cache holds
    model = build_classifier(backbone, 4, weights=None)
    parts = split_classifier(model, 2)
    size = model.input_shape[1]
    pixels = np.random.default_rng(0).uniform(0, 255, size=(2, size, size, 3)).astype("float32")
    activations, _ = parts.frozen(pixels, training=False)
    np.testing.assert_allclose(np.asarray(parts.top(activations, training=False)),
                               np.asarray(model(pixels, training=False)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=rf"\[0, {blocks - 1}\]"):
        split_classifier(model, blocks)
