"""The trainer's Prometheus metrics: run outcomes by status, the running run's epoch and metrics, run durations."""

from __future__ import annotations

import math
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from infra.db.models import TrainingRun
from infra.settings import Settings, load_settings
from training_job import service as service_module
from training_job import trainer_metrics
from training_job.run_store import COMPLETED, FAILED, INTERRUPTED
from training_job.service import TrainerService
from training_job.trainer_metrics import TrainerMetrics

pytestmark = pytest.mark.unit

HEAD_EPOCH = {"phase": "head", "epoch": 2, "epochs": 5, "elapsed_s": 3.2, "loss": 0.61, "accuracy": 0.7,
              "val_loss": 0.55, "val_accuracy": 0.8, "learning_rate": 0.001}


@pytest.fixture()
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture()
def metrics(registry: CollectorRegistry) -> TrainerMetrics:
    return TrainerMetrics(registry)


def test_trainer_run_outcomes_are_counted_by_status_from_zero(registry: CollectorRegistry,
                                                             metrics: TrainerMetrics) -> None:
    assert registry.get_sample_value("wastex_trainer_runs_total", {"status": FAILED}) == 0
    metrics.run_ended(COMPLETED, datetime.now(UTC) - timedelta(minutes=3))
    metrics.run_ended(FAILED, datetime.now(UTC) - timedelta(seconds=20))
    metrics.run_ended(COMPLETED, datetime.now(UTC) - timedelta(hours=2))
    assert registry.get_sample_value("wastex_trainer_runs_total", {"status": COMPLETED}) == 2
    assert registry.get_sample_value("wastex_trainer_runs_total", {"status": FAILED}) == 1
    assert registry.get_sample_value("wastex_trainer_run_seconds_count") == 3
    assert registry.get_sample_value("wastex_trainer_run_seconds_bucket", {"le": "30.0"}) == 1
    assert registry.get_sample_value("wastex_trainer_run_seconds_bucket", {"le": "3600.0"}) == 2
    assert registry.get_sample_value("wastex_trainer_run_seconds_bucket", {"le": "7200.0"}) == 2
    assert registry.get_sample_value("wastex_trainer_run_seconds_bucket", {"le": "14400.0"}) == 3


def test_a_run_another_trainer_ran_is_counted_without_a_duration(registry: CollectorRegistry,
                                                                metrics: TrainerMetrics) -> None:
    metrics.run_ended(FAILED, None)
    assert registry.get_sample_value("wastex_trainer_runs_total", {"status": FAILED}) == 1
    assert registry.get_sample_value("wastex_trainer_run_seconds_count") == 0


def test_the_running_runs_epoch_and_its_metrics_show_while_it_trains_and_leave_with_it(
        registry: CollectorRegistry, metrics: TrainerMetrics) -> None:
    assert registry.get_sample_value("wastex_trainer_running") == 0
    assert math.isnan(registry.get_sample_value("wastex_trainer_epoch_metric", {"metric": "loss"}))  # no run yet
    metrics.run_started()
    assert registry.get_sample_value("wastex_trainer_running") == 1
    assert registry.get_sample_value("wastex_trainer_epoch") == 0
    metrics.epoch_ended(HEAD_EPOCH)
    assert registry.get_sample_value("wastex_trainer_epoch") == 2
    shown = {sample.labels["metric"]: sample.value for family in registry.collect()
             if family.name == "wastex_trainer_epoch_metric" for sample in family.samples}
    assert shown == {"loss": 0.61, "accuracy": 0.7, "val_loss": 0.55, "val_accuracy": 0.8}  # a fixed set of names

    metrics.run_left()
    assert registry.get_sample_value("wastex_trainer_running") == 0
    assert registry.get_sample_value("wastex_trainer_epoch") == 0
    assert math.isnan(registry.get_sample_value("wastex_trainer_epoch_metric", {"metric": "val_accuracy"}))


class KeptEvents:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def publish(self, event: Any) -> None:
        self.events.append(event)

    def flush(self, timeout_s: float = 30.0) -> None:
        pass


