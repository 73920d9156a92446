"""Keras callbacks of the training run: a progress display, the per-epoch log and the time budget.

Progress goes to stderr (rich), so commands that print JSON keep stdout clean.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import keras
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

stderr_console = Console(stderr=True)

# Called after every epoch with its record plus "epochs", the planned epochs of the phase.
EpochCallback = Callable[[dict[str, Any]], None]


def _format(logs: dict[str, Any]) -> str:
    return " ".join(f"{name} {value:.4f}" for name, value in logs.items() if isinstance(value, int | float))


class FitProgress(keras.callbacks.Callback):
    """A bar per epoch while it runs, then one line with the epoch's metrics."""

    def __init__(self, phase: str, console: Console = stderr_console) -> None:
        super().__init__()
        self.phase = phase
        self.console = console
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[metrics]}"), console=console,
                                 transient=True)
        self.task: Any = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.progress.start()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.task = self.progress.add_task(f"{self.phase} epoch {epoch + 1}/{self.params['epochs']}",
                                           total=self.params.get("steps"), metrics="")

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.progress.update(self.task, advance=1, metrics=_format(logs or {}))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.progress.remove_task(self.task)
        self.console.print(f"{self.phase} epoch {epoch + 1}: {_format(logs or {})}")

    def on_train_end(self, logs: dict | None = None) -> None:
        self.progress.stop()


class EpochLog(keras.callbacks.Callback):
    """Appends one record per epoch to ``records``: phase, epoch, seconds since the run began, metrics;
    and hands it to ``on_epoch``, if given, with the phase's planned epochs."""

    def __init__(self, phase: str, records: list[dict[str, Any]], started: float,
                 on_epoch: EpochCallback | None = None) -> None:
        super().__init__()
        self.phase = phase
        self.records = records
        self.started = started
        self.on_epoch = on_epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = {name: float(value) for name, value in (logs or {}).items() if isinstance(value, int | float)}
        record = {"phase": self.phase, "epoch": epoch + 1, "elapsed_s": round(time.monotonic() - self.started, 2),
                  **metrics}
        self.records.append(record)
        if self.on_epoch is not None:
            self.on_epoch({**record, "epochs": int(self.params.get("epochs") or epoch + 1)})


class StopAtDeadline(keras.callbacks.Callback):
    """Stops training after the batch during which ``deadline`` (time.monotonic()) passed, but not before
    ``min_epochs`` epochs ended: a phase that costs seconds an epoch still learns when caching ate the budget."""

    def __init__(self, deadline: float | None, min_epochs: int = 0) -> None:
        super().__init__()
        self.deadline = math.inf if deadline is None else deadline
        self.min_epochs = min_epochs
        self.stopped = False
        self._epochs_ended = 0

    def _stop_if_late(self) -> None:
        if self._epochs_ended >= self.min_epochs and time.monotonic() >= self.deadline:
            self.stopped = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._epochs_ended += 1
        self._stop_if_late()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._stop_if_late()


class BudgetedCosineDecay(keras.callbacks.Callback):
    """Cosine decay of the learning rate from ``initial`` to 0 over ``total_steps`` batches, or until
    ``deadline`` (time.monotonic()) if that comes first, so a run cut short by its budget still anneals."""

    def __init__(self, initial: float, total_steps: int, deadline: float | None) -> None:
        super().__init__()
        self.initial = initial
        self.total_steps = max(1, total_steps)
        self.deadline = deadline
        self.step = 0
        self.started = 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.started = time.monotonic()

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        progress = self.step / self.total_steps
        if self.deadline is not None:
            progress = max(progress, (time.monotonic() - self.started) / max(self.deadline - self.started, 1e-9))
        self.model.optimizer.learning_rate.assign(0.5 * self.initial * (1.0 + math.cos(math.pi * min(progress, 1.0))))
        self.step += 1
