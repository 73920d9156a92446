"""Outputs of the frozen part of the classifier, computed once per image view and kept in memory.

The frozen layers never change during training, so running them on every epoch would repeat the same
work: instead each training image passes through them a few times (one plain view, then augmented views)
and both training phases read the cached outputs. Most of the compute of the network is below the cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from training_job.callbacks import stderr_console


@dataclass(frozen=True)
class CachedOutputs:
    activations: np.ndarray  # (images, h, w, c) at the cut, float16 to halve the memory
    features: np.ndarray  # (images, d) pooled features, float32
    labels: np.ndarray  # (images,) class indices

    @staticmethod
    def concatenate(parts: list[CachedOutputs]) -> CachedOutputs:
        return CachedOutputs(np.concatenate([part.activations for part in parts]),
                             np.concatenate([part.features for part in parts]),
                             np.concatenate([part.labels for part in parts]))


class FrozenOutputs:
    """Runs ``frozen`` (frames -> [cut activations, pooled features]) over batches of (frames, labels)."""

    def __init__(self, frozen: keras.Model, console: Console = stderr_console) -> None:
        self.console = console
        self._step = tf.function(lambda pixels: frozen(pixels, training=False), reduce_retracing=True)

    def run(self, batches: tf.data.Dataset, description: str) -> CachedOutputs:
        activations, features, labels = [], [], []
        steps = int(batches.cardinality())
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task(description, total=steps if steps >= 0 else None)
            for pixels, label in batches:
                cut, pooled = self._step(pixels)
                activations.append(cut.numpy().astype(np.float16))
                features.append(pooled.numpy())
                labels.append(label.numpy())
                progress.advance(task)
        return CachedOutputs(np.concatenate(activations), np.concatenate(features), np.concatenate(labels))
