"""Audit sampling on the real services, with a controlled model and a real scoring worker: the audited images are
exactly those the content-hash rule picks, they reach the review queue as audit items and stay in MinIO, answers
become LabelAssigned events that say site and kind, and the audited accuracy and OOD rate per camera match a hand
count (in the pages' API, in /api/counts and on counts.accuracy)."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from minio.error import S3Error
from sqlalchemy import select

from infra.clients import db_sessions, minio_client
from infra.db.models import ScoringTally
from infra.db.registry import promote
from infra.deployment import create_deployment, drop_deployment, environment
from infra.image_retention import audits_sample
from infra.publisher import EventPublisher
from infra.settings import Settings
from infra.topic_reader import TopicReader
from producers.capture import CapturedImage, CaptureSink
from review_ui.audited_accuracy import wilson_interval
from schemas.events import Event
from stream_apps.worker_process import WorkerProcess
from tests.controlled_models import GREEN, GREY, METAL_GLASS, RED, import_controlled, photo
from tests.review_ui_support import SignedIn, add_operator, wait_until

AUDIT_RATE = 0.25
SITE = "site-north"
WORKER_PORT = 24001


def _seeds(colour: tuple[int, int, int], audited: bool, count: int, start: int) -> list[int]:
    """The first `count` seeds from `start` whose photo the hash rule audits (or not)."""
    seeds, seed = [], start
    while len(seeds) < count:
        if audits_sample(hashlib.sha256(photo(colour, seed)).hexdigest(), AUDIT_RATE) == audited:
            seeds.append(seed)
        seed += 1
    return seeds


@dataclass(frozen=True)
class Shot:
    colour: tuple[int, int, int]
    seed: int
    camera: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(photo(self.colour, self.seed)).hexdigest()


# cam-a: 3 audited + 3 other red (metal), 2 grey (OOD, one of them with an audit-picked hash); cam-b: 2 audited +
# 2 other green (glass), 1 grey.
SHOTS = ([Shot(RED, s, "cam-a") for s in _seeds(RED, True, 3, 100) + _seeds(RED, False, 3, 100)]
         + [Shot(GREY, s, "cam-a") for s in _seeds(GREY, True, 1, 200) + _seeds(GREY, False, 1, 200)]
         + [Shot(GREEN, s, "cam-b") for s in _seeds(GREEN, True, 2, 300) + _seeds(GREEN, False, 2, 300)]
         + [Shot(GREY, s, "cam-b") for s in _seeds(GREY, False, 1, 400)])
AUDITED = {shot.sha256 for shot in SHOTS if shot.colour != GREY and audits_sample(shot.sha256, AUDIT_RATE)}
HAND_TALLIES = {"cam-a": (6, 2), "cam-b": (4, 1)}  # classified, ood


@pytest.fixture(scope="module")
def deployment(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A deployment serving the controlled metal/glass model; the UI publishes audited accuracy every second."""
    isolated = dataclasses.replace(create_deployment(settings), accuracy_publish_interval_s=1.0)
    version = import_controlled(isolated, tmp_path_factory.mktemp("model"), "m-audit-1", METAL_GLASS)
    promote(isolated, version, promoted_by="test", source="test")
    yield isolated
    drop_deployment(isolated)


def _exists(deployment: Settings, key: str) -> bool:
    try:
        minio_client(deployment).stat_object(deployment.bucket_images, key)
        return True
    except S3Error:
        return False


