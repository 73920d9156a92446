"""The review UI's JSON API on the real Kafka, MinIO and PostgreSQL: queue projection, actions, label log."""

from __future__ import annotations

import io
import itertools
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select

from infra.clients import db_sessions, kafka_producer
from infra.db.models import ImportedImage, LabelOutbox, ReviewItem, WasteClass
from infra.publisher import EventPublisher
from infra.settings import Settings
from infra.topic_reader import TopicReader
from review_ui.cli import ui
from schemas.codec import encode, new_event
from schemas.events import Event, EventType, format_timestamp
from schemas.topics import IMAGES_OOD
from tests.review_ui_support import (
    CLASSES,
    MODEL_VERSION,
    PASSWORD,
    FlaggedImages,
    SignedIn,
    add_operator,
    photo,
    wait_until,
)

SEEDS = itertools.count(10_000)  # distinct image bytes per test: the label log is keyed by image


@pytest.fixture()
def alice(app: Flask, deployment: Settings) -> SignedIn:
    return SignedIn(app, add_operator(deployment, f"alice-{uuid.uuid4().hex[:6]}"))


def _queue(operator: SignedIn, flagged: FlaggedImages, count: int, **event_args: object) -> tuple[str, list[dict]]:
    """count new flagged images on a camera of their own, projected into the queue (most uncertain first)."""
    camera = f"cam-{uuid.uuid4().hex[:8]}"
    flagged.publish([flagged.event(next(SEEDS), camera=camera, **event_args) for _ in range(count)])
    wait_until(lambda: operator.get(f"/api/ood?camera={camera}").json["total"] == count, 30, "the projection")
    return camera, operator.get(f"/api/ood?camera={camera}").json["items"]


def _label_log(deployment: Settings, awaited: list[str]) -> list[Event]:
    """The whole label topic, once every awaited event id is on it (and a moment more, for duplicates)."""
    reader = TopicReader(deployment, "labels")
    try:
        wait_until(lambda: reader.poll(0.5) or set(awaited) <= {e.event_id for e in reader.events["labels"]}, 30,
                   "the label events")
        reader.poll(1.5)
    finally:
        reader.close()
    return reader.events["labels"]


def _events(deployment: Settings, ids: list[str]) -> list[Event]:
    return [event for event in _label_log(deployment, ids) if event.event_id in ids]


def test_the_projection_is_idempotent_registers_classes_and_dead_letters_bad_records(
        app: Flask, alice: SignedIn, flagged: FlaggedImages, deployment: Settings) -> None:
    camera = f"cam-{uuid.uuid4().hex[:8]}"
    events = [flagged.event(seed, camera=camera) for seed in (101, 102)]
    flagged.publish([*events, events[0]])  # a redelivery: the same event id again
    topic = IMAGES_OOD.full_name(deployment.topic_prefix)
    producer = kafka_producer(deployment)
    bad = new_event(EventType.IMAGE_CAPTURED, {  # a valid event, but not on its topic
        "bucket": deployment.bucket_images, "object_key": "images/x.jpg", "sha256": "0" * 64, "size_bytes": 1,
        "content_type": "image/jpeg", "camera_id": camera, "site_id": "s", "captured_at": format_timestamp(
            datetime.now(UTC))}, "test")
    producer.produce(topic, key=camera.encode(), value=b'{"event_id": "not json')
    producer.produce(topic, key=camera.encode(), value=encode(bad))
    assert producer.flush(15) == 0
    wait_until(lambda: alice.get(f"/api/ood?camera={camera}").json["total"] == 2, 30, "the projection")

    reader = TopicReader(deployment, "dead-letters")
    reader.poll(3.0)
    reader.close()
    reasons = Counter(e.payload["reason"] for e in reader.events["dead-letters"]
                      if e.payload["service"] == "review_ui")
    assert reasons == {"malformed_event": 1, "schema_invalid": 1}
    with db_sessions(deployment)() as session:
        rows = session.scalars(select(ReviewItem).where(ReviewItem.camera_id == camera)).all()
        assert sorted(r.source_event_id for r in rows) == sorted(e.event_id for e in events)
        assert set(CLASSES) <= set(session.scalars(select(WasteClass.name)))
    document = alice.get(f"/api/ood/{rows[0].id}").json
    assert document["status"] == "pending" and len(document["top5"]) == 5
    assert document["top5"][0]["probability"] == max(p["probability"] for p in document["top5"])


