"""The model as the scoring worker runs it: LiteRT (XNNPACK) when an export exists, else Keras.

Every runtime answers `scores(pixels) -> (logits, embeddings | None)` from one forward pass. The embeddings are
the model's penultimate features (what its last Dense layer reads); a LiteRT export made before they were
exported has only the logits output and serves without embeddings. A two-output export names its signature
outputs "logits" and "embedding" (training_job.serving_export), because LiteRT does not keep the output order.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from schemas.model_artefact import KERAS_FILE, SERVING_FILE

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)
LOGITS_OUTPUT = "logits"
EMBEDDING_OUTPUT = "embedding"


class LiteRTModel:
    """A LiteRT interpreter whose input is resized only when the batch size changes."""

    runtime = "litert"

    def __init__(self, path: Path, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self._input = self._interpreter.get_input_details()[0]
        outputs = self._interpreter.get_output_details()
        if len(outputs) == 1:
            self._logits, self._embedding = outputs[0]["index"], None
        else:
            named = self._interpreter.get_signature_runner().get_output_details()
            self._logits, self._embedding = named[LOGITS_OUTPUT]["index"], named[EMBEDDING_OUTPUT]["index"]
        self.input_size = int(self._input["shape"][1])
        self._batch = 0

    def scores(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if pixels.shape[0] != self._batch:
            self._interpreter.resize_tensor_input(self._input["index"], [pixels.shape[0], *pixels.shape[1:]])
            self._interpreter.allocate_tensors()
            self._batch = pixels.shape[0]
        self._interpreter.set_tensor(self._input["index"], pixels.astype(np.float32, copy=False))
        self._interpreter.invoke()
        logits = np.array(self._interpreter.get_tensor(self._logits))
        embeddings = None if self._embedding is None else np.array(self._interpreter.get_tensor(self._embedding))
        return logits, embeddings

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        return self.scores(pixels)[0]


def embedding_tensor(model: keras.Model) -> Any:
    """What the model's last Dense layer reads, or None when the model does not end in one Dense layer."""
    import keras

    head = model.layers[-1]
    return head.input if len(model.outputs) == 1 and isinstance(head, keras.layers.Dense) else None


class KerasModel:
    """The `.keras` file itself, compiled once into a graph function (faster than `predict`)."""

    runtime = "keras"

    def __init__(self, path: Path) -> None:
        import keras
        import tensorflow as tf

        model = keras.models.load_model(path, compile=False)
        features = embedding_tensor(model)
        outputs = {LOGITS_OUTPUT: model.output}
        if features is not None:
            outputs[EMBEDDING_OUTPUT] = features
        self._model = keras.Model(model.input, outputs)
        self._call = tf.function(lambda x: self._model(x, training=False), reduce_retracing=True)
        self.input_size = int(model.input_shape[1])

    def scores(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        outputs = self._call(pixels.astype(np.float32, copy=False))
        embeddings = outputs.get(EMBEDDING_OUTPUT)
        return np.asarray(outputs[LOGITS_OUTPUT]), None if embeddings is None else np.asarray(embeddings)

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        return self.scores(pixels)[0]


def load_serving_model(folder: Path, threads: int | None = None) -> LiteRTModel | KerasModel:
    """The fastest runtime the artefact folder allows; Keras with a warning when LiteRT is unavailable."""
    threads = threads or os.cpu_count() or 1
    serving = folder / SERVING_FILE
    if serving.exists():
        try:
            return LiteRTModel(serving, threads)
        except Exception as error:
            log.warning("LiteRT could not load %s (%s); serving the Keras model instead", serving, error)
    else:
        log.warning("no LiteRT export in %s; serving the Keras model (slower)", folder)
    return KerasModel(folder / KERAS_FILE)
