"""Training runs in PostgreSQL: one row per attempt at a DatasetVersionCreated.

Updates of a run's progress and outcome apply only while it is `running`, so a run already marked failed
(interrupted) cannot be revived by a late write from the thread that trained it.

A run that failed because a store was unreachable (a passing failure: its error starts with PASSING) gets a row
like any other but does not use up one of the request's attempts: only the other failures count.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import sessionmaker

from infra.db.models import TrainingRun

RUNNING, COMPLETED, FAILED = "running", "completed", "failed"
INTERRUPTED = "interrupted"
PASSING = "passing failure: "  # the error of a run that failed because a store was unreachable
LOG_LINES_KEPT = 500
ID_LENGTH = 64


class RunStoreError(LookupError):
    """No such run."""


def run_id_for(dataset_version: str, attempt: int) -> str:
    """`run-<version>-<attempt>`, shortened with a digest of the version name when it would not fit 64 chars."""
    run_id = f"run-{dataset_version}-{attempt}"
    if len(run_id) <= ID_LENGTH:
        return run_id
    digest = hashlib.sha256(dataset_version.encode()).hexdigest()[:10]
    suffix = f"-{digest}-{attempt}"
    return f"run-{dataset_version[:ID_LENGTH - 4 - len(suffix)]}{suffix}"


class RunStore:
    def __init__(self, sessions: sessionmaker) -> None:
        self._sessions = sessions

    def get(self, run_id: str) -> TrainingRun:
        with self._sessions() as session:
            run = session.scalars(select(TrainingRun).where(TrainingRun.run_id == run_id)).one_or_none()
        if run is None:
            raise RunStoreError(f"no training run {run_id!r}")
        return run

    def runs(self, dataset_version: str | None = None) -> list[TrainingRun]:
        """Every run (of one dataset version), oldest first."""
        query = select(TrainingRun).order_by(TrainingRun.id)
        if dataset_version is not None:
            query = query.where(TrainingRun.dataset_version == dataset_version)
        with self._sessions() as session:
            return list(session.scalars(query))

    def settled(self, dataset_version: str) -> TrainingRun | None:
        """The run that ended the version's request: a completed run, or a failure not to be retried."""
        with self._sessions() as session:
            return session.scalars(
                select(TrainingRun).where(TrainingRun.dataset_version == dataset_version)
                .where((TrainingRun.status == COMPLETED)
                       | ((TrainingRun.status == FAILED) & TrainingRun.retryable.is_(False)))
                .order_by(TrainingRun.id).limit(1)).one_or_none()

    def attempts_used(self, dataset_version: str) -> int:
        """How many of the version's runs failed for a reason that counts (not a passing failure)."""
        with self._sessions() as session:
            return session.scalar(select(func.count(TrainingRun.id)).where(
                TrainingRun.dataset_version == dataset_version, TrainingRun.status == FAILED,
                ~func.coalesce(TrainingRun.error, "").startswith(PASSING, autoescape=True))) or 0

    def start(self, dataset_version: str, request_event_id: str, config: dict[str, Any]) -> TrainingRun:
        """A new `running` attempt at the version's request (the next attempt number)."""
        with self._sessions.begin() as session:
            attempt = 1 + session.scalar(select(func.coalesce(func.max(TrainingRun.attempt), 0))
                                         .where(TrainingRun.dataset_version == dataset_version))
            run = TrainingRun(run_id=run_id_for(dataset_version, attempt), dataset_version=dataset_version,
                              request_event_id=request_event_id, attempt=attempt, status=RUNNING, config=config,
                              timings={}, log=[], started_at=datetime.now(UTC))
            session.add(run)
        return run

    def fail_interrupted(self, max_attempts: int) -> list[TrainingRun]:
        """Mark every `running` run failed: its trainer died (that counts as an attempt). Retryable unless the
        attempts are used up."""
        with self._sessions.begin() as session:
            runs = list(session.scalars(select(TrainingRun).where(TrainingRun.status == RUNNING)
                                        .order_by(TrainingRun.id).with_for_update()))
            for run in runs:
                run.status, run.error = FAILED, INTERRUPTED
                run.retryable = self.attempts_used(run.dataset_version) + 1 < max_attempts
                run.finished_at = datetime.now(UTC)
                run.log = [*run.log, _line(f"{INTERRUPTED}: the trainer stopped during the run")][-LOG_LINES_KEPT:]
        return runs

    def _update_running(self, run_id: str, **values: Any) -> bool:
        with self._sessions.begin() as session:
            result = session.execute(update(TrainingRun)
                                     .where(TrainingRun.run_id == run_id, TrainingRun.status == RUNNING)
                                     .values(**values))
            return result.rowcount == 1

    def log(self, run_id: str, message: str, progress: dict[str, Any] | None = None) -> bool:
        """Append a timestamped line to the run's log (and set its latest progress record)."""
        with self._sessions.begin() as session:
            run = session.scalars(select(TrainingRun).where(TrainingRun.run_id == run_id,
                                                            TrainingRun.status == RUNNING)
                                  .with_for_update()).one_or_none()
            if run is None:
                return False
            run.log = [*run.log, _line(message)][-LOG_LINES_KEPT:]
            if progress is not None:
                run.progress = progress
            return True

    def set_timings(self, run_id: str, timings: dict[str, float]) -> bool:
        return self._update_running(run_id, timings=timings)

    def complete(self, run_id: str, *, metrics: dict[str, Any], baseline: dict[str, Any] | None,
                 recommendation: str, reason: str, per_class_deltas: dict[str, Any], model_version: str,
                 artefact_uri: str, promoted: bool, timings: dict[str, float]) -> bool:
        return self._update_running(run_id, status=COMPLETED, finished_at=datetime.now(UTC), metrics=metrics,
                                    baseline=baseline, recommendation=recommendation, reason=reason,
                                    per_class_deltas=per_class_deltas, model_version=model_version,
                                    artefact_uri=artefact_uri, promoted=promoted, timings=timings)

    def fail(self, run_id: str, error: str, retryable: bool) -> bool:
        self.log(run_id, f"failed: {error}")
        return self._update_running(run_id, status=FAILED, finished_at=datetime.now(UTC), error=error,
                                    retryable=retryable)


def _line(message: str) -> str:
    return f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {message}"