def test_the_queue_filters_sorts_and_pages(alice: SignedIn, flagged: FlaggedImages) -> None:
    camera = f"cam-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(microsecond=0)
    energies = [-3.0, -1.0, -2.0, -0.5]
    flagged.publish([flagged.event(200 + i, camera=camera, predicted=i % 2, energy=energy,
                                   captured_at=now - timedelta(minutes=10 * i)) for i, energy in enumerate(energies)])
    wait_until(lambda: alice.get(f"/api/ood?camera={camera}").json["total"] == 4, 30, "the projection")

    by_energy = alice.get(f"/api/ood?camera={camera}").json["items"]
    assert [i["energy"] for i in by_energy] == sorted(energies, reverse=True)
    newest = alice.get(f"/api/ood?camera={camera}&sort=newest").json["items"]
    assert [i["captured_at"] for i in newest] == sorted((i["captured_at"] for i in newest), reverse=True)
    page = alice.get(f"/api/ood?camera={camera}&per_page=3&page=2").json
    assert (page["total"], page["pages"], len(page["items"])) == (4, 2, 1)
    since = (now - timedelta(minutes=15)).isoformat()
    assert alice.get(f"/api/ood?camera={camera}&since={since.replace('+', '%2B')}").json["total"] == 2
    predicted = by_energy[0]["predicted_class"]
    same_class = alice.get(f"/api/ood?camera={camera}&predicted={predicted}").json["items"]
    assert same_class and all(i["predicted_class"] == predicted for i in same_class)
    # the neighbour of an item in the queue order, for the next image after an action
    second = alice.get(f"/api/ood/{by_energy[0]['id']}/next?camera={camera}").json["item"]
    assert second["id"] == by_energy[1]["id"]
    assert alice.get(f"/api/ood/{by_energy[-1]['id']}/next?camera={camera}").json["item"] is None
    assert alice.get(f"/api/ood/{by_energy[1]['id']}/prev?camera={camera}").json["item"]["id"] == by_energy[0]["id"]

    refused = alice.get("/api/ood?sort=random")
    assert refused.status_code == 400 and "sort must be one of" in refused.json["error"]
    assert alice.get("/api/ood/999999").status_code == 404


def test_a_label_is_one_event_however_often_it_is_sent(alice: SignedIn, flagged: FlaggedImages,
                                                       deployment: Settings) -> None:
    _, items = _queue(alice, flagged, 1)
    item = items[0]
    action_id = str(uuid.uuid4())
    first = alice.post(f"/api/ood/{item['id']}/label", json={"label": "GLASS", "action_id": action_id}).json
    again = alice.post(f"/api/ood/{item['id']}/label", json={"label": "GLASS", "action_id": action_id}).json
    same_state = alice.act(f"/api/ood/{item['id']}/label", label="glass")
    assert first["published"] and first["warning"] is None
    assert first["label"] == "glass" and first["changed"][0]["status"] == "labelled"  # the registry's spelling
    assert again["replayed"] and again["events"] == first["events"]
    assert same_state["events"] == [] and same_state["unchanged"] == [item["id"]]

    labelled = [e for e in _label_log(deployment, first["events"])
                if e.payload["image"]["sha256"] == item["image"]["sha256"]]
    assert [e.event_id for e in labelled] == first["events"]
    payload = labelled[0].payload
    assert labelled[0].event_type is EventType.LABEL_ASSIGNED
    assert (payload["label"], payload["operator_id"], payload["flagged_by_model_version"],
            payload["source_event_id"], payload["new_class"]) == ("glass", alice_name(alice), MODEL_VERSION,
                                                                  item["source_event_id"], False)
    unknown = alice.post(f"/api/ood/{item['id']}/label", json={"label": "Nope", "action_id": str(uuid.uuid4())})
    assert unknown.status_code == 400 and "no class named" in unknown.json["error"]
    bad_id = alice.post(f"/api/ood/{item['id']}/label", json={"label": "glass", "action_id": "x"})
    assert bad_id.status_code == 400 and "action_id" in bad_id.json["error"]


