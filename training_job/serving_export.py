"""LiteRT export of a `.keras` model, kept only when it agrees with Keras on a sample batch."""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from schemas.model_artefact import KERAS_FILE, SERVING_FILE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportReport:
    exported: bool
    max_logit_diff: float
    same_top_class: bool
    detail: str


def sample_batch(input_size: int, count: int = 8, seed: int = 0) -> np.ndarray:
    """Pixels in the model's input range with enough structure to separate classes."""
    rng = np.random.default_rng(seed)
    smooth = rng.uniform(0, 255, size=(count, 8, 8, 3))
    return np.kron(smooth, np.ones((1, input_size // 8 + 1, input_size // 8 + 1, 1)))[
        :, :input_size, :input_size].astype(np.float32)


def export_litert(folder: Path, sample: np.ndarray | None = None, tolerance: float = 1e-3) -> ExportReport:
    """Write `model.tflite` beside `model.keras` if the two give the same top class and logits within
    `tolerance` (relative to the logit range); otherwise remove it, so serving falls back to Keras."""
    import keras
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    model = keras.models.load_model(folder / KERAS_FILE, compile=False)
    target = folder / SERVING_FILE
    sample = sample if sample is not None else sample_batch(int(model.input_shape[1]))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the converter prints every traced tensor
            target.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
        interpreter = Interpreter(model_path=str(target))
        entry, exit_ = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        interpreter.resize_tensor_input(entry["index"], list(sample.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(entry["index"], sample)
        interpreter.invoke()
        lite = interpreter.get_tensor(exit_["index"])
    except Exception as error:
        target.unlink(missing_ok=True)
        log.warning("LiteRT export failed (%s); the Keras model will be served", error)
        return ExportReport(False, float("nan"), False, f"export failed: {error}")
    reference = np.asarray(model(sample, training=False))
    diff = float(np.abs(lite - reference).max())
    scale = max(1.0, float(np.ptp(reference)))
    same_top = bool((lite.argmax(axis=1) == reference.argmax(axis=1)).all())
    if same_top and diff <= tolerance * scale:
        return ExportReport(True, diff, same_top, f"LiteRT matches Keras (max logit diff {diff:.2e})")
    target.unlink(missing_ok=True)
    log.warning("LiteRT export disagrees with Keras (max diff %.3g, same top class %s); serving Keras", diff,
                same_top)
    return ExportReport(False, diff, same_top, "LiteRT output differs from Keras")
