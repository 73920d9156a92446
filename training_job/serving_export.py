"""LiteRT export of a `.keras` model, kept only when it agrees with Keras on a sample batch.

The export has two outputs, named "logits" and "embedding" in its signature (LiteRT does not keep the output
order): the embedding is what the model's last Dense layer reads, so one forward pass gives the scoring worker
both. A model that does not end in a Dense layer is exported with its logits alone.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from schemas.model_artefact import KERAS_FILE, SERVING_FILE

if TYPE_CHECKING:
    import keras
    from ai_edge_litert.interpreter import Interpreter

log = logging.getLogger(__name__)
LOGITS_OUTPUT = "logits"
EMBEDDING_OUTPUT = "embedding"


def serving_model(model: keras.Model) -> keras.Model:
    """`model` with its penultimate features as a second, named output when it ends in one Dense layer."""
    import keras

    head = model.layers[-1]
    outputs = {LOGITS_OUTPUT: model.output}
    if len(model.outputs) == 1 and isinstance(head, keras.layers.Dense):
        outputs[EMBEDDING_OUTPUT] = head.input
    return keras.Model(model.input, outputs, name=model.name)


def _lite_outputs(interpreter: Interpreter) -> tuple[int, int | None]:
    """The tensor indices of the logits and (when exported) the embedding."""
    outputs = interpreter.get_output_details()
    if len(outputs) == 1:
        return outputs[0]["index"], None
    named = interpreter.get_signature_runner().get_output_details()
    return named[LOGITS_OUTPUT]["index"], named[EMBEDDING_OUTPUT]["index"]


@dataclass(frozen=True)
class ExportReport:
    exported: bool
    max_logit_diff: float
    same_top_class: bool
    detail: str
    with_embedding: bool = False


def sample_batch(input_size: int, count: int = 8, seed: int = 0) -> np.ndarray:
    """Pixels in the model's input range with enough structure to separate classes."""
    rng = np.random.default_rng(seed)
    smooth = rng.uniform(0, 255, size=(count, 8, 8, 3))
    return np.kron(smooth, np.ones((1, input_size // 8 + 1, input_size // 8 + 1, 1)))[
        :, :input_size, :input_size].astype(np.float32)


def export_litert(folder: Path, sample: np.ndarray | None = None, tolerance: float = 1e-3) -> ExportReport:
    """Write `model.tflite` beside `model.keras` if the two give the same top class, and logits and embeddings
    within `tolerance` (relative to their range); otherwise remove it, so serving falls back to Keras."""
    import keras
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    model = serving_model(keras.models.load_model(folder / KERAS_FILE, compile=False))
    target = folder / SERVING_FILE
    sample = sample if sample is not None else sample_batch(int(model.input_shape[1]))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the converter prints every traced tensor
            target.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
        interpreter = Interpreter(model_path=str(target))
        entry = interpreter.get_input_details()[0]
        logits_index, embedding_index = _lite_outputs(interpreter)
        interpreter.resize_tensor_input(entry["index"], list(sample.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(entry["index"], sample)
        interpreter.invoke()
        lite = interpreter.get_tensor(logits_index)
        lite_embedding = None if embedding_index is None else interpreter.get_tensor(embedding_index)
    except Exception as error:
        target.unlink(missing_ok=True)
        log.warning("LiteRT export failed (%s); the Keras model will be served", error)
        return ExportReport(False, float("nan"), False, f"export failed: {error}")
    outputs = model(sample, training=False)
    reference = np.asarray(outputs[LOGITS_OUTPUT])
    diff = float(np.abs(lite - reference).max())
    scale = max(1.0, float(np.ptp(reference)))
    same_top = bool((lite.argmax(axis=1) == reference.argmax(axis=1)).all())
    embedding_agrees = True
    if lite_embedding is not None:
        expected = np.asarray(outputs[EMBEDDING_OUTPUT])
        embedding_diff = float(np.abs(lite_embedding - expected).max())
        embedding_agrees = embedding_diff <= tolerance * max(1.0, float(np.ptp(expected)))
    if same_top and diff <= tolerance * scale and embedding_agrees:
        return ExportReport(True, diff, same_top, f"LiteRT matches Keras (max logit diff {diff:.2e})",
                            with_embedding=lite_embedding is not None)
    target.unlink(missing_ok=True)
    log.warning("LiteRT export disagrees with Keras (max diff %.3g, same top class %s, embeddings agree %s); "
                "serving Keras", diff, same_top, embedding_agrees)
    return ExportReport(False, diff, same_top, "LiteRT output differs from Keras")
