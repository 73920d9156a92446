"""A Keras model exported to LiteRT serves the same logits and embeddings; without an export, Keras serves."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from schemas.model_artefact import KERAS_FILE, SERVING_FILE
from stream_apps.scoring.runtime import KerasModel, LiteRTModel, load_serving_model
from training_job.serving_export import export_litert, sample_batch


@pytest.fixture(scope="module")
def artefact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(4)(x)).save(folder / KERAS_FILE)
    return folder


def test_export_agrees_with_keras_and_is_served(artefact: Path) -> None:
    report = export_litert(artefact)
    assert report.exported and report.with_embedding and report.same_top_class and report.max_logit_diff < 1e-3
    served = load_serving_model(artefact, threads=1)
    assert isinstance(served, LiteRTModel) and served.input_size == 64

    reference = KerasModel(artefact / KERAS_FILE)
    for batch in (5, 2, 5):  # the interpreter is resized when the batch size changes
        pixels = sample_batch(64, count=batch, seed=batch)
        np.testing.assert_allclose(served.logits(pixels), reference.logits(pixels), atol=1e-4)


def test_without_an_export_keras_serves_with_a_warning(artefact: Path, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / KERAS_FILE).write_bytes((artefact / KERAS_FILE).read_bytes())
    served = load_serving_model(tmp_path)
    assert isinstance(served, KerasModel)
    assert "no LiteRT export" in caplog.text
    assert not (tmp_path / SERVING_FILE).exists()


def test_both_runtimes_return_the_penultimate_features_from_one_call(artefact: Path) -> None:
    export_litert(artefact)
    model = keras.models.load_model(artefact / KERAS_FILE, compile=False)
    features = keras.Model(model.input, model.layers[-1].input)
    pixels = sample_batch(64, count=3, seed=4)
    expected = np.asarray(features(pixels))
    for runtime in (LiteRTModel(artefact / SERVING_FILE, threads=1), KerasModel(artefact / KERAS_FILE)):
        logits, embeddings = runtime.scores(pixels)
        assert embeddings is not None and embeddings.shape == (3, 8)
        np.testing.assert_allclose(embeddings, expected, atol=1e-4)
        np.testing.assert_allclose(logits, runtime.logits(pixels), atol=1e-6)


def test_a_one_output_export_made_before_embeddings_still_serves_without_them(artefact: Path, tmp_path: Path
                                                                             ) -> None:
    import tensorflow as tf

    model = keras.models.load_model(artefact / KERAS_FILE, compile=False)
    (tmp_path / SERVING_FILE).write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    served = LiteRTModel(tmp_path / SERVING_FILE, threads=1)
    pixels = sample_batch(64, count=2, seed=9)
    logits, embeddings = served.scores(pixels)
    assert embeddings is None
    np.testing.assert_allclose(logits, np.asarray(model(pixels, training=False)), atol=1e-4)


def test_a_model_that_does_not_end_in_a_dense_layer_serves_without_embeddings(tmp_path: Path) -> None:
    inputs = keras.Input((16, 16, 3))
    keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs)).save(tmp_path / KERAS_FILE)
    report = export_litert(tmp_path)
    assert report.exported and not report.with_embedding
    for runtime in (LiteRTModel(tmp_path / SERVING_FILE, threads=1), KerasModel(tmp_path / KERAS_FILE)):
        logits, embeddings = runtime.scores(sample_batch(16, count=2))
        assert embeddings is None and logits.shape == (2, 3)
