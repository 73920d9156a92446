"""The label site chain on the real services: LabelAssigned.site_id -> staging -> dataset entries -> manifest rows."""

from __future__ import annotations

import hashlib
import json
import uuid

from infra.clients import db_sessions, minio_client
from infra.db.dataset_versions import Change, VersionStore
from infra.publisher import EventPublisher
from infra.settings import Settings
from schemas.codec import new_event
from schemas.dataset_manifest import ManifestRow
from schemas.events import Event, EventType
from stream_apps.builder.announcer import VersionAnnouncer, manifest_key
from stream_apps.builder.label_log import LogPosition
from stream_apps.builder.version_builder import VersionBuilder


def _sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _label(name: str, label: str, site_id: str | None = None) -> Event:
    payload = {"image": {"bucket": "wastex-images", "object_key": f"images/{_sha(name)}.jpg", "sha256": _sha(name)},
               "label": label, "operator_id": "alice", "flagged_by_model_version": "m1",
               "source_event_id": str(uuid.uuid4()), "new_class": False, "action_id": uuid.uuid4().hex}
    if site_id is not None:
        payload |= {"site_id": site_id, "review_kind": "ood"}
    return new_event(EventType.LABEL_ASSIGNED, payload, "test")


def _manifest(settings: Settings, version_name: str) -> dict[str, ManifestRow]:
    response = minio_client(settings).get_object(settings.bucket_datasets, manifest_key(version_name))
    try:
        rows = [ManifestRow.from_json(json.loads(line)) for line in response.read().decode().splitlines()]
    finally:
        response.close()
        response.release_conn()
    return {row.sha256: row for row in rows}


def test_a_labelled_site_reaches_the_manifest_and_stays_with_the_image_along_the_version_chain(
        fresh_deployment: Settings) -> None:
    store = VersionStore(db_sessions(fresh_deployment))
    announcer = VersionAnnouncer(fresh_deployment, store, minio_client(fresh_deployment),
                                 EventPublisher(fresh_deployment))
    builder = VersionBuilder(db_sessions(fresh_deployment), store, announcer)
    store.create("v1", None, [Change(_sha("seed"), "glass", f"images/{_sha('seed')}.jpg")], created_by="test")
    store.activate("v1", by="test")

    builder.stage(_label("floor-1", "metal", "plant-b"), LogPosition(0, 1))
    builder.stage(_label("floor-2", "paper", "plant-b"), LogPosition(0, 2))
    builder.stage(_label("imported", "paper"), LogPosition(0, 3))
    first = builder.build({"request_id": "sites-1", "requested_by": "alice", "notes": ""})
    rows = _manifest(fresh_deployment, first.name)
    assert {sha: row.site for sha, row in rows.items()} == {
        _sha("seed"): None, _sha("floor-1"): "plant-b", _sha("floor-2"): "plant-b", _sha("imported"): None}
    assert "site" not in rows[_sha("seed")].to_json()  # a seed image's row has no site at all

    # A child relabels floor-1 without a site (an import of the same bytes, say) and adds another site's image.
    builder.stage(_label("floor-1", "glass"), LogPosition(0, 4))
    builder.stage(_label("yard-1", "glass", "plant-c"), LogPosition(0, 5))
    second = builder.build({"request_id": "sites-2", "requested_by": "alice", "notes": ""})
    rows = _manifest(fresh_deployment, second.name)
    assert {sha: (row.class_name, row.site) for sha, row in rows.items()} == {
        _sha("seed"): ("glass", None), _sha("floor-1"): ("glass", "plant-b"), _sha("floor-2"): ("paper", "plant-b"),
        _sha("imported"): ("paper", None), _sha("yard-1"): ("glass", "plant-c")}

    # A snapshot copies the sites into the version itself: its children still resolve them.
    store.snapshot(second.name)
    store.create("after-snapshot", second.name, [Change(_sha("floor-2"), "cardboard")], created_by="test")
    sites = {m.sha256: (m.label, m.site) for m in store.members("after-snapshot")}
    assert sites[_sha("floor-2")] == ("cardboard", "plant-b") and sites[_sha("yard-1")] == ("glass", "plant-c")
