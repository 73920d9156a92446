"""The version builder worker on the real services: label log -> staging -> exactly one version per request."""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path

from infra.clients import db_sessions, kafka_admin, minio_client
from infra.db.dataset_versions import Change, VersionStore
from infra.publisher import EventPublisher
from infra.settings import Settings
from infra.topic_reader import TopicReader
from schemas.codec import new_event
from schemas.dataset_manifest import split_for_digest
from schemas.events import Event, EventType
from stream_apps.builder.announcer import VersionAnnouncer
from stream_apps.builder.label_log import LogPosition
from stream_apps.builder.version_builder import VersionBuilder
from stream_apps.worker_process import WorkerProcess
from tests.outages import stopped

PORT = 6093


def _sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _image(name: str) -> dict:
    return {"bucket": "wastex-images", "object_key": f"images/{_sha(name)}.jpg", "sha256": _sha(name)}


def _label(name: str, label: str) -> Event:
    return new_event(EventType.LABEL_ASSIGNED, {
        "image": _image(name), "label": label, "operator_id": "alice", "flagged_by_model_version": "m1",
        "source_event_id": str(uuid.uuid4()), "new_class": False, "action_id": uuid.uuid4().hex}, "test")


def _discard(name: str) -> Event:
    return new_event(EventType.IMAGE_DISCARDED, {
        "image": _image(name), "operator_id": "alice", "reason": "not waste", "flagged_by_model_version": "m1",
        "source_event_id": str(uuid.uuid4()), "action_id": uuid.uuid4().hex}, "test")


def _retract(name: str, retracted: Event) -> Event:
    return new_event(EventType.LABEL_RETRACTED, {
        "image": _image(name), "operator_id": "alice", "retracted_event_id": retracted.event_id,
        "flagged_by_model_version": "m1", "source_event_id": str(uuid.uuid4()), "action_id": uuid.uuid4().hex},
        "test")


def _request(request_id: str, **extra: str) -> Event:
    return new_event(EventType.CREATE_VERSION_REQUESTED, {"request_id": request_id, "requested_by": "alice",
                                                           "notes": "from the test", "trigger": "manual", **extra},
                     "test")


def _publish(fresh_deployment: Settings, *events: Event) -> None:
    publisher = EventPublisher(fresh_deployment)
    for event in events:
        publisher.publish(event)
    publisher.flush()


def _naive(seed: dict[str, str], log: list[Event]) -> dict[str, str]:
    """Membership recomputed from the seed and the whole label log: the latest decision per image."""
    decisions: dict[str, str | None] = {}
    for event in log:
        sha = event.payload["image"]["sha256"]
        decisions[sha] = event.payload["label"] if event.event_type is EventType.LABEL_ASSIGNED else None
    members = dict(seed)
    for sha, label in decisions.items():
        if label is None:
            members.pop(sha, None)
        else:
            members[sha] = label
    return members


