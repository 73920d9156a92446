"""The training service (`wastex trainer`): each DatasetVersionCreated becomes a training run.

- The `dataset.versions` topic is the queue: one request at a time, its offset committed only once the run
  ended (completed, or failed for good). A run trains on its own thread while the consumer, its partitions
  paused, keeps polling so the group keeps it.
- A restart never loses a request: runs still `running` from a killed trainer are marked failed
  ("interrupted", retryable while attempts remain) and the redelivered request starts the next attempt.
  A request whose version already has a completed run (or a failure not to be retried) is skipped.
- A run or request that fails because a store was unreachable (MinIO, Kafka, PostgreSQL: `is_transient`) is
  tried again with capped backoff (up to WASTEX_RETRY_MAX_DELAY_S) as long as it takes: such a run is recorded as
  a passing failure and does not use up an attempt. Another failure is tried again after
  WASTEX_TRAINER_RETRY_DELAY_S, up to WASTEX_TRAINER_MAX_ATTEMPTS counted attempts; a bad dataset fails for good,
  and so does one the trainer must not read: a manifest outside the datasets bucket, or a row that is not a stored
  image of the images bucket (`schemas.dataset_manifest.stored_image_key`).
  Recording a run's outcome waits for PostgreSQL, so an outage never loses a request.
- Records that are not a DatasetVersionCreated go to the dead letters; the trainer carries on.
- One trainer works at a time: it holds a PostgreSQL advisory lock, a second one waits for it.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import keras
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from infra.clients import db_sessions, kafka_consumer
from infra.db.models import ModelVersion, TrainingRun
from infra.db.registry import production_model
from infra.publisher import EventPublisher
from infra.retry import Backoff, is_transient, retry_transient
from infra.settings import Settings
from schemas.codec import InvalidEvent, dead_letter_event, decode_event
from schemas.events import Event, EventType
from schemas.topics import DATASET_VERSIONS
from training_job import run_events
from training_job.candidate_run import CandidateRun, run_config
from training_job.run_store import COMPLETED, FAILED, INTERRUPTED, PASSING, RunStore
from training_job.trainer_metrics import TrainerMetrics

log = logging.getLogger(__name__)
SOURCE = run_events.SOURCE
LOCK_KEY = 0x7761737465787472  # "wastextr": the advisory lock of the one working trainer
POLL_S = 0.5
STOP_GRACE_S = 60.0  # how long a stopping trainer waits for a run that has ended to finish reporting
_DEAD_LETTER_IDS = uuid.UUID("a3c5e2d1-7b64-4f0e-9d2a-1e8f6c4b7a90")
T = TypeVar("T")


class Outcome(Enum):
    COMPLETED = "completed"
    FAILED = "failed"  # for good: the request is done with
    RETRY = "retry"  # run the request again, after WASTEX_TRAINER_RETRY_DELAY_S
    WAIT = "wait"  # a store was unreachable: run the request again after a capped backoff, no attempt used
    SKIPPED = "skipped"  # settled by an earlier run
    STOPPED = "stopped"  # the trainer is stopping mid-run


def is_permanent(error: BaseException) -> bool:
    """Errors that another attempt would meet again: a bad dataset or manifest, a refused model."""
    return isinstance(error, ValueError | LookupError | TypeError) and not is_transient(error)


def may_retry(error: BaseException, attempts_used: int, max_attempts: int) -> bool:
    """Whether a run that failed with `error` is tried again; `attempts_used`: the counted failures before it.

    A passing failure always is, and uses up nothing; any other, unless permanent, while attempts remain.
    """
    if is_transient(error):
        return True
    return not is_permanent(error) and attempts_used + 1 < max_attempts


@contextmanager
def paused(consumer: Consumer) -> Iterator[None]:
    """The consumer's partitions paused for the block: polls keep the group membership and read nothing."""
    assignment = consumer.assignment()
    consumer.pause(assignment)
    try:
        yield
    finally:
        try:
            consumer.resume(assignment)
        except KafkaException as error:  # revoked meanwhile: the next owner reads them
            log.warning("could not resume %s: %s", assignment, error)


