"""The whole loop on the real services: labels for a class the model does not know -> a dataset version ->
a training run -> auto-promotion -> every scoring worker classifies and counts that class; a rollback
restores the previous model in every worker."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from infra.clients import db_sessions, minio_client
from infra.db.models import TrainingRun
from infra.db.registry import production_model, rollback
from infra.deployment import environment
from infra.publisher import EventPublisher
from infra.settings import Settings
from infra.topic_reader import TopicReader
from producers.capture import CapturedImage, CaptureSink
from review_ui.app import create_app
from review_ui.services import UiServices
from stream_apps.worker_process import WorkerProcess
from tests.review_ui_support import SignedIn, add_operator, wait_until
from tests.trashnet_slices import trashnet_photos, trashnet_slice

WASTEX = str(Path(sys.executable).with_name("wastex"))
SEED_CLASSES = ["glass", "metal"]
NEW_CLASS = "paper"
LABELLED, SHOWN = 30, 12  # paper photos labelled by the operator, and others the cameras show afterwards
# Small and quick, but on the ImageNet backbone: a few dozen photos per class are enough to learn a class.
TRAINING = {"WASTEX_TRAINER_WEIGHTS": "imagenet", "WASTEX_TRAINER_HEAD_EPOCHS": "15", "WASTEX_TRAINER_EPOCHS": "1",
            "WASTEX_TRAINER_AUGMENTED_VIEWS": "0", "WASTEX_TRAINER_BATCH_SIZE": "16",
            "WASTEX_TRAINER_TRAINABLE_BLOCKS": "1", "WASTEX_TRAINER_MINUTES": "0"}


def _wastex(isolated: Settings, *args: str) -> None:
    done = subprocess.run([WASTEX, *args], env=environment(isolated, WASTEX_HOME=str(isolated.state_dir)),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"wastex {' '.join(args)}:\n{done.stdout}\n{done.stderr}"


def _serving(workers: list[WorkerProcess], version: str) -> bool:
    return all(worker.wait_healthy(10)["model_version"] == version for worker in workers)


def test_labels_of_a_new_class_become_a_model_that_every_worker_serves(
        fresh_deployment: Settings, trashnet: Path, tmp_path: Path) -> None:
    isolated = fresh_deployment
    seed = trashnet_slice(trashnet, tmp_path / "seed", SEED_CLASSES, {"train": 20, "val": 6, "test": 6})
    labelled = tmp_path / "labelled"
    labelled.mkdir()
    for photo in trashnet_photos(trashnet, NEW_CLASS, 0, LABELLED):
        (labelled / photo.name).symlink_to(photo)
    shown = trashnet_photos(trashnet, NEW_CLASS, LABELLED, SHOWN)

    workers = [WorkerProcess(isolated, f"loop-scoring-{i}", 6097 + i, tmp_path) for i in range(2)]
    processes = [WorkerProcess(isolated, "loop-builder", 6096, tmp_path, kind="builder"), *workers]
    reader = TopicReader(isolated, "images.classified", "images.ood", "dead-letters", "counts.totals")
    trainer = subprocess.Popen([WASTEX, "trainer"], stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                               stdout=(tmp_path / "trainer.log").open("ab"),
                               env=environment(isolated, WASTEX_HOME=str(isolated.state_dir), **TRAINING))
    try:
        for process in processes:
            process.start()
        _wastex(isolated, "dataset", "register", str(seed), "--name", "v1", "--by", "test")
        first = wait_until(lambda: production_model(isolated), 300, "the first model").version
        assert trainer.poll() is None, (tmp_path / "trainer.log").read_text()
        wait_until(lambda: _serving(workers, first), 120, "every worker serving the first model")

        operator = add_operator(isolated, f"loop-{uuid.uuid4().hex[:6]}")
        _wastex(isolated, "ui", "import-labelled", str(labelled), "--class", NEW_CLASS, "--new-class",
                "--operator", operator)
        _wastex(isolated, "dataset", "create", "--name", "v2", "--by", operator, "--wait", "120")
        second = wait_until(lambda: (row := production_model(isolated)) and row.version != first and row.version,
                            300, "the model trained on v2")
        wait_until(lambda: _serving(workers, second), 60, "every worker serving the new model")

        sink = CaptureSink(minio_client(isolated), isolated.bucket_images, EventPublisher(isolated))
        sent = [sink.store(CapturedImage(photo.read_bytes(), "image/jpeg", f"cam-{i % 2}", "loop"))
                for i, photo in enumerate(shown)]
        for event in sent:
            sink.publish(event)
        sink.flush()
        ids = {event.event_id for event in sent}
        wait_until(lambda: reader.poll(1.0) or ids <= _routed(reader).keys(), 120, "every image routed")
        papers_routed = sum(_routed(reader)[event_id][1].payload.get("predicted_class") == NEW_CLASS
                            for event_id in ids)
        # the counts follow the classified events through the aggregating agent, some seconds later
        try:
            wait_until(lambda: reader.poll(1.0) or _class_counts(reader).get(NEW_CLASS) == papers_routed, 180,
                       "the counts catching up with the classified events")
        except AssertionError as timed_out:
            logs = "\n".join(f"--- {worker.name}\n{worker.log_tail()}" for worker in workers)
            raise AssertionError(f"{timed_out}: {papers_routed} {NEW_CLASS} routed, counts "
                                 f"{_class_counts(reader)}\n{logs}") from None

        rolled_back = rollback(isolated, None, promoted_by="test", source="test")
        wait_until(lambda: _serving(workers, first), 60, "every worker serving the first model again")
    finally:
        reader.close()
        for process in processes:
            process.stop()
        trainer.terminate()
        trainer.wait(60)

    with db_sessions(isolated)() as session:
        runs = {run.dataset_version: run for run in session.scalars(select(TrainingRun))}
    assert runs["v2"].status == "completed" and runs["v2"].promoted and runs["v2"].recommendation == "promote"
    assert runs["v2"].baseline["model_version"] == first  # compared with the model it replaced
    assert rolled_back.payload["model_version"] == first

    routed = _routed(reader)
    scored = Counter((topic, event.payload["model_version"], event.payload.get("predicted_class"))
                     for topic, event in (routed[event_id] for event_id in ids))
    assert {version for _, version, _ in scored} == {second}
    papers = scored[("images.classified", second, NEW_CLASS)]
    assert papers >= SHOWN // 2, scored
    assert _class_counts(reader)[NEW_CLASS] == papers

    operator_view = SignedIn(create_app(UiServices.create(isolated, projection=False)), operator)
    run_page = operator_view.get(f"/runs/{runs['v2'].run_id}")
    assert run_page.status_code == 200 and "<strong>promote</strong>" in run_page.text
    assert f'<td class="class-name">{NEW_CLASS}</td>' in run_page.text  # with its change against production
    assert operator_view.get(f"/runs/{runs['v2'].run_id}/confusion-matrix.png").mimetype == "image/png"
    assert f'data-model="{first}" class="serving"' in operator_view.get("/models").text


def _class_counts(reader: TopicReader) -> dict[str, int]:
    return {event.payload["key"]: event.payload["count"] for event in reader.events["counts.totals"]
            if event.payload["scope"] == "class"}


def _routed(reader: TopicReader) -> dict[str, tuple[str, object]]:
    routed = {}
    for topic in ("images.classified", "images.ood", "dead-letters"):
        for event in reader.events[topic]:
            routed[event.payload.get("captured_event_id") or event.payload.get("original_event_id")] = (topic, event)
    return routed
