"""Prometheus metrics of the training service (`wastex trainer`), served at `/metrics` on 127.0.0.1 port
WASTEX_TRAINER_METRICS_PORT (6068) while WASTEX_METRICS is on. One-off commands (`wastex train`) serve nothing.

- `wastex_trainer_runs_total{status}`: runs that ended, by the status their row ends with (completed, failed),
  counted when it is recorded. A run a killed trainer left `running` is counted failed by the trainer that marks it
  so at its next start.
- `wastex_trainer_running`: 1 while a run trains on this trainer, else 0.
- `wastex_trainer_epoch`: the running run's latest finished epoch, within its phase (head, then fine-tune, which
  counts from 1 again); 0 while no run trains.
- `wastex_trainer_epoch_metric{metric}`: that epoch's loss, accuracy, val_loss and val_accuracy; NaN while no
  run trains (a series that is always there, without a value, rather than one that comes and goes).
- `wastex_trainer_run_seconds`: how long the runs this trainer ran took, from their start to their recorded end.

Labels are fixed sets: a run id or dataset version never is one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from infra.scrape_targets import register_scrape_target
from infra.settings import Settings
from training_job.run_store import COMPLETED, FAILED

log = logging.getLogger(__name__)
RUN_STATUSES = (COMPLETED, FAILED)
EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")  # what Keras logs for the compiled model
# A tiny test run takes seconds, a full one on a CPU up to a few hours (WASTEX_TRAINER_MINUTES bounds training).
RUN_SECONDS_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800)
LOOPBACK = "127.0.0.1"


class TrainerMetrics:
    """The trainer's metrics, registered in `registry`; the service reports its runs' steps to it."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.runs = Counter("wastex_trainer_runs_total", "Training runs that ended, by status.", ["status"],
                            registry=registry)
        for status in RUN_STATUSES:  # from 0 on, so the first failure shows in increase()
            self.runs.labels(status)
        self.running = Gauge("wastex_trainer_running", "1 while a training run trains.", registry=registry)
        self.epoch = Gauge("wastex_trainer_epoch", "The running run's latest finished epoch within its phase.",
                           registry=registry)
        self.epoch_metric = Gauge("wastex_trainer_epoch_metric", "The running run's latest epoch metrics.",
                                  ["metric"], registry=registry)
        self._no_epoch_metrics()
        self.run_seconds = Histogram("wastex_trainer_run_seconds", "Duration of training runs.",
                                     buckets=RUN_SECONDS_BUCKETS, registry=registry)

    def run_started(self) -> None:
        self.running.set(1)
        self.epoch.set(0)

    def epoch_ended(self, record: Mapping[str, Any]) -> None:
        """An epoch record of the training loop (phase, epoch, epochs, elapsed_s and Keras' logs)."""
        self.epoch.set(record["epoch"])
        for name in EPOCH_METRICS:
            if isinstance(record.get(name), int | float):
                self.epoch_metric.labels(name).set(record[name])

    def run_left(self) -> None:
        """The run's thread is done with it (whatever became of the run)."""
        self.running.set(0)
        self.epoch.set(0)
        self._no_epoch_metrics()

    def _no_epoch_metrics(self) -> None:
        for name in EPOCH_METRICS:
            self.epoch_metric.labels(name).set(math.nan)

    def run_ended(self, status: str, started_at: datetime | None) -> None:
        """The run's final status (one of RUN_STATUSES) is recorded; `started_at` None for a run another trainer
        ran (its duration would include the time no trainer ran)."""
        self.runs.labels(status).inc()
        if started_at is not None:
            self.run_seconds.observe(max(0.0, (datetime.now(UTC) - started_at).total_seconds()))


def serve_trainer_metrics(settings: Settings) -> TrainerMetrics | None:
    """The metrics of this process's trainer, served and announced to Prometheus; None while metrics are off, or
    when the port is taken (the trainer then trains without metrics rather than not at all)."""
    if not settings.metrics_enabled:
        return None
    try:
        start_http_server(settings.trainer_metrics_port, addr=LOOPBACK, registry=REGISTRY)
    except OSError as error:
        # A second trainer (waiting for the first one's lock) or another deployment's trainer holds the port.
        log.warning("cannot serve metrics on %s:%d (%s); this trainer runs without them "
                    "(set WASTEX_TRAINER_METRICS_PORT)", LOOPBACK, settings.trainer_metrics_port, error.strerror)
        return None
    metrics = TrainerMetrics(REGISTRY)
    register_scrape_target(settings, "trainer", "trainer", settings.trainer_metrics_port, LOOPBACK)
    log.info("metrics on http://%s:%d/metrics", LOOPBACK, settings.trainer_metrics_port)
    return metrics
