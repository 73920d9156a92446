"""The per-epoch callback of the training loop: the trainer's progress comes from it, not from logs."""

from __future__ import annotations

import time

import keras
import numpy as np

from training_job.callbacks import EpochLog, StopAtDeadline


def test_each_epoch_record_is_logged_and_handed_over_with_the_planned_epochs() -> None:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history: list[dict] = []
    seen: list[dict] = []
    inputs, labels = np.random.default_rng(0).normal(size=(8, 3)), np.array([0, 1] * 4)
    model.fit(inputs, labels, validation_data=(inputs, labels), epochs=3, verbose=0,
              callbacks=[EpochLog("fine-tune", history, time.monotonic(), seen.append)])
    assert [record["epoch"] for record in seen] == [1, 2, 3]
    assert all(record["epochs"] == 3 and record["phase"] == "fine-tune" for record in seen)
    assert {"loss", "val_loss", "elapsed_s"} <= seen[-1].keys()
    assert history == [{k: v for k, v in record.items() if k != "epochs"} for record in seen]


def test_a_passed_deadline_still_lets_the_minimum_epochs_run_and_then_stops() -> None:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    inputs, labels = np.random.default_rng(0).normal(size=(32, 3)), np.array([0, 1] * 16)
    late = StopAtDeadline(time.monotonic() - 1, min_epochs=3)
    history = model.fit(inputs, labels, batch_size=4, epochs=10, verbose=0, callbacks=[late])
    assert len(history.history["loss"]) == 3 and late.stopped
    on_time = StopAtDeadline(time.monotonic() + 3600, min_epochs=3)
    history = model.fit(inputs, labels, batch_size=4, epochs=5, verbose=0, callbacks=[on_time])
    assert len(history.history["loss"]) == 5 and not on_time.stopped