@pytest.fixture(scope="module")
def scored(deployment: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Event]]:
    """Every shot scored by a real worker auditing 25%, and the worker's deletions done; the outcome events."""
    worker = WorkerProcess(deployment, "audits", WORKER_PORT, tmp_path_factory.mktemp("worker"),
                           WASTEX_AUDIT_RATE=str(AUDIT_RATE), WASTEX_DELETE_DELAY_S="0").start()
    reader = TopicReader(deployment, "images.classified", "images.ood")
    try:
        worker.wait_serving()
        sink = CaptureSink(minio_client(deployment), deployment.bucket_images, EventPublisher(deployment))
        for shot in SHOTS:
            sink.publish(sink.store(CapturedImage(photo(shot.colour, shot.seed), "image/jpeg", shot.camera, SITE)))
        sink.flush()
        deadline = time.monotonic() + 180
        while sum(map(len, reader.events.values())) < len(SHOTS) and time.monotonic() < deadline:
            reader.poll(1.0)
        # A classified capture goes once its record's offset is committed; audit samples never do.
        ordinary = [e.payload["image"]["object_key"] for e in reader.events["images.classified"]
                    if e.payload["image"]["sha256"] not in AUDITED]
        wait_until(lambda: not any(_exists(deployment, key) for key in ordinary), 90,
                   "the ordinary classified captures deleted")
    finally:
        reader.close()
        worker.stop()
    assert sum(map(len, reader.events.values())) == len(SHOTS), worker.log_tail()
    return reader.events


def test_the_audited_images_are_exactly_those_the_hash_rule_picks_and_reach_the_queue_and_stay(
        app: Flask, deployment: Settings, scored: dict[str, list[Event]]) -> None:
    classified = {e.payload["image"]["sha256"]: e.payload for e in scored["images.classified"]}
    audits = {sha for sha, payload in classified.items() if payload.get("audit")}
    assert audits == AUDITED and len(AUDITED) == 5
    assert all(classified[sha]["classes"] == ["metal", "glass"] and len(classified[sha]["probabilities"]) == 2
               for sha in audits)
    # A grey image whose hash the rule picks is out of distribution: flagged, not audited.
    assert all("audit" not in e.payload for e in scored["images.ood"]) and len(scored["images.ood"]) == 3

    operator = SignedIn(app, add_operator(deployment, "auditor-1"))
    items = wait_until(lambda: (lambda d: d["items"] if d["total"] == 5 else None)(
        operator.get("/api/ood?kind=audit&status=all&per_page=100").json), 60, "five audit items in the queue")
    assert {item["image"]["sha256"] for item in items} == AUDITED
    assert all(item["kind"] == "audit" and item["reason"] == "audit" and item["site_id"] == SITE for item in items)
    assert operator.get("/api/ood?status=all").json["kinds"] == {"all": 8, "ood": 3, "audit": 5}
    page = operator.get("/queue?kind=audit").get_data(as_text=True)
    assert page.count('class="kind-audit"') == 5 and 'data-kind="audit" class="current"' in page

    # The worker deleted every ordinary classified capture (see `scored`), and kept every audited one.
    assert all(_exists(deployment, classified[sha]["image"]["object_key"]) for sha in AUDITED)


