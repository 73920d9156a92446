"""A Keras model exported to LiteRT serves the same logits and embeddings on LiteRT and OpenVINO; without an
export, Keras serves; a runtime that cannot load falls back down the chain openvino -> litert -> keras."""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from infra.serving_runtimes import (
    BF16_TOLERANCE,
    CheckedBF16Model,
    KerasModel,
    LiteRTModel,
    OpenVINOModel,
    cpu_precisions,
    load_serving_model,
    openvino_unavailable,
)
from schemas.model_artefact import KERAS_FILE, SERVING_FILE, ArtefactInfo, write_artefact_info
from schemas.ood_scores import Thresholds, energy_score, near_a_decision
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
    for runtime in (LiteRTModel(artefact / SERVING_FILE, threads=1), KerasModel(artefact / KERAS_FILE),
                    OpenVINOModel(artefact / SERVING_FILE, threads=1)):
        logits, embeddings = runtime.scores(pixels)
        assert embeddings is not None and embeddings.shape == (3, 8)
        np.testing.assert_allclose(embeddings, expected, atol=1e-4)
        np.testing.assert_allclose(logits, runtime.logits(pixels), atol=1e-6)


def test_a_one_output_export_made_before_embeddings_still_serves_without_them(artefact: Path, tmp_path: Path
                                                                             ) -> None:
    import tensorflow as tf

    model = keras.models.load_model(artefact / KERAS_FILE, compile=False)
    (tmp_path / SERVING_FILE).write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    pixels = sample_batch(64, count=2, seed=9)
    for served in (LiteRTModel(tmp_path / SERVING_FILE, threads=1), OpenVINOModel(tmp_path / SERVING_FILE, threads=1)):
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


def test_openvino_f32_tells_logits_from_embeddings_by_name_when_their_shapes_are_equal(tmp_path: Path) -> None:
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(x))
    model = keras.Model(inputs, keras.layers.Dense(4)(x))  # 4 features, 4 classes: only the names differ
    model.save(tmp_path / KERAS_FILE)
    assert export_litert(tmp_path).with_embedding
    served = OpenVINOModel(tmp_path / SERVING_FILE, threads=1, precision="f32")
    assert served.runtime == "openvino-f32" and served.input_size == 32
    features = keras.Model(model.input, model.layers[-1].input)
    for batch in (5, 2, 32):  # the batch dimension is dynamic
        pixels = sample_batch(32, count=batch, seed=batch)
        logits, embeddings = served.scores(pixels)
        np.testing.assert_allclose(logits, np.asarray(model(pixels, training=False)), atol=1e-4)
        np.testing.assert_allclose(embeddings, np.asarray(features(pixels)), atol=1e-4)


def test_a_named_runtime_is_served_and_keras_can_be_asked_for_despite_an_export(artefact: Path) -> None:
    export_litert(artefact)
    served = load_serving_model(artefact, threads=1, runtime="openvino-f32")
    assert isinstance(served, OpenVINOModel) and served.runtime == "openvino-f32"
    assert isinstance(load_serving_model(artefact, threads=1, runtime="litert"), LiteRTModel)
    assert isinstance(load_serving_model(artefact, threads=1, runtime="keras"), KerasModel)
    with pytest.raises(ValueError, match="unknown serving runtime"):
        load_serving_model(artefact, threads=1, runtime="openvino-int8")


def test_checked_bf16_serves_f32s_scores_near_a_decision_and_bf16s_elsewhere(tmp_path: Path) -> None:
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, activation="relu")(x))
    # Large weights spread the logits far apart, as a trained head does: most top classes are then clear.
    head = keras.layers.Dense(4, kernel_initializer=keras.initializers.RandomNormal(stddev=30.0, seed=1))
    keras.Model(inputs, head(x)).save(tmp_path / KERAS_FILE)
    export_litert(tmp_path)
    pixels = sample_batch(32, count=32, seed=11)
    fast = OpenVINOModel(tmp_path / SERVING_FILE, threads=1, precision="bf16").scores(pixels)
    exact = OpenVINOModel(tmp_path / SERVING_FILE, threads=1, precision="f32").scores(pixels)
    # An energy threshold in the middle of the batch puts some images near the OOD decision and leaves others clear.
    thresholds = Thresholds(tau_energy=float(np.median(energy_score(fast[0]))), tau_softmax=0.0)
    near = near_a_decision(fast[0], thresholds, BF16_TOLERANCE)
    assert near.any() and not near.all()

    logits, embeddings = CheckedBF16Model(tmp_path / SERVING_FILE, threads=1, thresholds=thresholds).scores(pixels)
    np.testing.assert_allclose(logits[near], exact[0][near], atol=1e-6)
    np.testing.assert_allclose(logits[~near], fast[0][~near], atol=1e-6)
    np.testing.assert_allclose(embeddings[near], exact[1][near], atol=1e-6)
    np.testing.assert_allclose(embeddings[~near], fast[1][~near], atol=1e-6)


def test_checked_bf16_is_loaded_by_name_with_the_models_own_thresholds(artefact: Path) -> None:
    export_litert(artefact)
    write_artefact_info(artefact, ArtefactInfo(["a", "b", "c", "d"], tau_energy=-2.5, tau_softmax=0.4,
                                               drifting_camera=Thresholds(-3.0, 0.6)))
    served = load_serving_model(artefact, threads=1, runtime="openvino-bf16-checked")
    if openvino_unavailable("bf16") is not None:  # a CPU without bf16 falls back down the chain
        assert isinstance(served, LiteRTModel)
        return
    assert isinstance(served, CheckedBF16Model) and served.runtime == "openvino-bf16-checked"
    assert served._thresholds == Thresholds(tau_energy=-2.5, tau_softmax=0.4)  # the regular pair only


def test_openvino_falls_back_to_litert_when_it_cannot_be_imported(artefact: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    export_litert(artefact)
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` raise ImportError
    assert "cannot be imported" in (openvino_unavailable("f32") or "")
    served = load_serving_model(artefact, threads=1, runtime="openvino-f32")
    assert isinstance(served, LiteRTModel)
    assert "openvino-f32 cannot serve (openvino cannot be imported" in caplog.text


def test_openvino_falls_back_to_keras_when_there_is_no_export(artefact: Path, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / KERAS_FILE).write_bytes((artefact / KERAS_FILE).read_bytes())
    assert isinstance(load_serving_model(tmp_path, threads=1, runtime="openvino-f32"), KerasModel)
    assert "no LiteRT export" in caplog.text


AMD_AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\nprocessor\t: 1\nflags\t\t: fpu sse2 avx avx2 fma\n"
INTEL_AMX = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16 amx_int8\n"


def test_bf16_is_native_only_on_cpus_with_amx_or_avx512_bf16() -> None:
    assert cpu_precisions(INTEL_AMX).native == ("f32", "bf16")
    assert cpu_precisions(INTEL_AMX.replace(" amx_bf16", "")).native == ("f32", "bf16")  # avx512_bf16 alone
    without = cpu_precisions(AMD_AVX2)
    assert without.native == ("f32",) and "amx_bf16" in without.skipped["bf16"]
    assert openvino_unavailable("bf16", AMD_AVX2) == without.skipped["bf16"]
    assert openvino_unavailable("bf16", INTEL_AMX) is None and openvino_unavailable("f32", AMD_AVX2) is None
