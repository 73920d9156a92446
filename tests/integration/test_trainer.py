"""`wastex trainer` on the real services: DatasetVersionCreated -> run -> registered candidate -> promotion;
a trainer killed mid-run and started again retries the request instead of losing it."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from PIL import Image
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from infra.clients import db_sessions, minio_client
from infra.db.dataset_versions import VersionStore
from infra.db.models import ModelVersion, TrainingRun
from infra.db.registry import production_model
from infra.deployment import environment
from infra.kafka_security import confluent_config
from infra.publisher import EventPublisher
from infra.settings import Settings
from infra.topic_reader import TopicReader
from schemas.codec import encode, new_event
from schemas.events import Event, EventType
from schemas.model_artefact import THRESHOLDS_FILE
from schemas.topics import DATASET_VERSIONS
from stream_apps.builder.announcer import VersionAnnouncer
from stream_apps.builder.registration import SeedRegistrar
from stream_apps.builder.seed_folder import seed_images
from tests.outages import stopped
from training_job.run_store import PASSING, RunStore

WASTEX = str(Path(sys.executable).with_name("wastex"))
COLOURS = {"glass": (40, 200, 60), "metal": (150, 150, 170), "paper": (230, 220, 190)}
PER_SPLIT = {"train": 6, "val": 2, "test": 2}
# A tiny training: random initialisation (no ImageNet port to load), no augmented views, 2 + 1 epochs.
TINY = {"WASTEX_TRAINER_WEIGHTS": "none", "WASTEX_TRAINER_HEAD_EPOCHS": "2", "WASTEX_TRAINER_EPOCHS": "1",
        "WASTEX_TRAINER_AUGMENTED_VIEWS": "0", "WASTEX_TRAINER_BATCH_SIZE": "8",
        "WASTEX_TRAINER_TRAINABLE_BLOCKS": "1", "WASTEX_TRAINER_MINUTES": "0", "WASTEX_TRAINER_RETRY_DELAY_S": "1"}
RUN_FILES = {"model.keras", "classes.txt", "thresholds.json", "metrics.json", "confusion_matrix.png",
             "training_log.csv", "training_log.json", "config.json", "model_summary.txt", "comparison.json"}


class Trainer:
    """`wastex trainer` as a sub-process logging to a file."""

    def __init__(self, deployment: Settings, log_path: Path) -> None:
        self.log_path = log_path
        self.process = subprocess.Popen([WASTEX, "trainer"], stdin=subprocess.DEVNULL, stdout=log_path.open("ab"),
                                        stderr=subprocess.STDOUT,
                                        env=environment(deployment, WASTEX_HOME=str(deployment.state_dir), **TINY))

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.alive():
            self.process.send_signal(signum)
        return self.process.wait(60)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _wait_for(condition: Callable[[], object], trainer: Trainer, timeout_s: float = 300, what: str = "") -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        assert trainer.alive(), f"the trainer exited ({what})\n{trainer.tail()}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{trainer.tail()}")


def _seed_folder(root: Path, classes: list[str], seed: int) -> Path:
    """train/val/test folders of class folders; each image a noisy field of its class's colour."""
    rng = np.random.default_rng(seed)
    for name in classes:
        for split, count in PER_SPLIT.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                noise = rng.integers(-40, 41, size=(48, 64, 3))
                pixels = np.clip(np.array(COLOURS[name]) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


def _register(deployment: Settings, folder: Path, name: str) -> Event:
    """A seed version of the folder, announced as DatasetVersionCreated."""
    store = VersionStore(db_sessions(deployment))
    storage = minio_client(deployment)
    SeedRegistrar(storage, deployment.bucket_images, store).register(seed_images(folder, {}), name,
                                                                      created_by="test", notes="")
    return VersionAnnouncer(deployment, store, storage, EventPublisher(deployment)).announce(name)


def _committed(deployment: Settings) -> int:
    """The trainer group's committed offset on dataset.versions (one partition)."""
    consumer = Consumer({**confluent_config(deployment),
                         "group.id": f"{deployment.topic_prefix}trainer"})
    try:
        (position,) = consumer.committed([TopicPartition(DATASET_VERSIONS.full_name(deployment.topic_prefix), 0)],
                                         timeout=10)
        return position.offset
    finally:
        consumer.close()


def _runs(deployment: Settings, version: str) -> list[TrainingRun]:
    return RunStore(db_sessions(deployment)).runs(version)


def _events(deployment: Settings, topic: str, run_ids: set[str] | None = None) -> list[Event]:
    events = TopicReader.collect(deployment, 3, topic)[topic]
    return [e for e in events if run_ids is None or e.payload.get("run_id") in run_ids]


@dataclass
class FirstRun:
    run: TrainingRun
    exit_code: int
    committed: int


@pytest.fixture(scope="module")
def first_run(deployment: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstRun]:
    """Two bad records, then v1 (glass, metal) for a trainer with no production model; then v1 again."""
    work = tmp_path_factory.mktemp("trainer")
    topic = DATASET_VERSIONS.full_name(deployment.topic_prefix)
    producer = Producer(confluent_config(deployment))
    producer.produce(topic, key=b"junk", value=b"{not json")
    wrong = new_event(EventType.CREATE_VERSION_REQUESTED, {"request_id": "r-1", "requested_by": "alice",
                                                           "notes": "", "trigger": "manual"}, "test")
    producer.produce(topic, key=b"r-1", value=encode(wrong))
    producer.flush(10)
    created = _register(deployment, _seed_folder(work / "v1", ["glass", "metal"], seed=1), "v1")

    trainer = Trainer(deployment, work / "trainer-1.log")
    try:
        _wait_for(lambda: any(r.status == "completed" for r in _runs(deployment, "v1")), trainer, what="v1's run")
        publisher = EventPublisher(deployment)
        publisher.publish(created)  # the same request again (a replay): nothing new may happen
        publisher.flush()
        _wait_for(lambda: _committed(deployment) == 4, trainer, 60, "the replay to be committed")
        time.sleep(1)
    finally:
        exit_code = trainer.stop()
    (run,) = _runs(deployment, "v1")
    yield FirstRun(run, exit_code, _committed(deployment))


def test_a_new_version_trains_registers_and_auto_promotes_the_first_model(deployment: Settings,
                                                                          first_run: FirstRun) -> None:
    run = first_run.run
    assert first_run.exit_code == 0  # SIGTERM between runs: a clean stop
    assert (run.run_id, run.attempt, run.status, run.error) == ("run-v1-1", 1, "completed", None)
    assert run.model_version == run.run_id and run.artefact_uri == f"s3://{deployment.bucket_models}/{run.run_id}/model.keras"
    assert (run.recommendation, run.promoted, run.baseline, run.per_class_deltas) == ("promote", True, None, {})
    assert run.config["weights"] is None and run.config["head_epochs"] == 2 and run.config["production_model"] is None
    assert run.metrics["split"] == "test" and run.metrics["images"] == 2 * PER_SPLIT["test"]
    assert set(run.metrics["per_class_f1"]) == {"glass", "metal"}
    assert run.progress["phase"] == "fine-tune" and run.progress["epoch"] == 1
    assert any("pretrained backbone: no production model" in line for line in run.log)
    assert {"caching_s", "head_s", "finetune_s", "register_s", "total_s"} <= run.timings.keys()

    events = _events(deployment, "training.runs")
    kinds = [(e.event_type.value, e.payload.get("phase"), e.payload.get("epoch")) for e in events]
    assert kinds == [("TrainingRunStarted", None, None), ("TrainingRunProgressed", "head", 1),
                     ("TrainingRunProgressed", "head", 2), ("TrainingRunProgressed", "fine_tune", 1),
                     ("TrainingRunCompleted", None, None)]
    assert {"loss", "val_loss", "accuracy"} <= events[1].payload["metrics"].keys()
    completed = events[-1].payload
    assert completed["model_version"] == run.run_id and completed["recommendation"] == "promote"
    assert completed["metrics"]["macro_f1"] == pytest.approx(run.metrics["macro_f1"])

    (promoted,) = _events(deployment, "models.promoted")
    assert promoted.payload["model_version"] == run.run_id and promoted.payload["action"] == "auto-promote"
    assert promoted.payload["promoted_by"] == "trainer" and promoted.payload["previous_model_version"] is None
    assert promoted.payload["classes"] == ["glass", "metal"]
    assert promoted.payload["metrics"]["macro_f1"] == pytest.approx(run.metrics["macro_f1"])
    assert production_model(deployment).version == run.run_id

    stored = {o.object_name.removeprefix(f"{run.run_id}/")
              for o in minio_client(deployment).list_objects(deployment.bucket_models, prefix=f"{run.run_id}/",
                                                             recursive=True)}
    assert stored >= RUN_FILES

    # The two bad records went to the dead letters; the replayed request was skipped and committed.
    letters = _events(deployment, "dead-letters")
    assert sorted(e.payload["reason"] for e in letters) == ["malformed_event", "schema_invalid"]
    assert {e.payload["service"] for e in letters} == {"training_job"}
    assert first_run.committed == 4


def test_the_registered_model_carries_its_energy_reference_and_review_rate(deployment: Settings,
                                                                         first_run: FirstRun) -> None:
    run = first_run.run
    assert run.metrics["review_rate_target"] == deployment.review_rate == 0.05
    assert run.metrics["calibration_images"] == 2 * (PER_SPLIT["val"] + PER_SPLIT["train"])
    assert 0.0 <= run.metrics["ood_recall"] <= 1.0 and run.config["review_rate"] == 0.05

    with db_sessions(deployment)() as session:
        row = session.scalars(select(ModelVersion).where(ModelVersion.version == run.run_id)).one()
    assert len(row.energy_quantiles) == 101 and row.energy_quantiles == sorted(row.energy_quantiles)
    assert row.review_rate == pytest.approx(run.metrics["review_rate"])
    assert row.metrics["ood_recall"] == pytest.approx(run.metrics["ood_recall"])
    stored = minio_client(deployment).get_object(deployment.bucket_models, f"{run.run_id}/{THRESHOLDS_FILE}")
    try:
        assert json.loads(stored.read())["energy_quantiles"] == row.energy_quantiles  # what the workers load
    finally:
        stored.close()
        stored.release_conn()

    (completed,) = [e.payload for e in _events(deployment, "training.runs", {run.run_id})
                    if e.event_type is EventType.TRAINING_RUN_COMPLETED]
    assert completed["metrics"]["review_rate"] == pytest.approx(run.metrics["review_rate"])
    assert completed["metrics"]["calibration_images"] == run.metrics["calibration_images"]
    assert completed["metrics"]["ood_recall"] == pytest.approx(run.metrics["ood_recall"])


def test_the_registered_model_serves_on_the_runtime_measured_on_its_val_split(deployment: Settings,
                                                                              first_run: FirstRun) -> None:
    run = first_run.run
    with db_sessions(deployment)() as session:
        row = session.scalars(select(ModelVersion).where(ModelVersion.version == run.run_id)).one()
    check = row.runtime_check
    measured = {candidate["runtime"]: candidate for candidate in check["candidates"]}

    assert check["check_images"] == f"{2 * PER_SPLIT['val']} images of the val split"
    assert row.serving_runtime == check["chosen"] and measured[row.serving_runtime]["accepted"]
    assert {"litert", "keras"} <= measured.keys()
    assert any(f"serving runtime {row.serving_runtime} (measured on {check['check_images']})" in line
               for line in run.log)


def test_a_trainer_killed_mid_run_leaves_a_failed_attempt_and_the_restart_completes_the_request(
        deployment: Settings, first_run: FirstRun, tmp_path: Path) -> None:
    previous = first_run.run.run_id
    _register(deployment, _seed_folder(tmp_path / "v2", ["glass", "metal", "paper"], seed=2), "v2")

    trainer = Trainer(deployment, tmp_path / "trainer-2.log")
    try:
        _wait_for(lambda: any(r.progress for r in _runs(deployment, "v2")), trainer, what="v2's first epoch")
        assert trainer.stop(signal.SIGKILL) == -signal.SIGKILL
    finally:
        trainer.stop(signal.SIGKILL)
    (killed,) = _runs(deployment, "v2")
    assert killed.status == "running"  # nobody could record the kill

    restarted = Trainer(deployment, tmp_path / "trainer-3.log")
    try:
        _wait_for(lambda: any(r.status == "completed" for r in _runs(deployment, "v2")), restarted,
                  what="v2's second attempt")
    finally:
        assert restarted.stop() == 0
    first, second = _runs(deployment, "v2")
    assert (first.run_id, first.status, first.error, first.retryable) == ("run-v2-1", "failed", "interrupted", True)
    assert (second.run_id, second.attempt, second.status) == ("run-v2-2", 2, "completed")
    assert second.request_event_id == first.request_event_id

    events = _events(deployment, "training.runs", {first.run_id, second.run_id})
    failed = [e.payload for e in events if e.event_type is EventType.TRAINING_RUN_FAILED]
    assert failed == [{"run_id": "run-v2-1", "dataset_version": "v2", "error": "interrupted", "retryable": True}]
    second_events = [e.event_type for e in events if e.payload["run_id"] == second.run_id]
    assert second_events[0] is EventType.TRAINING_RUN_STARTED and second_events[-1] is EventType.TRAINING_RUN_COMPLETED

    # Fine-tuned from the production model, compared with it on the same test split (paper is new to it).
    assert second.config["production_model"] == previous
    assert any(f"fine-tuning production model {previous}" in line for line in second.log)
    assert second.baseline["model_version"] == previous
    assert second.baseline["metrics"]["classes"] == ["glass", "metal", "paper"]
    assert second.baseline["metrics"]["per_class_f1"]["paper"] == 0.0
    assert second.per_class_deltas["paper"]["f1"] == pytest.approx(second.metrics["per_class_f1"]["paper"])
    assert second.recommendation in {"promote", "keep", "review"} and second.reason
    expected = second.run_id if second.recommendation == "promote" else previous
    assert production_model(deployment).version == expected
    assert second.promoted == (second.recommendation == "promote")
    assert _committed(deployment) == 5


def _version_event(deployment: Settings, name: str, object_key: str, sha256: str) -> Event:
    return new_event(EventType.DATASET_VERSION_CREATED, {
        "request_id": f"request-{name}", "version_name": name, "version_id": 99, "parent": None,
        "manifest": {"bucket": deployment.bucket_datasets, "object_key": object_key, "sha256": sha256,
                     "format": "jsonl"},
        "stats": {"total": 1, "per_class": {"glass": 1}, "per_split": {"train": 1, "val": 0, "test": 0}},
        "classes": ["glass"], "new_classes": [], "created_by": "test", "notes": ""}, "test")


def test_failures_are_retried_up_to_the_limit_and_a_bad_manifest_fails_for_good(deployment: Settings,
                                                                                tmp_path: Path) -> None:
    data = b'{"image": "s3://x/y.png", "sha256": "' + b"a" * 64 + b'", "class": "glass"}\n'
    minio_client(deployment).put_object(deployment.bucket_datasets, "manifests/tampered.jsonl",
                                        io.BytesIO(data), len(data))
    start = _committed(deployment)
    publisher = EventPublisher(deployment)
    publisher.publish(_version_event(deployment, "ghost", "manifests/ghost.jsonl", "b" * 64))  # no such object
    publisher.publish(_version_event(deployment, "tampered", "manifests/tampered.jsonl", "c" * 64))
    publisher.flush()

    trainer = Trainer(deployment, tmp_path / "trainer.log")
    try:
        _wait_for(lambda: _runs(deployment, "tampered"), trainer, 120, "the tampered version's run")
        _wait_for(lambda: _committed(deployment) == max(start, 0) + 2, trainer, 60, "both requests committed")
    finally:
        assert trainer.stop() == 0
    ghost = _runs(deployment, "ghost")
    assert [(r.attempt, r.status, r.retryable) for r in ghost] == [(1, "failed", True), (2, "failed", True),
                                                                   (3, "failed", False)]  # WASTEX_TRAINER_MAX_ATTEMPTS
    assert all("NoSuchKey" in r.error for r in ghost)
    (tampered,) = _runs(deployment, "tampered")
    assert (tampered.status, tampered.retryable) == ("failed", False)
    assert tampered.error.startswith("ManifestMismatch") and "announced cccccccccccc" in tampered.error
    failed = [e.payload for e in _events(deployment, "training.runs") if e.event_type is EventType.TRAINING_RUN_FAILED
              and e.payload["dataset_version"] in ("ghost", "tampered")]
    assert sorted((f["run_id"], f["retryable"]) for f in failed) == [  # keyed by run: partitions differ
        ("run-ghost-1", True), ("run-ghost-2", True), ("run-ghost-3", False), ("run-tampered-1", False)]


def test_only_one_trainer_works_on_a_database_at_a_time(deployment: Settings) -> None:
    from training_job.service import exclusive_lock

    running, stopped = threading.Event(), threading.Event()
    stopped.set()
    with exclusive_lock(deployment, running) as first:
        assert first
        started = time.monotonic()
        with exclusive_lock(deployment, stopped, wait_s=0.1) as second:
            assert not second  # it waited for the lock and gave up when told to stop
        assert time.monotonic() - started < 5
    with exclusive_lock(deployment, stopped) as third:
        assert third  # released with the first one's connection


def test_with_postgresql_stopped_the_trainer_waits_and_then_trains_the_request_in_one_attempt(
        settings: Settings, fresh_deployment: Settings, tmp_path: Path) -> None:
    _register(fresh_deployment, _seed_folder(tmp_path / "v1", ["glass", "metal"], seed=3), "v1")
    with stopped(settings, "postgres"):
        trainer = Trainer(fresh_deployment, tmp_path / "trainer.log")
        _wait_for(lambda: "trainer (PostgreSQL, Kafka): waiting" in trainer.tail(), trainer, 120,
                  "the trainer to wait for PostgreSQL")
    try:
        _wait_for(lambda: any(r.status == "completed" for r in _runs(fresh_deployment, "v1")), trainer,
                  what="v1's run after the outage")
    finally:
        assert trainer.stop() == 0
    assert [(r.attempt, r.status) for r in _runs(fresh_deployment, "v1")] == [(1, "completed")]


def test_a_run_failed_for_a_passing_reason_is_recorded_once_the_database_is_back_and_uses_up_no_attempt(
        settings: Settings, fresh_deployment: Settings) -> None:
    from training_job.service import TrainerService

    service = TrainerService(fresh_deployment)
    store = service.store
    run = store.start("v-outage", "e" * 36, {})
    recorded: list[bool | None] = []
    with stopped(settings, "postgres"):
        with pytest.raises(OperationalError) as unreachable:  # the real error of a run whose database went away
            store.settled("v-outage")
        recorder = threading.Thread(target=lambda: recorded.append(service._fail(run, unreachable.value)))
        recorder.start()
        recorder.join(3)
        assert recorder.is_alive() and not recorded  # it waits for the database instead of losing the request
    recorder.join(120)
    assert recorded == [True]
    (failed,) = _runs(fresh_deployment, "v-outage")
    assert (failed.status, failed.retryable) == ("failed", True) and failed.error.startswith(PASSING)

    # More passing failures than WASTEX_TRAINER_MAX_ATTEMPTS: the request is still tried again ...
    for _ in range(settings.trainer_max_attempts):
        assert service._fail(store.start("v-outage", "e" * 36, {}), unreachable.value) is True
    assert store.attempts_used("v-outage") == 0
    # ... while the failures that count still give it up after the limit.
    outcomes = [service._fail(store.start("v-outage", "e" * 36, {}), RuntimeError("out of memory"))
                for _ in range(settings.trainer_max_attempts)]
    assert outcomes == [True] * (settings.trainer_max_attempts - 1) + [False]
    assert store.settled("v-outage").error == "RuntimeError: out of memory"
