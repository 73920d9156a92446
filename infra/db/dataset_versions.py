"""Delta dataset versions in PostgreSQL: a child stores only what changed against its parent.

An image's state in a version is the entry nearest to it along the parent chain (stopping at a snapshot);
the version's members are the images whose nearest entry is present. An image keeps its split and its site
(where its camera captured it) along the chain; a relabelling without a site keeps the one it had. Creating a
version looks up only the changed images in the parent chain and writes their rows, so its cost follows the
change, not the dataset.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import CTE, Select, delete, false, func, insert, literal, select, true, update
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session, sessionmaker

from infra.db import audit
from infra.db.classes import add_class
from infra.db.models import DatasetEntry, DatasetVersion, StagedLabel
from schemas.dataset_manifest import SPLITS, split_for_digest


@dataclass(frozen=True)
class Member:
    sha256: str
    label: str
    split: str
    object_key: str
    site: str | None = None  # where the image was captured; None: a seed, registered or imported image


@dataclass(frozen=True)
class Change:
    """What a version does to one image: label it (add or relabel) or, with `label=None`, remove it.

    A new image's split comes from its digest unless `split` names one (a registered train/val/test folder);
    an image already in the dataset keeps its split. `site` is where the image was captured (None: not known,
    which keeps the site an existing image has).
    """

    sha256: str
    label: str | None
    object_key: str | None = None
    split: str | None = None
    site: str | None = None


@dataclass
class VersionDiff:
    added: list[Member] = field(default_factory=list)
    removed: list[Member] = field(default_factory=list)
    relabelled: list[tuple[Member, Member]] = field(default_factory=list)  # (before, after)


class VersionError(ValueError):
    """A version request that cannot be carried out (unknown parent, name taken, ...)."""


def empty_stats() -> dict[str, Any]:
    """The shape of DatasetVersionCreated's stats: every split named, only classes with members."""
    return {"total": 0, "per_class": {}, "per_split": dict.fromkeys(SPLITS, 0)}


def _count(stats: dict[str, Any], label: str, split: str, step: int) -> None:
    stats["total"] += step
    stats["per_split"][split] += step
    stats["per_class"][label] = stats["per_class"].get(label, 0) + step
    if stats["per_class"][label] == 0:
        del stats["per_class"][label]


def _chain(version_id: int) -> CTE:
    """The version and its ancestors up to the nearest snapshot, with their distance from the version."""
    start = (select(DatasetVersion.id, DatasetVersion.parent_id, DatasetVersion.snapshot,
                    literal(0).label("distance"))
             .where(DatasetVersion.id == version_id)
             .cte("chain", recursive=True))
    parent = select(DatasetVersion.id, DatasetVersion.parent_id, DatasetVersion.snapshot,
                    (start.c.distance + 1).label("distance")).join(start, DatasetVersion.id == start.c.parent_id)
    return start.union_all(parent.where(start.c.snapshot == false()))


def _nearest_entries(version_id: int, sha256s: Sequence[str] | None = None) -> Select:
    """Per image, its entry nearest to the version along the chain (present or not)."""
    chain = _chain(version_id)
    query = (select(DatasetEntry.sha256, DatasetEntry.present, DatasetEntry.label, DatasetEntry.split,
                    DatasetEntry.object_key, DatasetEntry.site_id)
             .join(chain, chain.c.id == DatasetEntry.version_id)
             .ext(distinct_on(DatasetEntry.sha256))
             .order_by(DatasetEntry.sha256, chain.c.distance))
    if sha256s is not None:
        query = query.where(DatasetEntry.sha256.in_(sha256s))
    return query