def alice_name(client: SignedIn) -> str:
    return client.get("/api/session").json["operator"]


def test_new_classes_are_deduplicated_without_case(alice: SignedIn, flagged: FlaggedImages,
                                                   deployment: Settings) -> None:
    name = f"Textile {uuid.uuid4().hex[:4]}"
    created = alice.post("/api/classes", json={"name": f"  {name} "})
    duplicate = alice.post("/api/classes", json={"name": name.upper()})
    assert (created.status_code, created.json["created"], created.json["class"]["name"]) == (201, True, name)
    assert (duplicate.status_code, duplicate.json["created"], duplicate.json["class"]["name"]) == (200, False, name)
    assert alice.post("/api/classes", json={"name": " "}).status_code == 400
    assert [c["name"] for c in alice.get("/api/classes").json["classes"]].count(name) == 1

    _, items = _queue(alice, flagged, 2)
    fresh = f"Ceramics {uuid.uuid4().hex[:4]}"
    first = alice.act(f"/api/ood/{items[0]['id']}/label", label=fresh, new_class=True)
    second = alice.act(f"/api/ood/{items[1]['id']}/label", label=fresh.lower(), new_class=True)
    assert (first["label"], first["new_class"]) == (fresh, True)
    assert (second["label"], second["new_class"]) == (fresh, False)
    log = _events(deployment, first["events"] + second["events"])
    assert sorted((e.payload["label"], e.payload["new_class"]) for e in log) == [(fresh, False), (fresh, True)]


def test_bulk_label_and_undo_restore_every_image(alice: SignedIn, flagged: FlaggedImages,
                                                 deployment: Settings) -> None:
    camera, items = _queue(alice, flagged, 3)
    ids = [i["id"] for i in items]
    discard = alice.act(f"/api/ood/{ids[0]}/discard")
    bulk = alice.act("/api/label", ids=ids, label="metal")
    assert sorted(i["id"] for i in bulk["changed"]) == sorted(ids)
    assert alice.get(f"/api/ood?camera={camera}").json["total"] == 0
    assert alice.get(f"/api/ood?camera={camera}&status=labelled").json["total"] == 3

    undone = alice.act("/api/undo")
    assert sorted(i["id"] for i in undone["changed"]) == sorted(ids)
    states = {i["id"]: i["status"] for i in alice.get(f"/api/ood?camera={camera}&status=all").json["items"]}
    assert states == {ids[0]: "discarded", ids[1]: "pending", ids[2]: "pending"}
    undone_again = alice.act("/api/undo")  # the one before: the discard
    assert [i["id"] for i in undone_again["changed"]] == [ids[0]]
    assert alice.get(f"/api/ood?camera={camera}").json["total"] == 3

    log = _events(deployment, bulk["events"] + undone["events"] + undone_again["events"])
    kinds = Counter(e.event_type for e in log)
    assert kinds == {EventType.LABEL_ASSIGNED: 3, EventType.LABEL_RETRACTED: 3, EventType.IMAGE_DISCARDED: 1}
    restored_discard = next(e for e in log if e.event_type is EventType.IMAGE_DISCARDED)
    assert restored_discard.payload["image"]["sha256"] == items[0]["image"]["sha256"]
    # Retracted: the bulk labels of the two images that were pending before, then the discard.
    retracted = {e.payload["retracted_event_id"] for e in log if e.event_type is EventType.LABEL_RETRACTED}
    labelled_from_pending = {e.event_id for e in log if e.event_id in bulk["events"]
                             and e.payload["image"]["sha256"] != items[0]["image"]["sha256"]}
    assert retracted == labelled_from_pending | set(discard["events"])


