"""The model as the scoring worker runs it: LiteRT (XNNPACK) when an export exists, else Keras."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from schemas.model_artefact import KERAS_FILE, SERVING_FILE

log = logging.getLogger(__name__)


class LiteRTModel:
    """A LiteRT interpreter whose input is resized only when the batch size changes."""

    runtime = "litert"

    def __init__(self, path: Path, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self.input_size = int(self._input["shape"][1])
        self._batch = 0

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        if pixels.shape[0] != self._batch:
            self._interpreter.resize_tensor_input(self._input["index"], [pixels.shape[0], *pixels.shape[1:]])
            self._interpreter.allocate_tensors()
            self._batch = pixels.shape[0]
        self._interpreter.set_tensor(self._input["index"], pixels.astype(np.float32, copy=False))
        self._interpreter.invoke()
        return np.array(self._interpreter.get_tensor(self._output["index"]))


class KerasModel:
    """The `.keras` file itself, compiled once into a graph function (faster than `predict`)."""

    runtime = "keras"

    def __init__(self, path: Path) -> None:
        import keras
        import tensorflow as tf

        self._model = keras.models.load_model(path, compile=False)
        self._call = tf.function(lambda x: self._model(x, training=False), reduce_retracing=True)
        self.input_size = int(self._model.input_shape[1])

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        return np.asarray(self._call(pixels.astype(np.float32, copy=False)))


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