def _wait_version(store: VersionStore, request_id: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        version = store.by_request(request_id)
        if version is not None and version.announced_at is not None:
            return
        time.sleep(0.3)
    raise AssertionError(f"no announced version for {request_id}")


def test_labels_become_one_delta_version_per_request_even_after_a_crash_and_a_replay(
        fresh_deployment: Settings, tmp_path: Path) -> None:
    store = VersionStore(db_sessions(fresh_deployment))
    seed = {_sha(f"seed-{i}"): ["glass", "metal", "paper"][i % 3] for i in range(9)}
    store.create("v1", None, [Change(sha, label, f"images/{sha}.jpg") for sha, label in seed.items()],
                 created_by="test", request_id="seed")
    store.activate("v1", by="test")

    relabel = _label("seed-0", "paper")
    log = [
        _label("new-1", "Textile"), _label("new-2", "glass"), relabel, _discard("seed-1"),
        _label("new-3", "metal"), _retract("new-3", _label("new-3", "metal")),  # undone: no decision
        _label("new-2", "metal"),  # relabelled before any version: the latest decision wins
        _discard("never-seen"),
    ]
    _publish(fresh_deployment, *log)
    worker = WorkerProcess(fresh_deployment, "builder-a", PORT, tmp_path, kind="builder").start()
    try:
        worker.wait_healthy(ready=lambda health: health["staged"] == 6)  # 8 decisions about 6 images
        _publish(fresh_deployment, _request("r-1"), _request("r-1"))  # the same request twice
        _wait_version(store, "r-1")

        second_log = [_label("seed-1", "glass"), _discard("new-1"), _label("new-4", "cardboard")]  # re-add
        _publish(fresh_deployment, *second_log, _request("r-2", name="labels-2"))
        _wait_version(store, "r-2")
    finally:
        worker.stop()

    v2, v3 = store.by_request("r-1"), store.by_request("r-2")
    assert [v.name for v in store.versions()] == ["v1", v2.name, "labels-2"]
    assert store.parent_name(v3) == v2.name and store.active().name == "labels-2"
    first = _naive(seed, log)
    assert {m.sha256: m.label for m in store.members(v2.name)} == first
    assert {m.sha256: m.label for m in store.members("labels-2")} == _naive(seed, log + second_log)
    assert v2.changes == {"added": 2, "relabelled": 1, "removed": 1}  # new-1, new-2; seed-0; seed-1
    assert v2.classes_introduced == ["Textile"]
    assert all(m.split == split_for_digest(m.sha256) for m in store.members("labels-2"))

    # A builder killed after committing a version's rows but before announcing it ...
    _publish(fresh_deployment, _label("new-5", "glass"))
    announcer = VersionAnnouncer(fresh_deployment, store, minio_client(fresh_deployment),
                                 EventPublisher(fresh_deployment))
    interrupted = VersionBuilder(db_sessions(fresh_deployment), store, announcer).materialise(
        {"request_id": "r-3", "requested_by": "alice", "notes": ""})
    assert store.get(interrupted.name).announced_at is None
    # ... and its successor replays the whole label log and every request from the start.
    admin = kafka_admin(fresh_deployment)
    for future in admin.delete_consumer_groups([f"{fresh_deployment.topic_prefix}builder"]).values():
        future.result()
    restarted = WorkerProcess(fresh_deployment, "builder-b", PORT + 1, tmp_path, kind="builder").start()
    try:
        restarted.wait_healthy(ready=lambda health: health["staged"] == 1)  # only new-5 is new
        _wait_version(store, "r-3")
        _publish(fresh_deployment, _request("r-3"))
        time.sleep(3)
    finally:
        restarted.stop()
    assert [v.name for v in store.versions()] == ["v1", v2.name, "labels-2", interrupted.name]
    assert [row.sha256 for row in store.staged()] == [_sha("new-5")]

    created = TopicReader.collect(fresh_deployment, 3, "dataset.versions")["dataset.versions"]
    # One event per version: the seed made outside the builder was announced by the builder's first start.
    assert sorted(e.payload["request_id"] for e in created) == ["r-1", "r-2", "r-3", "seed"]


def test_a_chain_longer_than_the_snapshot_depth_is_cut_by_a_snapshot(fresh_deployment: Settings) -> None:
    store = VersionStore(db_sessions(fresh_deployment))
    announcer = VersionAnnouncer(fresh_deployment, store, minio_client(fresh_deployment),
                                 EventPublisher(fresh_deployment))
    builder = VersionBuilder(db_sessions(fresh_deployment), store, announcer, snapshot_depth=2)
    store.create("v1", None, [Change(_sha("a"), "glass", f"images/{_sha('a')}.jpg")], created_by="t")
    store.activate("v1", by="test")
    for number, name in enumerate(["b", "c", "d"], start=1):
        builder.stage(_label(name, "metal"), LogPosition(0, number))
        builder.build({"request_id": f"depth-{number}", "requested_by": "t", "notes": ""})
    names = [v.name for v in store.versions()]
    assert [store.chain_length(name) for name in names] == [1, 2, 1, 2]  # the third link became a snapshot
    assert {m.sha256 for m in store.members(names[-1])} == {_sha(n) for n in "abcd"}


def test_with_postgresql_stopped_the_builder_waits_then_builds_every_label_and_a_refused_label_goes_alone(
        settings: Settings, fresh_deployment: Settings, tmp_path: Path) -> None:
    store = VersionStore(db_sessions(fresh_deployment))
    poison = _label("poison", "glass")
    poison.payload["operator_id"] = "al\u0000ice"  # the schema takes it; PostgreSQL refuses NUL in text
    worker = WorkerProcess(fresh_deployment, "builder-pg", PORT + 4, tmp_path, kind="builder").start()
    try:
        worker.wait_healthy(ready=lambda health: health["status"] == "ok")
        _publish(fresh_deployment, _label("before", "glass"), poison, _label("after", "metal"))
        worker.wait_healthy(ready=lambda health: health["staged"] == 2)
        with stopped(settings, "postgres"):
            _publish(fresh_deployment, _label("outage", "paper"), _request("r-outage"))
            health = worker.wait_healthy(ready=lambda health: health["status"] == "degraded")
            assert health["staged"] is None and all(w["reason"] for w in health["waiting"])
        _wait_version(store, "r-outage", 180)
        worker.wait_healthy(ready=lambda health: health["status"] == "ok")
    finally:
        worker.stop()

    members = {m.sha256 for m in store.members(store.by_request("r-outage").name)}
    assert members == {_sha("before"), _sha("after"), _sha("outage")}
    letters = TopicReader.collect(fresh_deployment, 3, "dead-letters")["dead-letters"]
    assert [(letter.payload["reason"], letter.payload["original_event_id"]) for letter in letters] == [
        ("processing_error", poison.event_id)]  # the refused label alone; nothing for the outage
