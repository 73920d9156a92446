"""The events of a training run on `training.runs`. Ids derive from the run and the step, so an event sent
again (a retry of a flush) carries the id consumers already saw."""

from __future__ import annotations

import uuid
from typing import Any

from schemas.codec import new_event
from schemas.events import Event, EventType

SOURCE = "training_job"
_EVENT_IDS = uuid.UUID("5d0c7a52-93f1-4c1e-8a57-2f6b1d9e4c31")
_ERROR_LIMIT = 4000  # TrainingRunFailed payload.error maxLength


def _event(event_type: EventType, run_id: str, step: str, payload: dict[str, Any]) -> Event:
    return new_event(event_type, {"run_id": run_id, **payload}, SOURCE,
                     event_id=str(uuid.uuid5(_EVENT_IDS, f"{run_id}:{step}")))


def numbers(values: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of a record, as the metrics of an event (booleans and text left out)."""
    return {name: float(value) for name, value in values.items()
            if isinstance(value, int | float) and not isinstance(value, bool)}


def started(run_id: str, dataset_version: str, config: dict[str, Any]) -> Event:
    return _event(EventType.TRAINING_RUN_STARTED, run_id, "started",
                  {"dataset_version": dataset_version, "config": config})


def progressed(run_id: str, dataset_version: str, record: dict[str, Any]) -> Event:
    """One epoch record of the trainer (phase, epoch, epochs, elapsed_s and Keras' logs)."""
    phase = str(record["phase"]).replace("-", "_")
    epoch, epochs = int(record["epoch"]), int(record["epochs"])
    metrics = numbers({k: v for k, v in record.items() if k not in ("phase", "epoch", "epochs")})
    return _event(EventType.TRAINING_RUN_PROGRESSED, run_id, f"progress:{phase}:{epoch}",
                  {"dataset_version": dataset_version, "phase": phase, "epoch": epoch,
                   "epochs": max(epochs, epoch), "metrics": metrics})


def completed(run_id: str, dataset_version: str, *, model_version: str, artefact_uri: str,
              metrics: dict[str, float], baseline: dict[str, Any] | None, recommendation: str, reason: str,
              per_class_deltas: dict[str, dict[str, float]]) -> Event:
    return _event(EventType.TRAINING_RUN_COMPLETED, run_id, "completed", {
        "dataset_version": dataset_version, "model_version": model_version, "artefact_uri": artefact_uri,
        "metrics": metrics, "baseline": baseline, "recommendation": recommendation, "reason": reason[:2000],
        "per_class_deltas": per_class_deltas})


def failed(run_id: str, dataset_version: str, error: str, retryable: bool) -> Event:
    return _event(EventType.TRAINING_RUN_FAILED, run_id, "failed", {
        "dataset_version": dataset_version, "error": (error or "failed")[:_ERROR_LIMIT], "retryable": retryable})
