"""`wastex bench swap`: promote a model while scoring workers are under steady load.

Two workers in an isolated deployment score TrashNet photos published at a steady rate. A third of the way
in, a second model is promoted; the benchmark reports the time until every worker serves it, and counts
captured events that got no outcome (lost), more than one (duplicated) or a dead letter (failed).
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import click

from bench.models import untrained_head_model
from bench.photos import sample_photos, trashnet_dir
from bench.report import print_figures
from bench.stream_load import captured_images, publish_paced, routed_topics_reader
from infra.clients import minio_client
from infra.db.registry import promote
from infra.deployment import create_deployment, drop_deployment
from infra.publisher import EventPublisher
from infra.services.process import free_port
from infra.settings import Settings, load_settings
from producers.capture import CaptureSink
from schemas.events import Event, EventType
from schemas.model_artefact import KERAS_FILE, read_artefact_info
from stream_apps.worker_process import WorkerProcess
from training_job.model_registry import import_model


class OutcomeTally:
    """Every routed record by captured event id: which model scored it, and dead letters apart."""

    def __init__(self, isolated: Settings) -> None:
        self._consumer = routed_topics_reader(isolated)
        self.scored_by: dict[str, list[str]] = {}
        self.failed: set[str] = set()

    def read_until(self, ids: set[str], timeout_s: float, settle_s: float = 5.0) -> None:
        """Until every id has an outcome (or the timeout), then `settle_s` more for late duplicates."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not ids <= self.scored_by.keys() | self.failed:
            self._read(0.5)
        settled = time.monotonic() + settle_s
        while time.monotonic() < settled:
            self._read(0.5)

    def _read(self, seconds: float) -> None:
        for message in self._consumer.consume(500, seconds):
            if message.error():
                continue
            event = json.loads(message.value())
            payload = event["payload"]
            if event["event_type"] == EventType.DEAD_LETTER:
                self.failed.add(payload["original_event_id"])
            else:
                self.scored_by.setdefault(payload["captured_event_id"], []).append(payload["model_version"])

    def close(self) -> None:
        self._consumer.close()


def _import_models(isolated: Settings, scratch: Path) -> list[str]:
    versions = []
    for seed in (0, 1):
        folder = scratch / f"model-{seed}"
        folder.mkdir()
        untrained_head_model(folder, seed)
        info = read_artefact_info(folder)
        imported = import_model(isolated, folder / KERAS_FILE, info.classes, version=f"bench-swap-{seed}",
                                tau_energy=info.tau_energy, tau_softmax=info.tau_softmax)
        versions.append(imported.version)
    return versions


def _wait_all_serving(workers: list[WorkerProcess], version: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(worker.wait_healthy(10)["model_version"] == version for worker in workers):
        if time.monotonic() > deadline:
            raise RuntimeError(f"not every worker served {version} within {timeout_s:.0f} s")
        time.sleep(0.05)


@click.command()
@click.option("--dataset", type=click.Path(file_okay=False, path_type=Path),
              help="TrashNet folder (default: $WASTEX_TRASHNET_DIR).")
@click.option("--workers", "worker_count", default=2, show_default=True, help="Scoring workers.")
@click.option("--rate", default=40.0, show_default=True, help="Images per second of the steady load.")
@click.option("--seconds", default=30.0, show_default=True, help="Duration of the load; the swap starts at a third.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def swap(dataset: Path | None, worker_count: int, rate: float, seconds: float, as_json: bool) -> None:
    """Time until every worker serves a promoted model under load; images lost, duplicated, failed."""
    photos = sample_photos(trashnet_dir(dataset), 256)
    isolated = create_deployment(load_settings())
    workers: list[WorkerProcess] = []
    try:
        with tempfile.TemporaryDirectory(prefix="wastex-bench-") as scratch:
            first, second = _import_models(isolated, Path(scratch))
            promote(isolated, first, promoted_by="bench", source="bench")
            publisher = EventPublisher(isolated)
            sink = CaptureSink(minio_client(isolated), isolated.bucket_images, publisher)
            stored = [sink.store(image) for image in captured_images(photos)]
            workers = [WorkerProcess(isolated, f"bench-swap-{i}", free_port(), Path(scratch),
                                     WASTEX_DELETE_DELAY_S="86400").start() for i in range(worker_count)]
            _wait_all_serving(workers, first, 300)

            sent: list[Event] = []
            load = threading.Thread(target=lambda: sent.extend(publish_paced(publisher, stored, rate, seconds)))
            load.start()
            time.sleep(seconds / 3)
            promoted = time.monotonic()
            promote(isolated, second, promoted_by="bench", source="bench")
            _wait_all_serving(workers, second, 120)
            swap_s = time.monotonic() - promoted
            load.join()

            tally = OutcomeTally(isolated)
            try:
                tally.read_until({event.event_id for event in sent}, 300)
            finally:
                tally.close()
    finally:
        for worker in workers:
            worker.stop()
        drop_deployment(isolated)

    ids = {event.event_id for event in sent}
    scored = Counter(version for event_id in ids for version in tally.scored_by.get(event_id, [])[:1])
    figures = {
        "swap_s": swap_s,
        "lost": len(ids - tally.scored_by.keys() - tally.failed),
        "duplicated": sum(max(0, len(tally.scored_by.get(event_id, [])) - 1) for event_id in ids),
        "failed": len(ids & tally.failed),
        "images": len(ids),
        "scored_by_first": scored[first],
        "scored_by_second": scored[second],
        "workers": worker_count,
        "rate_ips": rate,
    }
    targets = {"swap_s < 5": swap_s < 5, "lost == 0": figures["lost"] == 0,
               "duplicated == 0": figures["duplicated"] == 0, "failed == 0": figures["failed"] == 0}
    print_figures("Model swap benchmark", figures, targets, as_json)