def test_undo_never_overwrites_another_operators_decision(app: Flask, alice: SignedIn, flagged: FlaggedImages,
                                                           deployment: Settings) -> None:
    bob = SignedIn(app, add_operator(deployment, f"bob-{uuid.uuid4().hex[:6]}"))
    _, items = _queue(alice, flagged, 1)
    alice.act(f"/api/ood/{items[0]['id']}/label", label="paper")
    bob.act(f"/api/ood/{items[0]['id']}/discard", reason="a glove")
    refused = alice.post("/api/undo", json={"action_id": str(uuid.uuid4())})
    assert refused.status_code == 409 and "undo refused" in refused.json["error"]
    assert alice.get(f"/api/ood/{items[0]['id']}").json["status"] == "discarded"
    assert bob.act("/api/undo")["changed"][0]["label"] == "paper"
    stranger = SignedIn(app, add_operator(deployment, f"carl-{uuid.uuid4().hex[:6]}"))
    nothing = stranger.post("/api/undo", json={"action_id": str(uuid.uuid4())})
    assert nothing.status_code == 409 and nothing.json["error"] == "nothing to undo"


def test_discard_and_mark_reviewed_carry_the_flagging_model(alice: SignedIn, flagged: FlaggedImages,
                                                            deployment: Settings) -> None:
    _, items = _queue(alice, flagged, 2)
    discarded = alice.act(f"/api/ood/{items[0]['id']}/discard", reason="  a  shoe ")
    reviewed = alice.act(f"/api/ood/{items[1]['id']}/review")
    assert reviewed["label"] == items[1]["predicted_class"]
    log = {e.event_id: e for e in _events(deployment, discarded["events"] + reviewed["events"])}
    drop = log[discarded["events"][0]]
    accept = log[reviewed["events"][0]]
    assert drop.event_type is EventType.IMAGE_DISCARDED and drop.payload["reason"] == "a shoe"
    assert accept.event_type is EventType.LABEL_ASSIGNED and accept.payload["label"] == items[1]["predicted_class"]
    for event, item in ((drop, items[0]), (accept, items[1])):
        assert event.payload["flagged_by_model_version"] == MODEL_VERSION
        assert event.payload["source_event_id"] == item["source_event_id"]


def test_imported_images_become_objects_and_label_events_once(alice: SignedIn, deployment: Settings,
                                                              flagged: FlaggedImages) -> None:
    name = f"Batteries {uuid.uuid4().hex[:4]}"
    seeds = [900_001, 900_002]
    files = [(io.BytesIO(photo(seed)), f"<b>{seed}</b>.jpg") for seed in seeds]
    files.append((io.BytesIO(b"not an image at all"), "notes.txt"))
    answer = alice.post("/api/import", data={"files": files, "label": name, "new_class": "true"},
                        content_type="multipart/form-data")
    assert answer.status_code == 200, answer.json
    results = answer.json["results"]
    assert [r["status"] for r in results] == ["imported", "imported", "refused"]
    assert "not an image" in results[2]["detail"]
    for result in results[:2]:
        flagged.keys.append(f"images/{result['sha256']}.jpg")
        flagged.storage.stat_object(deployment.bucket_images, f"images/{result['sha256']}.jpg")
    again = alice.post("/api/import", data={"files": [(io.BytesIO(photo(seeds[0])), "again.jpg")], "label": name},
                       content_type="multipart/form-data").json["results"]
    assert again[0]["status"] == "already imported"

    shas = {r["sha256"] for r in results[:2]}
    with db_sessions(deployment)() as session:
        awaited = list(session.scalars(select(ImportedImage.event_id).where(ImportedImage.sha256.in_(shas))))
    log = [e for e in _label_log(deployment, awaited) if e.payload["image"]["sha256"] in shas]
    assert len(log) == 2 and all(e.event_type is EventType.LABEL_ASSIGNED for e in log)
    assert sorted(e.payload["new_class"] for e in log) == [False, True]
    assert all(e.payload["source_event_id"] is None and e.payload["label"] == name for e in log)
    missing = alice.post("/api/import", data={"files": [(io.BytesIO(photo(7)), "a.jpg")], "label": "Unknown x"},
                         content_type="multipart/form-data")
    assert missing.status_code == 400 and "no class named" in missing.json["error"]