class VersionStore:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def get(self, name: str) -> DatasetVersion:
        with self._sessions() as session:
            version = session.scalars(select(DatasetVersion).where(DatasetVersion.name == name)).one_or_none()
        if version is None:
            raise VersionError(f"no dataset version named {name!r}")
        return version

    def parent_name(self, version: DatasetVersion) -> str | None:
        if version.parent_id is None:
            return None
        with self._sessions() as session:
            return session.scalar(select(DatasetVersion.name).where(DatasetVersion.id == version.parent_id))

    def versions(self) -> list[DatasetVersion]:
        with self._sessions() as session:
            return list(session.scalars(select(DatasetVersion).order_by(DatasetVersion.id)))

    def by_request(self, request_id: str) -> DatasetVersion | None:
        with self._sessions() as session:
            return session.scalars(select(DatasetVersion).where(DatasetVersion.request_id == request_id)
                                   ).one_or_none()

    def create(self, name: str, parent: str | None, changes: Iterable[Change], *, created_by: str,
               notes: str = "", request_id: str | None = None) -> DatasetVersion:
        """The parent plus `changes`; only images whose state really changes get a row.

        With a `request_id` that already made a version, that version is returned and nothing is written.
        """
        with self._sessions.begin() as session:
            return self.create_in(session, name, parent, changes, created_by=created_by, notes=notes,
                                  request_id=request_id)

    def create_in(self, session: Session, name: str, parent: str | None, changes: Iterable[Change], *,
                  created_by: str, notes: str = "", request_id: str | None = None) -> DatasetVersion:
        """`create` inside the caller's transaction (the builder clears its staging in the same one)."""
        latest = {change.sha256: change for change in changes}  # a later change of one image wins
        if request_id is not None:
            existing = session.scalars(select(DatasetVersion).where(DatasetVersion.request_id == request_id)
                                       ).one_or_none()
            if existing is not None:
                return existing
        if session.scalar(select(DatasetVersion.id).where(DatasetVersion.name == name)) is not None:
            raise VersionError(f"a dataset version named {name!r} exists already")
        base = None
        if parent is not None:
            base = session.scalars(select(DatasetVersion).where(DatasetVersion.name == parent)).one_or_none()
            if base is None:
                raise VersionError(f"no parent dataset version named {parent!r}")
        before = {} if base is None else {
            row.sha256: row for row in session.execute(_nearest_entries(base.id, list(latest))) if row.present}
        stats = empty_stats() if base is None else {
            "total": base.stats["total"], "per_class": dict(base.stats["per_class"]),
            "per_split": dict(base.stats["per_split"])}
        rows, tally = [], Counter({"added": 0, "relabelled": 0, "removed": 0})
        for sha256, change in latest.items():
            old = before.get(sha256)
            if change.label is None:
                if old is None:
                    continue
                _count(stats, old.label, old.split, -1)
                rows.append({"sha256": sha256, "present": False, "label": None, "split": None, "object_key": None,
                             "site_id": None})
                tally["removed"] += 1
                continue
            if old is not None and old.label == change.label:
                continue
            split = old.split if old is not None else change.split or split_for_digest(sha256)
            if old is not None:
                _count(stats, old.label, old.split, -1)
            _count(stats, change.label, split, +1)
            rows.append({"sha256": sha256, "present": True, "label": change.label, "split": split,
                         "object_key": change.object_key or (old.object_key if old else None),
                         "site_id": change.site or (old.site_id if old else None)})
            tally["relabelled" if old is not None else "added"] += 1
        known = set() if base is None else set(base.stats["per_class"])
        version = DatasetVersion(name=name, parent_id=None if base is None else base.id, snapshot=base is None,
                                 request_id=request_id, created_by=created_by, notes=notes, stats=stats,
                                 changes=dict(tally), classes_introduced=sorted(set(stats["per_class"]) - known))
        session.add(version)
        for class_name in version.classes_introduced:
            add_class(session, class_name, created_by)
        session.flush()
        if rows:
            session.execute(insert(DatasetEntry), [{"version_id": version.id, **row} for row in rows])
        return version

    def members(self, name: str) -> list[Member]:
        """The full membership of a version, resolved along its delta chain, in sha256 order."""
        version = self.get(name)
        with self._sessions() as session:
            return [Member(row.sha256, row.label, row.split, row.object_key, row.site_id)
                    for row in session.execute(_nearest_entries(version.id)) if row.present]

    def members_page(self, name: str, *, label: str | None = None, split: str | None = None, offset: int = 0,
                     limit: int = 48) -> tuple[list[Member], int]:
        """One page of a version's members (optionally of one class and split), and how many match."""
        nearest = _nearest_entries(self.get(name).id).subquery()
        query = select(nearest).where(nearest.c.present)
        if label is not None:
            query = query.where(nearest.c.label == label)
        if split is not None:
            query = query.where(nearest.c.split == split)
        with self._sessions() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery()))
            rows = session.execute(query.order_by(nearest.c.sha256).offset(offset).limit(limit))
            return [Member(row.sha256, row.label, row.split, row.object_key, row.site_id) for row in rows], total

    def lineage(self, name: str) -> list[DatasetVersion]:
        """The version and its ancestors, nearest first."""
        chain = [self.get(name)]
        while (parent := self.parent_name(chain[-1])) is not None:
            chain.append(self.get(parent))
        return chain

    def chain_length(self, name: str) -> int:
        """How many versions a resolution of `name` reads (1 for a snapshot)."""
        chain = _chain(self.get(name).id)
        with self._sessions() as session:
            return session.scalar(select(func.count()).select_from(chain))

    def snapshot(self, name: str) -> None:
        """Store the full membership in the version itself, so resolving it (and its children) stops here."""
        members = self.members(name)
        with self._sessions.begin() as session:
            version = session.scalars(select(DatasetVersion).where(DatasetVersion.name == name)
                                      .with_for_update()).one()
            if version.snapshot:
                return
            session.execute(delete(DatasetEntry).where(DatasetEntry.version_id == version.id))
            if members:
                session.execute(insert(DatasetEntry), [
                    {"version_id": version.id, "sha256": m.sha256, "present": True, "label": m.label,
                     "split": m.split, "object_key": m.object_key, "site_id": m.site} for m in members])
            version.snapshot = True

    def diff(self, older: str, newer: str) -> VersionDiff:
        before = {m.sha256: m for m in self.members(older)}
        after = {m.sha256: m for m in self.members(newer)}
        result = VersionDiff()
        for sha256, member in after.items():
            previous = before.get(sha256)
            if previous is None:
                result.added.append(member)
            elif previous.label != member.label:
                result.relabelled.append((previous, member))
        result.removed = [member for sha256, member in before.items() if sha256 not in after]
        return result

    def staged(self) -> list[StagedLabel]:
        """The builder's staged decisions that no version has taken yet, oldest first."""
        with self._sessions() as session:
            query = select(StagedLabel).where(StagedLabel.pending).order_by(StagedLabel.decided_at)
            return list(session.scalars(query))

    def staged_count(self) -> int:
        with self._sessions() as session:
            return session.scalar(select(func.count()).select_from(StagedLabel).where(StagedLabel.pending))

    def record_manifest(self, name: str, uri: str, sha256: str) -> None:
        with self._sessions.begin() as session:
            session.execute(update(DatasetVersion).where(DatasetVersion.name == name)
                            .values(manifest_uri=uri, manifest_sha256=sha256))

    def mark_announced(self, name: str) -> None:
        with self._sessions.begin() as session:
            session.execute(update(DatasetVersion).where(DatasetVersion.name == name)
                            .values(announced_at=func.now()))

    def unannounced(self) -> list[DatasetVersion]:
        """Versions whose DatasetVersionCreated was not acknowledged yet (a builder stopped in between)."""
        with self._sessions() as session:
            return list(session.scalars(select(DatasetVersion).where(DatasetVersion.announced_at.is_(None))
                                        .order_by(DatasetVersion.id)))

    def activate(self, name: str, *, by: str) -> None:
        """Make `name` the active version; `by` (who asked) goes to the audit trail in the same transaction."""
        with self._sessions.begin() as session:
            target = session.scalars(select(DatasetVersion).where(DatasetVersion.name == name)).one_or_none()
            if target is None:
                raise VersionError(f"no dataset version named {name!r}")
            previous = session.scalars(select(DatasetVersion.name).where(DatasetVersion.active == true())).first()
            session.execute(update(DatasetVersion).where(DatasetVersion.active == true()).values(active=False))
            session.flush()
            target.active = True
            audit.record(session, by, "activate", name, {"previous": previous})

    def active(self) -> DatasetVersion | None:
        with self._sessions() as session:
            return session.scalars(select(DatasetVersion).where(DatasetVersion.active == true())).one_or_none()
