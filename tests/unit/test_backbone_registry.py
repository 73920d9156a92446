"""Backbones are selectable by name and never reach for the network."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pytest

from training_job.backbones.imagenet_weights import checkpoint_path, read_legacy_torch_state_dict
from training_job.backbones.registry import BACKBONES, build_backbone

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("WASTEX_CACHE_DIR", str(tmp_path / "wastex"))


@pytest.mark.parametrize(
    ("name", "size", "normalise"),
    [
        ("efficientnet_lite0", 224, lambda x: (x - 127.0) / 128.0),
        ("mobilenet_v2", 224, keras.applications.mobilenet_v2.preprocess_input),
        ("inception_v3", 299, keras.applications.inception_v3.preprocess_input),
    ],
)
def test_random_backbones_take_pixels_and_give_one_vector_per_image(
    name: str, size: int, normalise: Callable[[np.ndarray], np.ndarray]
) -> None:
    model, input_size, preprocess_fn = build_backbone(name, weights=None)
    assert input_size == size and model.input_shape == (None, size, size, 3)
    pixels = np.arange(256, dtype=np.float32)
    np.testing.assert_allclose(model.get_layer("rescaling")(pixels), normalise(pixels.copy()), atol=1e-6)
    frames = preprocess_fn(np.full((2, 300, 451, 3), 255, dtype=np.uint8))
    assert frames.shape == (2, size, size, 3) and frames.dtype == "float32"
    features = model.predict(frames, verbose=0)
    assert features.shape == (2, model.output_shape[-1]) and np.isfinite(features).all()


def test_imagenet_without_a_cached_file_falls_back_to_random(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        model, _, _ = build_backbone("mobilenet_v2", weights="imagenet")
    assert "random initialisation" in caplog.text
    assert model.output_shape == (None, 1280)


def test_keras_cache_and_explicit_paths_are_used(tmp_path: Path) -> None:
    source, _, _ = build_backbone("mobilenet_v2", weights=None)
    cached = tmp_path / "keras" / "models" / BACKBONES["mobilenet_v2"].keras_cache_file
    cached.parent.mkdir(parents=True)
    source.save(cached)  # legacy HDF5, the format of the files keras.applications downloads
    for weights in ("imagenet", cached):
        loaded, _, _ = build_backbone("mobilenet_v2", weights=weights)
        for expected, actual in zip(source.get_weights()[:3], loaded.get_weights()[:3], strict=True):
            np.testing.assert_array_equal(expected, actual)


def test_unknown_backbone_names_the_choices() -> None:
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        build_backbone("resnet50")


def test_efficientnet_gets_the_ported_weights_or_a_given_file(tmp_path: Path) -> None:
    ported, _, _ = build_backbone("efficientnet_lite0")
    state = read_legacy_torch_state_dict(checkpoint_path())
    np.testing.assert_array_equal(ported.get_layer("head_bn").gamma.numpy(), state["_bn1.weight"])
    path = tmp_path / "features.weights.h5"
    ported.save_weights(path)
    reloaded, _, _ = build_backbone("efficientnet_lite0", weights=path)
    np.testing.assert_array_equal(reloaded.get_layer("block15_dwconv").kernel.numpy(),
                                  ported.get_layer("block15_dwconv").kernel.numpy())
