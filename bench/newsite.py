"""`wastex bench newsite`: how fast a second site with another look is learned through the real loop.

On an isolated deployment of the shared services, with a real builder, scoring worker, scoring monitor (drift
checks every DRIFT_CHECK_S) and trainer (sub-processes):
1. the first site (TrashNet as it is, less the quarter kept for the second site) is registered as `v1`; the trainer
   trains and promotes the first model;
2. the second site's held-out photos and the first site's test photos are captured (MinIO + ImageCaptured) and
   scored by the scoring worker; what it routes is the "before";
3. `--labels-per-class` photos per class of the second site are captured and scored; the benchmark waits (up to
   DRIFT_WAIT_S) for the monitor to mark the second site's camera drifting, as it would within minutes at a real
   site; the photos are labelled (LabelAssigned with the second site's id, as the review UI sends them);
   `wastex dataset create` makes `v2`; the trainer fine-tunes the serving model on it; the candidate is promoted
   by the trainer when its policy says so (else the benchmark promotes it and says so);
4. the same photos are captured again and scored by the new model: the "after". The camera's drift mark stays
   until the monitor sees the new model's window of it look right again.

top-1 counts the worker's top class whatever the route; a silent miscount is an image counted (ImageClassified,
not an audit sample) as a wrong class.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
from sqlalchemy import select

from bench.newsite_sites import SitePhoto, build_sites
from bench.photos import trashnet_dir
from bench.report import print_figures
from infra.clients import db_sessions, minio_client
from infra.db.models import CameraDrift, TrainingRun
from infra.db.registry import production_model, promote
from infra.deployment import create_deployment, drop_deployment, environment
from infra.publisher import EventPublisher
from infra.settings import Settings, load_settings
from infra.topic_reader import TopicReader
from producers.capture import CapturedImage, CaptureSink
from schemas.codec import new_event
from schemas.events import Event, EventType
from stream_apps.worker_process import WorkerProcess

WASTEX = str(Path(sys.executable).with_name("wastex"))
FIRST_SITE, SECOND_SITE = "site-a", "site-b"
OPERATOR = "bench-newsite"
ROUTED_TOPICS = ("images.classified", "images.ood", "dead-letters")
TARGET_AFTER_TOP1 = 0.85
TARGET_SILENT = 0.05
TARGET_OLD_SITE_DROP = 0.02
DRIFT_CHECK_S = 5.0
DRIFT_WAIT_S = 90.0


def _wait(check: Callable[[], Any], timeout_s: float, what: str, alive: Callable[[], None]) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive()
        if value := check():
            return value
        time.sleep(2.0)
    raise click.ClickException(f"timed out after {timeout_s:.0f} s waiting for {what}")


class Loop:
    """The deployment's processes and the benchmark's view of its topics."""

    def __init__(self, isolated: Settings, work: Path, ports: list[int], training_minutes: float) -> None:
        self.isolated, self.work = isolated, work
        self.builder = WorkerProcess(isolated, "newsite-builder", ports[0], work, kind="builder")
        self.scorer = WorkerProcess(isolated, "newsite-scoring", ports[1], work)
        self.trainer_log = work / "trainer.log"
        self._trainer_env = environment(isolated, WASTEX_HOME=str(isolated.state_dir),
                                        WASTEX_TRAINER_MINUTES=str(training_minutes))
        self.trainer: subprocess.Popen | None = None
        self.monitor_log = work / "monitor.log"
        self._monitor_env = environment(isolated, WASTEX_HOME=str(isolated.state_dir),
                                        WASTEX_DRIFT_CHECK_S=str(DRIFT_CHECK_S))
        self.monitor: subprocess.Popen | None = None
        self.reader: TopicReader | None = None
        self.sink = CaptureSink(minio_client(isolated), isolated.bucket_images, EventPublisher(isolated))
        self.publisher = EventPublisher(isolated)
        self.routed: dict[str, tuple[str, Event]] = {}  # captured event id -> (topic, routed event)

    def start(self) -> None:
        self.builder.start()
        self.scorer.start()
        self.trainer = subprocess.Popen([WASTEX, "trainer"], env=self._trainer_env, stdin=subprocess.DEVNULL,
                                        stdout=self.trainer_log.open("ab"), stderr=subprocess.STDOUT)
        self.monitor = subprocess.Popen([WASTEX, "ui", "monitor"], env=self._monitor_env, stdin=subprocess.DEVNULL,
                                        stdout=self.monitor_log.open("ab"), stderr=subprocess.STDOUT)
        self.reader = TopicReader(self.isolated, *ROUTED_TOPICS)

    def alive(self) -> None:
        if self.trainer is not None and self.trainer.poll() is not None:
            raise click.ClickException(f"the trainer exited; see {self.trainer_log}")
        if self.monitor is not None and self.monitor.poll() is not None:
            raise click.ClickException(f"the scoring monitor exited; see {self.monitor_log}")

    def stop(self) -> None:
        if self.reader is not None:
            self.reader.close()
        for worker in (self.scorer, self.builder):
            worker.stop()
        for process in (self.trainer, self.monitor):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(60)

    def wastex(self, *args: str) -> None:
        done = subprocess.run([WASTEX, *args], env=environment(self.isolated, WASTEX_HOME=str(self.isolated.state_dir)),
                              capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise click.ClickException(f"wastex {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")

    def serving(self, version: str) -> bool:
        return self.scorer.wait_healthy(120)["model_version"] == version

    def score(self, photos: list[SitePhoto], site: str) -> list[tuple[str, Event]]:
        """Capture every photo (camera ``<site>-cam``) and wait until the worker routed each one."""
        events = [self.sink.store(CapturedImage(photo.path.read_bytes(), "image/jpeg", f"{site}-cam", site))
                  for photo in photos]
        for event in events:
            self.sink.publish(event)
        self.sink.flush()

        def all_routed() -> bool:
            self.reader.poll(1.0)
            for topic in ROUTED_TOPICS:
                for routed in self.reader.events[topic]:
                    payload = routed.payload
                    self.routed[payload.get("captured_event_id") or payload.get("original_event_id")] = (topic, routed)
                self.reader.events[topic].clear()
            return all(event.event_id in self.routed for event in events)

        _wait(all_routed, 60 + len(events), f"the scoring worker to route {len(events)} {site} photos", self.alive)
        return [self.routed[event.event_id] for event in events]

    def label(self, photos: list[SitePhoto], scored: list[tuple[str, Event]], site: str) -> None:
        """One LabelAssigned per photo, with its true class and the site, as an operator's answer would be."""
        for photo, (topic, routed) in zip(photos, scored, strict=True):
            image = routed.payload["image"]
            self.publisher.publish(new_event(EventType.LABEL_ASSIGNED, {
                "image": image, "label": photo.class_name, "operator_id": OPERATOR,
                "flagged_by_model_version": routed.payload.get("model_version") if topic == "images.ood" else None,
                "source_event_id": routed.event_id if topic == "images.ood" else None,
                "site_id": site, "new_class": False, "action_id": f"newsite-{uuid.uuid4().hex}"}, "bench"))
        self.publisher.flush()

    def drifting(self, camera: str) -> bool:
        """Whether the scoring monitor's latest check marks `camera` drifting."""
        with db_sessions(self.isolated)() as session:
            row = session.get(CameraDrift, camera)
        return row is not None and row.drifting

    def finished_run(self, dataset_version: str) -> TrainingRun | None:
        with db_sessions(self.isolated)() as session:
            run = session.scalars(select(TrainingRun).where(TrainingRun.dataset_version == dataset_version)
                                  .order_by(TrainingRun.attempt.desc())).first()
        return run if run is not None and run.status in {"completed", "failed"} else None


