"""Logits of a classifier for images given by path or URI, batched through tf.data."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from training_job.callbacks import stderr_console
from training_job.dataset_source import ImageLoader, ImageReader
from training_job.input_pipeline import frame_preprocessor, images

PREDICT_BATCH_SIZE = 32


def predict_logits(model: keras.Model, uris: Sequence[str], loader: ImageLoader | None = None,
                   batch_size: int = PREDICT_BATCH_SIZE, description: str = "predicting",
                   console: Console = stderr_console) -> np.ndarray:
    """(images, classes) logits of ``model`` on the plain (unaugmented) frames of ``uris``, in order."""
    if not uris:
        raise ValueError("no images to predict")
    preprocess = frame_preprocessor(int(model.input_shape[1]))
    batches = (images(uris, loader or ImageReader()).map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
               .batch(batch_size).prefetch(tf.data.AUTOTUNE))
    # A compiled call: model.predict would rebuild its predict function on every invocation.
    step = tf.function(lambda pixels: model(pixels, training=False), reduce_retracing=True)
    logits = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=int(batches.cardinality()))
        for pixels in batches:
            logits.append(np.asarray(step(pixels)))
            progress.advance(task)
    return np.concatenate(logits)