def test_audit_answers_become_label_events_and_accuracy_and_ood_rate_per_camera_match_a_hand_count(
        app: Flask, deployment: Settings, scored: dict[str, list[Event]]) -> None:
    operator = SignedIn(app, add_operator(deployment, "auditor-2"))
    items = wait_until(lambda: (lambda d: d["items"] if d["total"] == 5 else None)(
        operator.get("/api/ood?kind=audit&status=all&per_page=100").json), 60, "five audit items in the queue")
    on = {camera: sorted((i for i in items if i["camera_id"] == camera), key=lambda i: i["id"])
          for camera in ("cam-a", "cam-b")}
    page = operator.get(f"/review/{on['cam-a'][0]['id']}").get_data(as_text=True)
    assert "Audit: the model said <strong id=\"audit-predicted\">metal</strong>" in page

    # cam-a: two confirmed, one corrected (2 of 3 right); cam-b: one confirmed, one discarded (1 of 2).
    answers = [operator.act(f"/api/ood/{on['cam-a'][0]['id']}/review"),
               operator.act(f"/api/ood/{on['cam-a'][1]['id']}/review"),
               operator.act(f"/api/ood/{on['cam-a'][2]['id']}/label", label="glass"),
               operator.act(f"/api/ood/{on['cam-b'][0]['id']}/review"),
               operator.act(f"/api/ood/{on['cam-b'][1]['id']}/discard")]
    assert all(answer["published"] for answer in answers)

    labels = {e.payload["image"]["sha256"]: e for e in TopicReader.collect(deployment, 3, "labels")["labels"]}
    corrected = labels[on["cam-a"][2]["image"]["sha256"]].payload
    confirmed = labels[on["cam-a"][0]["image"]["sha256"]].payload
    assert corrected["label"] == "glass" and confirmed["label"] == "metal"
    assert labels[on["cam-b"][0]["image"]["sha256"]].payload["label"] == "glass"
    for payload in (corrected, confirmed):
        assert payload["site_id"] == SITE and payload["review_kind"] == "audit"
        assert payload["source_event_id"] in {i["source_event_id"] for i in items}

    with db_sessions(deployment)() as session:
        def tallies() -> dict[str, tuple[int, int]]:
            rows = session.execute(select(ScoringTally.camera_id, ScoringTally.classified, ScoringTally.ood)).all()
            session.rollback()
            return {camera: (classified, ood) for camera, classified, ood in rows}

        wait_until(lambda: tallies() == HAND_TALLIES, 60, "the scoring tallies of the hand count")

    report = operator.get("/api/accuracy").json
    (site,) = report["sites"]
    cameras = {row["camera_id"]: row for row in site["cameras"]}
    expected = {"cam-a": (3, 2, 8, 2), "cam-b": (2, 1, 5, 1)}  # audited, correct, scored, ood
    for camera, (audited, correct, scored_images, ood) in expected.items():
        row = cameras[camera]
        assert (row["audited"], row["correct"], row["scored"], row["ood"]) == (audited, correct, scored_images, ood)
        assert row["accuracy"] == pytest.approx(correct / audited)
        assert row["interval"] == pytest.approx(list(wilson_interval(correct, audited)))
        assert row["ood_rate"] == pytest.approx(ood / scored_images)
        assert row["silent_miscount_rate"] == pytest.approx((1 - ood / scored_images) * (1 - correct / audited))
    assert cameras["cam-a"]["silent_miscount_rate"] == pytest.approx(0.25)  # (1 - 2/8) * (1 - 2/3)
    (whole,) = site["rows"]
    assert (whole["audited"], whole["correct"], whole["scored"], whole["ood"]) == (5, 3, 13, 3)

    counted = operator.get("/api/counts").json["accuracy"]
    assert counted["model_version"] == "m-audit-1"
    assert counted["camera"]["cam-a"]["accuracy"] == pytest.approx(2 / 3)
    assert counted["site"][SITE]["ood_rate"] == pytest.approx(3 / 13)

    def published() -> dict[str, dict] | None:
        latest = {f"{e.payload['scope']}:{e.payload['key']}": e.payload
                  for e in TopicReader.collect(deployment, 2, "counts.accuracy")["counts.accuracy"]}
        done = latest.get("camera:cam-a", {}).get("audited") == 3 and latest.get("camera:cam-b", {}).get("ood") == 1
        return latest if done and latest.get(f"site:{SITE}", {}).get("scored") == 13 else None

    latest = wait_until(published, 60, "AuditedAccuracyUpdated with the answers on counts.accuracy")
    assert latest["camera:cam-a"]["correct"] == 2 and latest["camera:cam-a"]["model_version"] == "m-audit-1"
    assert latest[f"site:{SITE}"]["accuracy"] == pytest.approx(3 / 5)

    # `wastex counts` shows each camera's count with the accuracy that qualifies it
    printed = subprocess.run([str(Path(sys.executable).with_name("wastex")), "counts"],
                             env=environment(deployment, COLUMNS="200"),
                             capture_output=True, text=True, timeout=120, check=True).stdout
    camera_a = next(line for line in printed.splitlines() if "cam-a" in line)
    assert "m-audit-1" in camera_a and "66.7%" in camera_a, printed
    site_row = next(line for line in printed.splitlines() if SITE in line)
    assert "60.0%" in site_row and "23.1%" in site_row, printed  # accuracy 3/5, OOD rate 3/13