def site_figures(photos: list[SitePhoto], scored: list[tuple[str, Event]], classes: list[str]) -> dict[str, Any]:
    """top-1, silent miscount and review shares of scored photos, and their confusion matrix (rows: true class)."""
    index = {name: position for position, name in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    silent = reviewed = 0
    for photo, (topic, routed) in zip(photos, scored, strict=True):
        predicted = routed.payload.get("predicted_class")
        if predicted in index:
            matrix[index[photo.class_name], index[predicted]] += 1
        if topic == "images.ood":
            reviewed += 1
        elif topic == "images.classified" and predicted != photo.class_name and not routed.payload.get("audit"):
            silent += 1
    return {"top1": float(np.trace(matrix)) / len(photos), "silent_miscount": silent / len(photos),
            "review_share": reviewed / len(photos), "confusion": matrix.tolist()}


def _free_ports(first: int, count: int) -> list[int]:
    """``count`` ports from ``first`` on that nothing listens on (below the ephemeral range, like the services')."""
    ports = []
    for port in range(first, first + 100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                ports.append(port)
        if len(ports) == count:
            return ports
    raise click.ClickException(f"no {count} free ports from {first}")


def run_benchmark(settings: Settings, trashnet: Path, labels_per_class: int, training_minutes: float,
                  first_port: int, seed: int) -> dict[str, Any]:
    sites = build_sites(trashnet, settings.cache_dir / "bench-newsite", labels_per_class, seed)
    isolated = create_deployment(settings)
    work = Path(tempfile.mkdtemp(prefix="wastex-bench-newsite-"))
    loop = Loop(isolated, work, _free_ports(first_port, 2), training_minutes)
    timings: dict[str, float] = {}
    try:
        loop.start()
        started = time.monotonic()
        loop.wastex("dataset", "register", str(sites.first_folder), "--name", "v1", "--by", OPERATOR)
        first = _wait(lambda: (row := production_model(isolated)) and row.version, training_minutes * 60 + 900,
                      "the first model", loop.alive)
        _wait(lambda: loop.serving(first), 300, "the worker serving the first model", loop.alive)
        timings["first_model_min"] = (time.monotonic() - started) / 60
        classes = list(production_model(isolated).classes)

        before_second = loop.score(sites.held_out, SECOND_SITE)
        before_first = loop.score(sites.first_test, FIRST_SITE)

        loop_started = time.monotonic()
        labelled = loop.score(sites.labelled, SECOND_SITE)
        camera = f"{SECOND_SITE}-cam"
        deadline = time.monotonic() + DRIFT_WAIT_S
        while not loop.drifting(camera) and time.monotonic() < deadline:
            loop.alive()
            time.sleep(1.0)
        drifting_before = loop.drifting(camera)
        loop.label(sites.labelled, labelled, SECOND_SITE)
        loop.wastex("dataset", "create", "--name", "v2", "--by", OPERATOR, "--wait", "300")
        run = _wait(lambda: loop.finished_run("v2"), training_minutes * 60 + 900, "the training run of v2", loop.alive)
        if run.status != "completed":
            raise click.ClickException(f"the training run of v2 failed: {run.log[-5:]}")
        promoted_by = "trainer" if run.promoted else "bench"
        if not run.promoted:  # the trainer's policy held it back; the benchmark measures the candidate anyway
            promote(isolated, run.model_version, promoted_by=OPERATOR, source="bench")
        _wait(lambda: loop.serving(run.model_version), 300, "the worker serving the new model", loop.alive)
        loop_minutes = (time.monotonic() - loop_started) / 60

        after_second = loop.score(sites.held_out, SECOND_SITE)
        drifting_after = loop.drifting(camera)
        after_first = loop.score(sites.first_test, FIRST_SITE)
    finally:
        loop.stop()
        drop_deployment(isolated)

    before, after = site_figures(sites.held_out, before_second, classes), site_figures(sites.held_out, after_second,
                                                                                       classes)
    first_before = site_figures(sites.first_test, before_first, classes)
    first_after = site_figures(sites.first_test, after_first, classes)
    return {
        "before_top1": before["top1"], "after_top1": after["top1"],
        "before_silent_miscount": before["silent_miscount"], "after_silent_miscount": after["silent_miscount"],
        "before_review_share": before["review_share"], "after_review_share": after["review_share"],
        "old_site_top1_before": first_before["top1"], "old_site_top1_after": first_after["top1"],
        "second_site_drifting_before": drifting_before, "second_site_drifting_after": drifting_after,
        "labels_used": len(sites.labelled), "loop_minutes": loop_minutes,
        "first_model_minutes": timings["first_model_min"],
        "held_out_images": len(sites.held_out), "old_site_test_images": len(sites.first_test),
        "recommendation": run.recommendation, "promoted_by": promoted_by, "classes": classes,
        "before_confusion": before["confusion"], "after_confusion": after["confusion"],
        "work_dir": str(work),
    }


@click.command()
@click.option("--dataset", type=click.Path(file_okay=False, path_type=Path),
              help="TrashNet folder (default: $WASTEX_TRASHNET_DIR).")
@click.option("--labels-per-class", default=10, show_default=True, type=click.IntRange(min=1),
              help="Second-site photos per class labelled through the loop.")
@click.option("--training-minutes", default=10.0, show_default=True, type=click.FloatRange(min=1),
              help="The trainer's wall-time budget per run (WASTEX_TRAINER_MINUTES).")
@click.option("--first-port", default=24300, show_default=True, help="Ports of the worker processes start here.")
@click.option("--seed", default=0, show_default=True, help="Seed of the second site's look.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def newsite(dataset: Path | None, labels_per_class: int, training_minutes: float, first_port: int, seed: int,
            as_json: bool) -> None:
    """A second site's top-1 and silent miscounts before and after --labels-per-class labels went through the loop."""
    # A terminated benchmark still stops its processes and drops its deployment (the `finally` below runs).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    figures = run_benchmark(load_settings(), trashnet_dir(dataset), labels_per_class, training_minutes, first_port,
                            seed)
    targets = {
        f"after_top1 >= {TARGET_AFTER_TOP1}": figures["after_top1"] >= TARGET_AFTER_TOP1,
        f"after_silent_miscount <= {TARGET_SILENT}": figures["after_silent_miscount"] <= TARGET_SILENT,
        f"old site within {TARGET_OLD_SITE_DROP * 100:g} points":
            figures["old_site_top1_after"] >= figures["old_site_top1_before"] - TARGET_OLD_SITE_DROP,
    }
    print_figures(f"New-site benchmark ({labels_per_class} labels per class)", figures, targets, as_json)