def test_counts_come_from_the_count_topics(alice: SignedIn, deployment: Settings) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    publisher = EventPublisher(deployment)

    def count(scope: str, key: str, value: int, start: datetime | None = None) -> None:
        window = None if start is None else {"start": format_timestamp(start),
                                             "end": format_timestamp(start + timedelta(minutes=1))}
        publisher.publish(new_event(EventType.COUNTS_UPDATED, {"scope": scope, "key": key, "window": window,
                                                               "count": value, "as_of": format_timestamp(now)},
                                    "scoring"))

    count("class", "glass", 3)
    count("class", "glass", 5)  # the latest record per key is the count
    count("class", "metal", 2)
    count("camera", "cam-9", 7)
    count("class", "glass", 4, now)
    count("class", "glass", 1, now - timedelta(minutes=2))
    count("class", "metal", 2, now - timedelta(minutes=90))  # older than the hour shown
    publisher.flush()
    totals = wait_until(lambda: (t := alice.get("/api/counts").json)["class"].get("glass") == 5 and t, 20, "counts")
    assert totals["class"]["metal"] == 2 and totals["camera"]["cam-9"] == 7
    history = alice.get("/api/counts/history").json
    assert len(history["minutes"]) == 60 and history["series"]["glass"][-1] == 4
    assert history["series"]["glass"][-3] == 1 and "metal" not in history["series"]
    assert alice.get("/api/counts/history?minutes=500").status_code == 400


def test_the_cli_creates_operators_and_imports_labelled_folders(deployment: Settings, tmp_path,
                                                               flagged: FlaggedImages) -> None:
    env = {"WASTEX_TOPIC_PREFIX": deployment.topic_prefix, "WASTEX_POSTGRES_DB": deployment.postgres_db}
    runner = CliRunner()
    name = f"dora-{uuid.uuid4().hex[:6]}"
    made = runner.invoke(ui, ["create-operator", name, "--password-stdin"], input=f"{PASSWORD}\n", env=env)
    assert made.exit_code == 0, made.output
    twice = runner.invoke(ui, ["create-operator", name.upper(), "--password-stdin"], input=f"{PASSWORD}\n", env=env)
    assert twice.exit_code != 0 and "already exists" in twice.output
    short = runner.invoke(ui, ["create-operator", "eve", "--password-stdin"], input="short\n", env=env)
    assert short.exit_code != 0 and "at least" in short.output

    folder = tmp_path / "wood"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(photo(800_001))
    (folder / "sub" / "b.jpg").write_bytes(photo(800_002))
    (folder / ".hidden.jpg").write_bytes(photo(800_003))
    label = f"Wood {uuid.uuid4().hex[:4]}"
    imported = runner.invoke(ui, ["import-labelled", str(folder), "--class", label, "--new-class", "--operator", name],
                             env=env)
    assert imported.exit_code == 0, imported.output
    assert imported.output.count("imported") >= 2
    with db_sessions(deployment)() as session:
        keys = session.scalars(select(LabelOutbox.document)).all()
        shas = [d["payload"]["image"]["sha256"] for d in keys if d["payload"].get("label") == label]
    assert len(shas) == 2
    flagged.keys.extend(f"images/{sha}.jpg" for sha in shas)
    unknown = runner.invoke(ui, ["import-labelled", str(folder), "--class", label, "--operator", "nobody"], env=env)
    assert unknown.exit_code != 0 and "no active operator" in unknown.output
