"""Every long-running process of a deployment started as an operator starts it (`wastex ...` sub-processes on
free ports), fed a known mix of images, an ingest upload and a failed sign-in: what the observability tests read
through Prometheus, its dashboard queries and the System page."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from infra.clients import db_sessions, minio_client
from infra.db.registry import promote
from infra.deployment import environment
from infra.publisher import EventPublisher
from infra.services.process import free_ports
from infra.settings import Settings
from producers.camera_tokens import issue_token
from producers.capture import CapturedImage, CaptureSink
from tests.controlled_models import GREEN, GREY, METAL_GLASS, RED, import_controlled, photo
from tests.review_ui_support import PASSWORD, add_operator

WASTEX = str(Path(sys.executable).with_name("wastex"))
START_TIMEOUT_S = 180
# The controlled model calls red metal, green glass and grey out of distribution; one object is not an image.
SENT = {"classified": 8, "ood": 3, "dead_letter": 1}


@dataclass
class Process:
    job: str
    instance: str
    port: int
    args: list[str]
    log_path: Path
    popen: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, env: dict[str, str]) -> None:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen([WASTEX, *self.args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL)

    def metrics_text(self) -> str:
        return requests.get(f"{self.url}/metrics", timeout=5).text

    def wait_metrics(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            assert self.popen is not None and self.popen.poll() is None, self.log_tail()
            try:
                if requests.get(f"{self.url}/metrics", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError(f"{self.instance} serves no /metrics after {START_TIMEOUT_S} s\n{self.log_tail()}")

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(60)
            except subprocess.TimeoutExpired:
                self.popen.kill()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of one metric (a counter's `_total` included) in a /metrics text."""
    return [(sample.labels, sample.value) for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name]


@dataclass
class ObservedSystem:
    settings: Settings
    processes: dict[str, Process]
    operator: str
    captured: list[str] = field(default_factory=list)

    @property
    def ui(self) -> Process:
        return self.processes["review_ui"]

    def scored_by_outcome(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for labels, value in samples(self.processes["scoring"].metrics_text(), "wastex_scoring_images_total"):
            found[labels["outcome"]] += int(value)
        return found

    def stop(self) -> None:
        for process in reversed(self.processes.values()):
            process.stop()


def _feed(system: ObservedSystem) -> None:
    sink = CaptureSink(minio_client(system.settings), system.settings.bucket_images, EventPublisher(system.settings))
    mix = [RED] * 4 + [GREEN] * 4 + [GREY] * 3
    images = [CapturedImage(photo(colour, 7000 + i), "image/jpeg", f"cam-{i % 2}", "site-o")
              for i, colour in enumerate(mix)]
    images.append(CapturedImage(b"plain text, not pixels", "image/jpeg", "cam-0", "site-o"))
    for image in images:
        event = sink.store(image)
        sink.publish(event)
        system.captured.append(event.event_id)
    sink.flush()


def _use_the_ingest_and_the_ui(system: ObservedSystem) -> None:
    with db_sessions(system.settings)() as session, session.begin():
        token = issue_token(session, "cam-ingest", "site-o", "test").token
    upload = requests.post(f"{system.processes['ingest'].url}/images", headers={"Authorization": f"Bearer {token}"},
                           files={"image": ("p.jpg", photo(RED, 7999), "image/jpeg")}, timeout=30)
    assert upload.status_code == 201, upload.text
    system.captured.append(upload.json()["event_id"])
    assert requests.post(f"{system.processes['ingest'].url}/images", timeout=10).status_code == 401
    browser = requests.Session()
    csrf = browser.get(f"{system.ui.url}/api/csrf", timeout=10).json()["csrf_token"]
    refused = browser.post(f"{system.ui.url}/api/login", json={"username": system.operator, "password": "wrong!"},
                           headers={"X-CSRF-Token": csrf}, timeout=30)
    assert refused.status_code == 401


def start_observed_system(deployment: Settings, folder: Path) -> ObservedSystem:
    """Scoring worker, builder, review UI, ingest and trainer of `deployment`, running and fed; stop() ends them."""
    promote(deployment, import_controlled(deployment, folder, "observed-1", METAL_GLASS), promoted_by="test",
            source="test")
    scoring, builder, ui, ingest, trainer = free_ports(5)
    name = folder.name[-12:]
    processes = {
        "scoring": Process("scoring", f"scoring-{name}", scoring,
                           ["worker", "scoring", "--name", f"scoring-{name}", "--web-port", str(scoring)],
                           folder / "scoring.log"),
        "builder": Process("builder", f"builder-{name}", builder,
                           ["worker", "builder", "--name", f"builder-{name}", "--web-port", str(builder)],
                           folder / "builder.log"),
        "review_ui": Process("review_ui", "ui", ui, ["ui", "serve", "--port", str(ui)], folder / "ui.log"),
        "ingest": Process("ingest", "ingest", ingest, ["ingest", "serve", "--port", str(ingest)],
                          folder / "ingest.log"),
        "trainer": Process("trainer", "trainer", trainer, ["trainer"], folder / "trainer.log"),
    }
    env = environment(deployment, WASTEX_HOME=str(deployment.state_dir), WASTEX_METRICS="true",
                      WASTEX_TRAINER_METRICS_PORT=str(trainer), WASTEX_DELETE_DELAY_S="0")
    system = ObservedSystem(deployment, processes, add_operator(deployment, f"observer-{name}", PASSWORD))
    try:
        for process in processes.values():
            process.start(env)
        deadline = time.monotonic() + START_TIMEOUT_S
        for process in processes.values():
            process.wait_metrics(deadline)
        _feed(system)
        _use_the_ingest_and_the_ui(system)
        expected = sum(SENT.values()) + 1  # + the ingest's upload, a red photo
        while sum(system.scored_by_outcome().values()) < expected:
            assert time.monotonic() < deadline + 120, (system.scored_by_outcome(), processes["scoring"].log_tail())
            time.sleep(1)
    except BaseException:
        system.stop()
        raise
    return system
