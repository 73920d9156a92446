"""The review UI's version pages with a real builder: label in the UI -> staged -> create -> browse and diff."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from flask import Flask

from infra.clients import db_sessions, minio_client
from infra.db.dataset_versions import Change, VersionStore
from infra.settings import Settings
from stream_apps.worker_process import WorkerProcess
from tests.review_ui_support import FlaggedImages, SignedIn, add_operator, wait_until

MARKUP_NOTE = "<b>bold</b> notes"


def test_a_label_made_in_the_ui_becomes_a_version_the_ui_can_browse_and_compare(
        app: Flask, deployment: Settings, flagged: FlaggedImages, tmp_path: Path) -> None:
    seed_event, ood_event = flagged.event(9001, camera="cam-v"), flagged.event(9002, camera="cam-v")
    store = VersionStore(db_sessions(deployment))
    seed_image = seed_event.payload["image"]
    store.create("v1", None, [Change(seed_image["sha256"], "glass", seed_image["object_key"])], created_by="t")
    store.activate("v1", by="test")
    alice = SignedIn(app, add_operator(deployment, f"ver-{uuid.uuid4().hex[:6]}"))
    builder = WorkerProcess(deployment, "builder-ui", 6095, tmp_path, kind="builder").start()
    try:
        builder.wait_healthy()
        flagged.publish([ood_event])
        wait_until(lambda: alice.get("/api/ood?camera=cam-v").json["total"] == 1, 30, "the projection")
        item = alice.get("/api/ood?camera=cam-v").json["items"][0]
        alice.act(f"/api/ood/{item['id']}/label", label="metal")

        wait_until(lambda: 'id="staged-total">1<' in alice.get("/versions").text, 60, "the staged label")
        page = alice.get("/versions").text
        sha = ood_event.payload["image"]["sha256"]
        assert sha[:12] in page and "metal" in page

        answer = alice.post("/versions", data={"name": "v2", "notes": MARKUP_NOTE})
        assert answer.status_code == 302
        wait_until(lambda: any(v.name == "v2" and v.announced_at for v in store.versions()), 60, "version v2")
    finally:
        builder.stop()

    listing = alice.get("/versions").text
    assert 'data-version="v2"' in listing and 'id="staged-total">0<' in listing
    version_page = alice.get("/versions/v2").text
    assert f"/thumbnails/{ood_event.payload['image']['object_key']}" in version_page
    assert "&lt;b&gt;bold&lt;/b&gt; notes" in version_page and MARKUP_NOTE not in version_page
    assert 'id="member-total">2 images<' in version_page
    only_metal = alice.get("/versions/v2?class=metal").text
    assert 'id="member-total">1 images<' in only_metal
    assert seed_image["object_key"] not in only_metal
    assert alice.get("/versions/v2?split=nonsense").status_code == 400
    assert alice.get("/versions/v9").status_code == 404

    diff = alice.get("/version-diff?older=v1&newer=v2").text
    assert "1 added, 0 removed, 0 relabelled" in diff and sha[:12] in diff

    assert store.active().name == "v2"  # built on the active version, so it became the active one
    assert alice.post("/versions/v1/activate").status_code == 302
    assert store.active().name == "v1"
    assert app.test_client().get("/versions").status_code == 302  # signed out: to the login page
    assert alice.client.post("/versions/v2/activate").status_code == 400  # no CSRF token
    assert hashlib.sha256(minio_client(deployment).get_object(
        deployment.bucket_datasets, "manifests/v2.jsonl").read()).hexdigest() == store.get("v2").manifest_sha256
