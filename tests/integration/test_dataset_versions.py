"""Delta versions on the real PostgreSQL, checked against a naive replay of every change from the start."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from infra.clients import db_sessions
from infra.db.dataset_versions import Change, Member, VersionError, VersionStore
from infra.db.models import DatasetEntry
from infra.deployment import create_database, drop_database
from infra.settings import Settings
from schemas.dataset_manifest import split_for_digest

CLASSES = ["glass", "metal", "paper", "Textile"]


@pytest.fixture()
def database(settings: Settings) -> Iterator[Settings]:
    isolated = create_database(settings)
    yield isolated
    drop_database(isolated)


def _sha(index: int) -> str:
    return hashlib.sha256(f"image-{index}".encode()).hexdigest()


def _replay(state: dict[str, Member], changes: list[Change]) -> dict[str, Member]:
    """The naive recomputation: the whole membership, change after change."""
    state = dict(state)
    for change in changes:
        if change.label is None:
            state.pop(change.sha256, None)
        else:
            old = state.get(change.sha256)
            key = change.object_key or (old.object_key if old else None)
            state[change.sha256] = Member(change.sha256, change.label, split_for_digest(change.sha256), key)
    return state


def _stats(members: dict[str, Member]) -> dict:
    splits = Counter(m.split for m in members.values())
    return {"total": len(members), "per_class": dict(Counter(m.label for m in members.values())),
            "per_split": {split: splits[split] for split in ("train", "val", "test")}}


def test_membership_follows_add_relabel_discard_and_re_add_along_a_chain(database: Settings) -> None:
    store = VersionStore(db_sessions(database))
    rng = random.Random(7)
    seed = [Change(_sha(i), CLASSES[i % 3], f"images/{_sha(i)}.jpg") for i in range(300)]
    expected = {"v1": _replay({}, seed)}
    store.create("v1", None, seed, created_by="test")
    parent = "v1"
    for level in range(2, 9):
        changes = []
        for _ in range(60):
            index = rng.randrange(400)  # some never seen, some removed earlier: re-adds happen
            label = None if rng.random() < 0.25 else rng.choice(CLASSES)
            changes.append(Change(_sha(index), label, f"images/{_sha(index)}.jpg"))
        name = f"v{level}"
        version = store.create(name, parent, changes, created_by="test", request_id=f"request-{level}")
        expected[name] = _replay(expected[parent], changes)
        assert version.stats == _stats(expected[name])
        if level == 5:
            store.snapshot(name)  # resolution of later versions stops here; membership unchanged
        parent = name

    for name, members in expected.items():
        assert {m.sha256: m for m in store.members(name)} == members, name
    assert store.chain_length("v8") == 4  # v8, v7, v6 and the snapshot v5
    assert store.chain_length("v4") == 4  # v4, v3, v2 and the root v1

    diff = store.diff("v3", "v6")
    before, after = expected["v3"], expected["v6"]
    assert {m.sha256 for m in diff.added} == after.keys() - before.keys()
    assert {m.sha256 for m in diff.removed} == before.keys() - after.keys()
    assert {new.sha256 for _, new in diff.relabelled} == {
        sha for sha in after.keys() & before.keys() if after[sha].label != before[sha].label}


def test_a_child_stores_only_what_changed(database: Settings) -> None:
    store = VersionStore(db_sessions(database))
    store.create("v1", None, [Change(_sha(i), "glass", f"images/{_sha(i)}.jpg") for i in range(50)], created_by="t")
    child = store.create("v2", "v1", [
        Change(_sha(1), "glass"),  # no change: no row
        Change(_sha(2), "metal"),  # relabel
        Change(_sha(3), None),  # removal
        Change(_sha(99), None),  # removal of an image the parent does not hold: no row
        Change(_sha(100), "Textile", f"images/{_sha(100)}.jpg"),  # new image, new class
    ], created_by="t", notes="first labels")
    with db_sessions(database)() as session:
        rows = session.scalar(select(func.count()).where(DatasetEntry.version_id == child.id))
    assert rows == 3
    assert child.changes == {"added": 1, "relabelled": 1, "removed": 1}
    assert child.classes_introduced == ["Textile", "metal"]  # both new against the all-glass parent
    assert child.stats["total"] == 50
    relabelled = next(m for m in store.members("v2") if m.sha256 == _sha(2))
    assert relabelled.object_key == f"images/{_sha(2)}.jpg"  # kept from the parent
    assert relabelled.split == split_for_digest(_sha(2))


def test_a_repeated_request_returns_its_version_and_names_are_unique(database: Settings) -> None:
    store = VersionStore(db_sessions(database))
    store.create("v1", None, [Change(_sha(1), "glass", "images/a.jpg")], created_by="t")
    first = store.create("v2", "v1", [Change(_sha(2), "metal", "images/b.jpg")], created_by="t", request_id="r-1")
    again = store.create("v2-again", "v1", [Change(_sha(3), "paper", "images/c.jpg")], created_by="t",
                         request_id="r-1")
    assert again.id == first.id and again.name == "v2"
    assert [v.name for v in store.versions()] == ["v1", "v2"]
    with pytest.raises(VersionError, match="exists already"):
        store.create("v2", "v1", [], created_by="t")
    with pytest.raises(VersionError, match="no parent"):
        store.create("v3", "nope", [], created_by="t")


def test_exactly_one_version_is_active(database: Settings) -> None:
    store = VersionStore(db_sessions(database))
    store.create("v1", None, [], created_by="t")
    store.create("v2", "v1", [], created_by="t")
    assert store.active() is None
    store.activate("v1", by="test")
    store.activate("v2", by="test")
    assert store.active().name == "v2"
    assert [v.name for v in store.versions() if v.active] == ["v2"]
    with pytest.raises(VersionError):
        store.activate("v9", by="test")