class RunsInMemory:
    """The RunStore calls the service makes around a failure, a recovery and an epoch."""

    def __init__(self, interrupted: list[TrainingRun]) -> None:
        self.interrupted = interrupted
        self.lines: list[str] = []

    def fail_interrupted(self, max_attempts: int) -> list[TrainingRun]:
        return self.interrupted

    def attempts_used(self, dataset_version: str) -> int:
        return 0

    def fail(self, run_id: str, error: str, retryable: bool) -> bool:
        return True

    def log(self, run_id: str, message: str, progress: dict[str, Any] | None = None) -> bool:
        self.lines.append(message)
        return True


def _run(run_id: str, started_at: datetime | None = None) -> TrainingRun:
    return TrainingRun(run_id=run_id, dataset_version="v1", attempt=1, retryable=True,
                       started_at=started_at or datetime.now(UTC))


@pytest.fixture()
def trainer_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    monkeypatch.setenv("WASTEX_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("WASTEX_METRICS", raising=False)
    return load_settings()


def _service(settings: Settings, metrics: TrainerMetrics | None, store: RunsInMemory,
             monkeypatch: pytest.MonkeyPatch) -> TrainerService:
    monkeypatch.setattr(service_module, "EventPublisher", lambda settings: KeptEvents())
    service = TrainerService(settings, metrics=metrics)
    service.store = store  # type: ignore[assignment]
    return service


def test_the_service_counts_a_failed_run_its_duration_and_the_runs_a_killed_trainer_left(
        trainer_settings: Settings, registry: CollectorRegistry, metrics: TrainerMetrics,
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = RunsInMemory(interrupted=[_run("run-v0-1"), _run("run-v0-2")])
    service = _service(trainer_settings, metrics, store, monkeypatch)

    assert len(service.recover()) == 2
    assert registry.get_sample_value("wastex_trainer_runs_total", {"status": FAILED}) == 2
    assert registry.get_sample_value("wastex_trainer_run_seconds_count") == 0

    service._progress(_run("run-v1-1"), HEAD_EPOCH)
    assert registry.get_sample_value("wastex_trainer_epoch") == 2
    assert registry.get_sample_value("wastex_trainer_epoch_metric", {"metric": "val_loss"}) == 0.55

    assert service._fail(_run("run-v1-1", datetime.now(UTC) - timedelta(minutes=2)), RuntimeError("oom")) is True
    assert registry.get_sample_value("wastex_trainer_runs_total", {"status": FAILED}) == 3
    assert registry.get_sample_value("wastex_trainer_runs_total", {"status": COMPLETED}) == 0
    assert registry.get_sample_value("wastex_trainer_run_seconds_bucket", {"le": "60.0"}) == 0
    assert registry.get_sample_value("wastex_trainer_run_seconds_bucket", {"le": "120.0"}) == 0
    assert registry.get_sample_value("wastex_trainer_run_seconds_bucket", {"le": "300.0"}) == 1


def test_a_service_without_metrics_records_nothing_and_still_reports(
        trainer_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RunsInMemory(interrupted=[])
    service = _service(trainer_settings, None, store, monkeypatch)
    service._progress(_run("run-v1-1"), HEAD_EPOCH)
    assert service._fail(_run("run-v1-1"), None) is True  # stopped mid-run: recorded as interrupted
    assert store.lines == ["head epoch 2/5: loss 0.6100 accuracy 0.7000 val_loss 0.5500 val_accuracy 0.8000 "
                           "learning_rate 0.0010"]
    assert service.publisher.events[-1].payload["error"] == INTERRUPTED  # type: ignore[attr-defined]


def test_with_metrics_off_the_trainer_serves_no_metrics(trainer_settings: Settings,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASTEX_METRICS", "0")
    assert trainer_metrics.serve_trainer_metrics(load_settings()) is None


def test_a_taken_metrics_port_leaves_the_trainer_training_without_metrics(
        trainer_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("WASTEX_TRAINER_METRICS_PORT", str(taken.getsockname()[1]))
        settings = load_settings()
        assert trainer_metrics.serve_trainer_metrics(settings) is None
    assert not (settings.state_dir / "prometheus" / "targets").exists()  # nothing announced to Prometheus