@contextmanager
def exclusive_lock(settings: Settings, stop: threading.Event, wait_s: float = 2.0) -> Iterator[bool]:
    """Holds the trainers' advisory lock for the block (True), or yields False if stopped while waiting.

    The lock lives with its connection: a killed trainer's lock goes with it.
    """
    engine = create_engine(settings.database_url, poolclass=NullPool)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            waiting = False
            while not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}).scalar_one():
                if not waiting:
                    log.info("another trainer is working on this database; waiting for it to stop")
                    waiting = True
                if stop.wait(wait_s):
                    yield False
                    return
            yield True
    finally:
        engine.dispose()


class TrainerService:
    def __init__(self, settings: Settings, stop: threading.Event | None = None,
                 metrics: TrainerMetrics | None = None) -> None:
        self.settings = settings
        self.stop = stop or threading.Event()
        self.metrics = metrics  # None: nothing recorded (metrics off, or not this process's service)
        self.store = RunStore(db_sessions(settings))
        self.publisher = EventPublisher(settings)
        self.topic = DATASET_VERSIONS.full_name(settings.topic_prefix)
        self.abandoned: threading.Thread | None = None  # a run's thread still training after a stop
        self._request_backoff = self._backoff()  # between tries of a request that met a passing failure

    def _backoff(self) -> Backoff:
        return Backoff(first_s=1.0, cap_s=self.settings.retry_max_delay_s)

    def _waiting_out(self, work: Callable[[], T], what: str) -> T:
        """`work`, waiting out passing failures; raises InterruptedError once the trainer stops."""
        return retry_transient(work, what=what, stop=self.stop, backoff=self._backoff())

    def serve(self) -> None:
        """Consume requests until ``stop`` is set; while PostgreSQL or Kafka is unreachable, wait for it."""
        try:
            self._waiting_out(self._serve, "trainer (PostgreSQL, Kafka)")
        except InterruptedError:
            return

    def _serve(self) -> None:
        with exclusive_lock(self.settings, self.stop) as held:
            if not held:
                return
            self.recover()
            consumer = kafka_consumer(self.settings, f"{self.settings.topic_prefix}trainer",
                                      **{"session.timeout.ms": 10_000, "heartbeat.interval.ms": 3_000})
            consumer.subscribe([self.topic])
            log.info("trainer consuming %s", self.topic)
            try:
                while not self.stop.is_set():
                    message = consumer.poll(1.0)
                    if message is None:
                        continue
                    if message.error():
                        log.warning("consumer error: %s", message.error())
                        continue
                    self.handle(consumer, message)
            finally:
                consumer.close()

    def recover(self) -> list[TrainingRun]:
        """Runs a killed trainer left `running` become failed ("interrupted"); their requests come again."""
        runs = self.store.fail_interrupted(self.settings.trainer_max_attempts)
        for run in runs:
            log.warning("run %s was interrupted (attempt %d, retryable %s)", run.run_id, run.attempt, run.retryable)
            if self.metrics is not None:
                self.metrics.run_ended(FAILED, None)
            shutil.rmtree(self._work_root() / run.run_id, ignore_errors=True)  # what the killed run left
        self._publish(*(run_events.failed(run.run_id, run.dataset_version, INTERRUPTED, bool(run.retryable))
                        for run in runs))
        return runs

    def handle(self, consumer: Consumer, message: Message) -> Outcome:
        """One record of the topic: dead-lettered, skipped, or run; its offset committed unless retried."""
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        try:
            event = self._decode(message)
        except InvalidEvent as error:
            log.warning("dead-lettering %s:%s:%s: %s", topic, partition, offset, error)
            self._dead_letter(message, error)
            self._commit(consumer, message)
            return Outcome.FAILED
        try:
            outcome = self._request(consumer, event)
        except InterruptedError:  # stopped while waiting for a store: the request comes again at the next start
            return Outcome.STOPPED
        except Exception as error:  # the stores failed around the run: the request comes again
            outcome = Outcome.WAIT if is_transient(error) else Outcome.RETRY
            log.warning("request %s of %s failed (%s: %s); trying again", event.event_id,
                        event.payload["version_name"], type(error).__name__, error,
                        exc_info=outcome is Outcome.RETRY)
        if outcome is Outcome.STOPPED:
            return outcome
        if outcome in (Outcome.RETRY, Outcome.WAIT):
            delay = (self._request_backoff.next_delay() if outcome is Outcome.WAIT
                     else self.settings.trainer_retry_delay_s)
            log.info("trying %s again in %.1f s", event.payload["version_name"], delay)
            with paused(consumer):
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline and not self.stop.is_set():
                    consumer.poll(POLL_S)
            self._seek(consumer, TopicPartition(topic, partition, offset))
            return outcome
        self._request_backoff.reset()
        self._commit(consumer, message)
        self._seek(consumer, TopicPartition(topic, partition, offset + 1))
        return outcome

    def _decode(self, message: Message) -> Event:
        event = decode_event(message.value() or b"")
        if event.event_type is not EventType.DATASET_VERSION_CREATED:
            raise InvalidEvent(f"{event.event_type} does not belong on {message.topic()}", path="event_type")
        return event

    def _request(self, consumer: Consumer, event: Event) -> Outcome:
        version = event.payload["version_name"]
        settled = self.store.settled(version)
        if settled is not None:
            log.info("skipping %s: run %s %s already", version, settled.run_id, settled.status)
            return Outcome.SKIPPED
        production = production_model(self.settings)
        config = run_config(self.settings, production)
        run = self.store.start(version, event.event_id, config)
        log.info("run %s: attempt %d on %s", run.run_id, run.attempt, version)
        self._publish(run_events.started(run.run_id, version, config))
        return self._run(consumer, run, event.payload["manifest"], production)

    def _run(self, consumer: Consumer, run: TrainingRun, manifest: dict[str, Any],
             production: ModelVersion | None) -> Outcome:
        """The run on its own thread; the consumer keeps polling (its partitions paused) until it ends."""
        result: list[Outcome] = []
        thread = threading.Thread(target=self._execute, args=(run, manifest, production, result),
                                  name=f"run-{run.run_id}", daemon=True)
        with paused(consumer):
            thread.start()
            while thread.is_alive():
                if self.stop.is_set():
                    try:
                        ended_here = self._fail(run, None) is not None
                    except InterruptedError:  # PostgreSQL is down: the next start marks the run interrupted
                        ended_here = True
                    if ended_here:
                        self.abandoned = thread
                        return Outcome.STOPPED
                    thread.join(STOP_GRACE_S)  # the run had ended: let it finish reporting, then commit
                    break
                consumer.poll(POLL_S)  # nothing to read while paused: this keeps the membership
        return result[0] if result else Outcome.RETRY

    def _execute(self, run: TrainingRun, manifest: dict[str, Any], production: ModelVersion | None,
                 result: list[Outcome]) -> None:
        work = self._work_root() / run.run_id
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        if self.metrics is not None:
            self.metrics.run_started()
        try:
            candidate = CandidateRun(self.settings, run.run_id, work, partial(self._log, run),
                                     partial(self._progress, run))
            outcome = candidate.execute(manifest, production)
        except Exception as error:
            log.exception("run %s failed", run.run_id)
            try:
                retryable = self._fail(run, error)
            except InterruptedError:  # the trainer stops while PostgreSQL is down: the run stays for `recover`
                return
            if is_transient(error):
                result.append(Outcome.WAIT)
            else:
                result.append(Outcome.RETRY if retryable else Outcome.FAILED)
            return
        else:
            try:
                self._complete(run, outcome)
            except InterruptedError:
                return
            log.info("run %s completed: %s", run.run_id, outcome.verdict.reason)
            result.append(Outcome.COMPLETED)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            keras.backend.clear_session()  # each run builds new models: free the last one's
            if self.metrics is not None:
                self.metrics.run_left()

    def _complete(self, run: TrainingRun, outcome: Any) -> None:
        """Record the completed run (waiting for PostgreSQL: the trained candidate is not thrown away)."""
        comparison = outcome.comparison
        recorded = self._waiting_out(lambda: self.store.complete(
            run.run_id, metrics=outcome.metrics, baseline=outcome.baseline_document(),
            recommendation=str(outcome.verdict.recommendation), reason=outcome.verdict.reason,
            per_class_deltas=comparison.deltas, model_version=outcome.model_version,
            artefact_uri=outcome.artefact_uri, promoted=outcome.promoted, timings=outcome.timings),
            f"recording run {run.run_id} (PostgreSQL)")
        if recorded:
            if self.metrics is not None:
                self.metrics.run_ended(COMPLETED, run.started_at)
            self._publish(run_events.completed(
                run.run_id, run.dataset_version, model_version=outcome.model_version,
                artefact_uri=outcome.artefact_uri, metrics=outcome.headline_metrics(),
                baseline=outcome.baseline_event(), recommendation=str(outcome.verdict.recommendation),
                reason=outcome.verdict.reason, per_class_deltas=comparison.deltas))

    def _work_root(self) -> Path:
        """Where runs keep their files while they train (removed after the run); run ids are unique per database."""
        return self.settings.state_dir / "trainer" / self.settings.postgres_db

    def _fail(self, run: TrainingRun, error: BaseException | None) -> bool | None:
        """Record the run failed with `error` (None: interrupted by a stop), then TrainingRunFailed.

        Waits for PostgreSQL (raises InterruptedError if the trainer stops meanwhile). Returns whether the
        request runs again, or None if the run had ended already. A passing failure is recorded as such
        (its error starts with PASSING) and uses up no attempt.
        """
        if error is None:
            text = INTERRUPTED
        else:
            text = f"{PASSING if is_transient(error) else ''}{type(error).__name__}: {error}"

        def record() -> bool | None:
            used = self.store.attempts_used(run.dataset_version)
            retryable = (used + 1 < self.settings.trainer_max_attempts if error is None
                         else may_retry(error, used, self.settings.trainer_max_attempts))
            return retryable if self.store.fail(run.run_id, text, retryable) else None

        retryable = self._waiting_out(record, f"recording the failure of run {run.run_id} (PostgreSQL)")
        if retryable is not None:
            if self.metrics is not None:
                self.metrics.run_ended(FAILED, run.started_at)
            self._publish(run_events.failed(run.run_id, run.dataset_version, text, retryable))
        return retryable

    def _publish(self, *events: Event) -> None:
        """Publish and wait for the acknowledgements, waiting out a Kafka outage."""
        def send() -> None:
            for event in events:
                self.publisher.publish(event)
            self.publisher.flush()

        if events:
            self._waiting_out(send, "trainer events (Kafka)")

    def _log(self, run: TrainingRun, line: str) -> None:
        """A line of the run's log; with PostgreSQL down the row misses the line (the process log has it), the run
        goes on."""
        log.info("%s: %s", run.run_id, line)
        try:
            self.store.log(run.run_id, line)
        except Exception as error:
            if not is_transient(error):
                raise
            log.warning("could not record a log line of run %s: %s", run.run_id, error)

    def _progress(self, run: TrainingRun, record: dict[str, Any]) -> None:
        """One epoch ended: the metrics, the run row and TrainingRunProgressed. A failure here never stops the
        training."""
        figures = " ".join(f"{name} {value:.4f}" for name, value in run_events.numbers(record).items()
                           if name not in ("epoch", "epochs", "elapsed_s"))
        try:
            if self.metrics is not None:
                self.metrics.epoch_ended(record)
            self.store.log(run.run_id, f"{record['phase']} epoch {record['epoch']}/{record['epochs']}: {figures}",
                           progress=record)
            self.publisher.publish(run_events.progressed(run.run_id, run.dataset_version, record))
        except Exception:
            log.warning("could not report the progress of run %s", run.run_id, exc_info=True)

    def _dead_letter(self, message: Message, error: InvalidEvent) -> None:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        self._publish(dead_letter_event(message.value() or b"", error, topic=topic, partition=partition,
                                        offset=offset, key=message.key(), service=SOURCE,
                                        event_id=str(uuid.uuid5(_DEAD_LETTER_IDS, f"{topic}:{partition}:{offset}"))))

    @staticmethod
    def _commit(consumer: Consumer, message: Message) -> None:
        try:
            consumer.commit(message=message, asynchronous=False)
        except KafkaException as error:  # the partition moved on: its next owner skips a settled request
            log.warning("could not commit %s:%s: %s", message.topic(), message.offset(), error)

    @staticmethod
    def _seek(consumer: Consumer, position: TopicPartition) -> None:
        try:
            consumer.seek(position)
        except KafkaException as error:
            log.warning("could not seek to %s: %s", position, error)
