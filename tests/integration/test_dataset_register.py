"""`wastex dataset register` and the version announcement against real MinIO, PostgreSQL and Kafka."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import select

from infra.clients import db_sessions, minio_client
from infra.db.dataset_versions import VersionStore
from infra.db.models import WasteClass
from infra.deployment import environment
from infra.publisher import EventPublisher
from infra.settings import Settings
from infra.topic_reader import TopicReader
from schemas.dataset_manifest import ManifestRow, split_for_digest
from schemas.events import EventType
from schemas.image_keys import DATASET_STORE
from stream_apps.builder.announcer import VersionAnnouncer

WASTEX = str(Path(sys.executable).with_name("wastex"))


def _photo(folder: Path, name: str, seed: int, image_format: str = "JPEG") -> Path:
    pixels = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    Image.fromarray(pixels).save(path, format=image_format)
    return path


def _run(deployment: Settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([WASTEX, "dataset", *args], env=environment(deployment), capture_output=True, text=True,
                          timeout=120)


def test_a_folder_registers_once_with_mapped_classes_and_an_announced_manifest(fresh_deployment: Settings,
                                                                                tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    for index in range(4):
        _photo(seed / "glass", f"g{index}.jpg", index)
        _photo(seed / "trash", f"t{index}.png", 100 + index, "PNG")
    (seed / "glass" / "notes.txt").write_text("not an image, and not an image suffix either")
    (seed / "trash" / "broken.jpg").write_bytes(b"\xff\xd8 this is no JPEG")
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"trash": "Miscellaneous Trash"}))

    first = _run(fresh_deployment, "register", str(seed), "--name", "v1", "--mapping", str(mapping))
    assert first.returncode == 1, first.stderr  # the broken file is refused and named
    assert "refused" in first.stdout and "broken.jpg" in first.stdout
    assert "8 images uploaded, 0 already stored" in first.stdout

    again = _run(fresh_deployment, "register", str(seed), "--name", "v1-again", "--mapping", str(mapping))
    assert "registered already as v1" in again.stdout
    assert "0 images uploaded, 8 already stored" in again.stdout

    store = VersionStore(db_sessions(fresh_deployment))
    assert [v.name for v in store.versions()] == ["v1"]
    version = store.get("v1")
    assert version.active and version.announced_at is not None
    assert version.stats["per_class"] == {"glass": 4, "Miscellaneous Trash": 4}
    with db_sessions(fresh_deployment)() as session:  # the classes it introduced join the class registry
        assert set(session.scalars(select(WasteClass.name))) == {"glass", "Miscellaneous Trash"}
    members = store.members("v1")
    assert all(m.split == split_for_digest(m.sha256) for m in members)

    client = minio_client(fresh_deployment)
    bucket, key = version.manifest_uri.removeprefix("s3://").split("/", 1)
    data = client.get_object(bucket, key).read()
    assert hashlib.sha256(data).hexdigest() == version.manifest_sha256
    rows = [ManifestRow.from_json(json.loads(line)) for line in data.decode().splitlines()]
    assert {(r.sha256, r.class_name, r.split) for r in rows} == {(m.sha256, m.label, m.split) for m in members}
    for row in rows:  # every manifest image is in the dataset store of the images bucket with exactly these bytes
        image_bucket, image_key = row.image.removeprefix("s3://").split("/", 1)
        assert image_key.startswith(f"{DATASET_STORE}/")
        assert hashlib.sha256(client.get_object(image_bucket, image_key).read()).hexdigest() == row.sha256

    created = TopicReader.collect(fresh_deployment, 3, "dataset.versions")["dataset.versions"]
    assert len(created) == 1 and created[0].event_type is EventType.DATASET_VERSION_CREATED
    payload = created[0].payload
    assert payload["version_name"] == "v1" and payload["parent"] is None
    assert payload["manifest"]["sha256"] == version.manifest_sha256
    assert payload["stats"]["total"] == 8 and payload["new_classes"] == ["Miscellaneous Trash", "glass"]


def test_announcing_again_after_a_crash_repeats_the_same_event_and_manifest(fresh_deployment: Settings,
                                                                              tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    for split, offset in (("train", 0), ("val", 10), ("test", 20)):
        for index in range(2):
            _photo(seed / split / "metal", f"m{index}.jpg", offset + index)
    result = _run(fresh_deployment, "register", str(seed), "--name", "v1")
    assert result.returncode == 0, result.stdout + result.stderr
    store = VersionStore(db_sessions(fresh_deployment))
    assert store.get("v1").stats["per_split"] == {"train": 2, "val": 2, "test": 2}  # the folders' splits

    # A builder that died after publishing but before marking the version announced publishes again.
    announcer = VersionAnnouncer(fresh_deployment, store, minio_client(fresh_deployment),
                                 EventPublisher(fresh_deployment))
    repeated = announcer.announce("v1")
    events = TopicReader.collect(fresh_deployment, 3, "dataset.versions")["dataset.versions"]
    assert len(events) == 2 and {e.event_id for e in events} == {repeated.event_id}
    assert events[0].payload["manifest"] == events[1].payload["manifest"]
