"""Cluster labelling on the real services: a real scoring worker sends embeddings with the images it flags, the
review UI groups look-alikes, and one bulk action labels a whole group with one LabelAssigned per image."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from flask import Flask

from infra.clients import minio_client
from infra.db.registry import promote
from infra.deployment import create_deployment, drop_deployment
from infra.publisher import EventPublisher
from infra.settings import Settings
from infra.topic_reader import TopicReader
from producers.capture import CapturedImage, CaptureSink
from schemas.events import Event, EventType
from stream_apps.worker_process import WorkerProcess
from tests.controlled_models import GREY, METAL_GLASS, RED, import_controlled, photo
from tests.review_ui_support import FlaggedImages, SignedIn, add_operator, wait_until

BLUE = (20, 20, 220)  # the controlled model's logits are flat for blue too: flagged, but unlike grey
WORKER_PORT = 24401
GROUP_DISTANCE = 0.1  # grey and blue pooled colours lie ~0.3 apart (cosine), near-identical greys ~1e-4


@pytest.fixture(scope="module")
def deployment(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    isolated = dataclasses.replace(create_deployment(settings), review_group_distance=GROUP_DISTANCE)
    version = import_controlled(isolated, tmp_path_factory.mktemp("model"), "m-groups-1", METAL_GLASS)
    promote(isolated, version, promoted_by="test", source="test")
    yield isolated
    drop_deployment(isolated)


def _scored(deployment: Settings, log_dir: Path, camera: str, colours: list[tuple[int, int, int]]
            ) -> dict[str, Event]:
    """Each photo scored by a real worker; the ImageFlaggedOOD events by image sha256."""
    worker = WorkerProcess(deployment, "groups", WORKER_PORT, log_dir).start()
    reader = TopicReader(deployment, "images.ood", "images.classified")
    try:
        worker.wait_serving()
        sink = CaptureSink(minio_client(deployment), deployment.bucket_images, EventPublisher(deployment))
        for seed, colour in enumerate(colours):
            sink.publish(sink.store(CapturedImage(photo(colour, 500 + seed), "image/jpeg", camera, "site-g")))
        sink.flush()
        deadline = time.monotonic() + 180
        while sum(map(len, reader.events.values())) < len(colours) and time.monotonic() < deadline:
            reader.poll(1.0)
    finally:
        reader.close()
        worker.stop()
    assert sum(map(len, reader.events.values())) == len(colours), worker.log_tail()
    return {event.payload["image"]["sha256"]: event for event in reader.events["images.ood"]}


def test_a_cluster_of_look_alikes_flagged_by_a_worker_is_one_group_labelled_in_one_action(
        deployment: Settings, app: Flask, tmp_path: Path) -> None:
    camera = f"cam-{uuid.uuid4().hex[:8]}"
    flagged = _scored(deployment, tmp_path, camera, [GREY] * 6 + [BLUE] * 3 + [RED] * 2)
    assert len(flagged) == 9
    for event in flagged.values():  # the controlled model's penultimate features: the image's mean colour
        embedding = np.array(event.payload["embedding"])
        colour = GREY if embedding[2] < 150 else BLUE
        np.testing.assert_allclose(embedding, colour, atol=4)
    greys = {sha for sha, event in flagged.items() if event.payload["embedding"][2] < 150}
    assert len(greys) == 6

    legacy = FlaggedImages(deployment)  # an image flagged by a model exported before embeddings
    legacy.publish([legacy.event(901, camera=camera)])
    alice = SignedIn(app, add_operator(deployment, f"alice-{uuid.uuid4().hex[:6]}"))
    try:
        wait_until(lambda: alice.get(f"/api/ood?camera={camera}").json["total"] == 10, 30, "the projection")
        grouping = alice.get(f"/api/groups?camera={camera}").json
        assert [group["size"] for group in grouping["groups"]] == [6, 3]
        assert grouping["without_embedding"] == 1 and grouping["grouped"] == 9
        grey_group = grouping["groups"][0]
        assert {item["image"]["sha256"] for item in grey_group["items"]} == greys
        looser = alice.get(f"/api/groups?camera={camera}&distance=0.5").json
        assert [group["size"] for group in looser["groups"]] == [9] and looser["distance"] == 0.5
        assert alice.get(f"/api/groups?camera={camera}&distance=2").status_code == 400
        page = alice.get(f"/queue/groups?camera={camera}")
        assert page.status_code == 200 and b"1 pending image\n    without an embedding" in page.data

        bulk = alice.act("/api/label", ids=[item["id"] for item in grey_group["items"]], label="paper",
                         new_class=True)
        assert len(bulk["changed"]) == 6 and len(bulk["events"]) == 6
        reader = TopicReader(deployment, "labels")
        try:
            wait_until(lambda: reader.poll(0.5) or set(bulk["events"]) <= {e.event_id for e in reader.events["labels"]},
                       30, "the label events")
            reader.poll(1.5)  # and a moment more, for any duplicate
        finally:
            reader.close()
        labels = [e for e in reader.events["labels"] if e.payload["image"]["sha256"] in greys]
        assert len(labels) == 6 and all(e.event_type is EventType.LABEL_ASSIGNED for e in labels)
        assert {e.payload["image"]["sha256"] for e in labels} == greys
        assert {e.payload["label"] for e in labels} == {"paper"}

        after = alice.get(f"/api/groups?camera={camera}").json
        assert [group["size"] for group in after["groups"]] == [3]
    finally:
        legacy.cleanup()
