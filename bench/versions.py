"""`wastex bench versions`: a delta dataset version against the seeds' copy of the parent, on PostgreSQL.

In a scratch database: a 1,000,000-image parent (bulk-loaded, not timed); (1) a child with 1,000 changes
made by `VersionStore.create` (best of three children); (2) the seeds' way, the parent's rows copied into
the child and the same changes applied; (3) the full membership of the tenth version of a chain, each link
1,000 changes, resolved along the chain and checked against the version's cached total.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator

import click
from sqlalchemy import text

from bench.report import print_figures
from infra.clients import db_engine, db_sessions
from infra.db.dataset_versions import Change, VersionStore
from infra.deployment import create_database, drop_database
from infra.settings import load_settings
from schemas.dataset_manifest import split_for_digest

CLASSES = ["cardboard", "glass", "metal", "paper", "plastic", "trash"]
COPY_CHUNK = 100_000


def _digest(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def _parent_rows(version_id: int, size: int) -> Iterator[str]:
    """COPY text rows of the parent, a chunk at a time."""
    lines = []
    for index in range(size):
        sha256 = _digest(f"parent-{index}")
        lines.append(f"{version_id}\t{sha256}\tt\t{CLASSES[index % len(CLASSES)]}\t{split_for_digest(sha256)}"
                     f"\timages/{sha256}.jpg\n")
        if len(lines) == COPY_CHUNK:
            yield "".join(lines)
            lines = []
    if lines:
        yield "".join(lines)


def _load_parent(settings, store: VersionStore, size: int) -> None:
    root = store.create("parent", None, [], created_by="bench")
    connection = db_engine(settings).raw_connection()
    try:
        with connection.cursor() as cursor:
            for chunk in _parent_rows(root.id, size):
                cursor.copy_expert("COPY dataset_entries (version_id, sha256, present, label, split, object_key) "
                                   "FROM STDIN", io.StringIO(chunk))
            cursor.execute("""UPDATE dataset_versions SET stats = json_build_object(
                                'total', (SELECT count(*) FROM dataset_entries WHERE version_id = %(id)s),
                                'per_class', (SELECT json_object_agg(label, n) FROM (SELECT label, count(*) AS n
                                            FROM dataset_entries WHERE version_id = %(id)s GROUP BY label) c),
                                'per_split', (SELECT json_object_agg(split, n) FROM (SELECT split, count(*) AS n
                                           FROM dataset_entries WHERE version_id = %(id)s GROUP BY split) s))
                              WHERE id = %(id)s""", {"id": root.id})
        connection.commit()
        connection.set_isolation_level(0)  # VACUUM refuses a transaction
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE dataset_entries")
    finally:
        connection.close()


def _changes(round_: int, parent_size: int, count: int) -> list[Change]:
    """60% relabels and 10% removals of parent images, 30% new images; different images each round."""
    changes = []
    for index in range(count):
        kind = index % 10
        existing = _digest(f"parent-{(round_ * count + index) * 7 % parent_size}")
        if kind < 6:
            changes.append(Change(existing, CLASSES[(index + round_ + 1) % len(CLASSES)]))
        elif kind == 6:
            changes.append(Change(existing, None))
        else:
            fresh = _digest(f"new-{round_}-{index}")
            changes.append(Change(fresh, CLASSES[index % len(CLASSES)], f"images/{fresh}.jpg"))
    return changes


def _copy_parent(settings, store: VersionStore, changes: list[Change]) -> float:
    """The seeds' versioning: INSERT ... SELECT every parent row into the child, then apply the changes."""
    child = store.create("copied-child", None, [], created_by="bench")
    parent = store.get("parent")
    started = time.perf_counter()
    with db_sessions(settings).begin() as session:
        session.execute(text("""INSERT INTO dataset_entries (version_id, sha256, present, label, split, object_key)
                                SELECT :child, sha256, present, label, split, object_key
                                FROM dataset_entries WHERE version_id = :parent"""),
                        {"child": child.id, "parent": parent.id})
        session.execute(text("""INSERT INTO dataset_entries (version_id, sha256, present, label, split, object_key)
                                VALUES (:child, :sha256, true, :label, :split, :key)
                                ON CONFLICT (version_id, sha256) DO UPDATE SET label = excluded.label"""),
                        [{"child": child.id, "sha256": c.sha256, "label": c.label, "split": split_for_digest(c.sha256),
                          "key": c.object_key} for c in changes if c.label is not None])
        session.execute(text("DELETE FROM dataset_entries WHERE version_id = :child AND sha256 = ANY(:removed)"),
                        {"child": child.id, "removed": [c.sha256 for c in changes if c.label is None]})
    return time.perf_counter() - started


@click.command()
@click.option("--parent-size", default=1_000_000, show_default=True, help="Images in the parent version.")
@click.option("--changes", "change_count", default=1_000, show_default=True, help="Changes per child version.")
@click.option("--depth", default=10, show_default=True, help="Versions in the resolved chain, the parent included.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def versions(parent_size: int, change_count: int, depth: int, as_json: bool) -> None:
    """Delta child creation vs. copying the parent, and membership resolution of a deep chain."""
    settings = load_settings()
    isolated = create_database(settings)
    try:
        store = VersionStore(db_sessions(isolated))
        started = time.perf_counter()
        _load_parent(isolated, store, parent_size)
        load_s = time.perf_counter() - started

        create_times = []
        for attempt in range(3):
            started = time.perf_counter()
            store.create(f"child-{attempt}", "parent", _changes(attempt, parent_size, change_count),
                         created_by="bench")
            create_times.append(time.perf_counter() - started)
        copy_s = _copy_parent(isolated, store, _changes(0, parent_size, change_count))

        parent = "child-0"
        for level in range(2, depth):
            store.create(f"chain-{level}", parent, _changes(level + 10, parent_size, change_count), created_by="bench")
            parent = f"chain-{level}"
        started = time.perf_counter()
        members = store.members(parent)
        chain_resolve_s = time.perf_counter() - started
        expected = store.get(parent).stats["total"]
        if len(members) != expected:
            raise click.ClickException(f"{parent}: resolved {len(members)} members, its stats say {expected}")
        chain_length = store.chain_length(parent)
    finally:
        drop_database(isolated)

    create_s = min(create_times)
    figures = {
        "create_s": create_s,
        "copy_s": copy_s,
        "speedup": copy_s / create_s,
        "chain_resolve_s": chain_resolve_s,
        "chain_length": chain_length,
        "chain_members": len(members),
        "parent_size": parent_size,
        "changes": change_count,
        "parent_load_s": load_s,
    }
    targets = {
        "create_s < 1": create_s < 1,
        "speedup >= 100": figures["speedup"] >= 100,
        f"chain_resolve_s < 10 ({depth} deep)": chain_resolve_s < 10,
    }
    print_figures("Dataset version benchmark (PostgreSQL)", figures, targets, as_json)
