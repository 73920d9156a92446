"""The scoring monitor's PostgreSQL side: tallies with their read positions, drift states, model references.

Tally increments and the next offset of every partition they came from are written in one transaction, after
checking that the stored offsets are still where this consumer found them: an increment is therefore counted
exactly once, even when a rebalance hands a partition to another UI process while a batch is in flight (the
late writer finds the offsets moved and drops its batch).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from infra.db.models import CameraDrift, ModelVersion, MonitorOffset, ScoringTally

Position = tuple[str, int]  # (topic, partition)


@dataclass(frozen=True)
class TallyKey:
    day: date
    site_id: str
    camera_id: str
    model_version: str


@dataclass(frozen=True)
class Reference:
    """What a model version's drift is measured against."""

    energy_quantiles: list[float] | None
    review_rate: float | None


class StaleOffsets(RuntimeError):
    """Another consumer moved the offsets since this one read them: its batch must not be counted."""


def stored_offsets(session: Session, topics: Iterable[str]) -> dict[Position, int]:
    rows = session.execute(select(MonitorOffset.topic, MonitorOffset.partition, MonitorOffset.next_offset)
                           .where(MonitorOffset.topic.in_(list(topics))))
    return {(topic, partition): next_offset for topic, partition, next_offset in rows}


def record_batch(session: Session, expected: Mapping[Position, int | None], next_offsets: Mapping[Position, int],
                 increments: Mapping[TallyKey, tuple[int, int]]) -> None:
    """Add (classified, ood) `increments` and move every partition of `next_offsets` on, in the caller's
    transaction. `expected` holds the offset each partition had when this consumer read it (None: no row).
    Raises StaleOffsets when a stored offset differs from it."""
    positions = sorted(next_offsets)
    stored = dict(((topic, partition), offset) for topic, partition, offset in session.execute(
        select(MonitorOffset.topic, MonitorOffset.partition, MonitorOffset.next_offset)
        .where(tuple_(MonitorOffset.topic, MonitorOffset.partition).in_(positions))
        .order_by(MonitorOffset.topic, MonitorOffset.partition).with_for_update()))
    moved = [position for position in positions if stored.get(position) != expected.get(position)]
    if moved:
        raise StaleOffsets(f"offsets of {moved} moved since they were read: another consumer counted there")
    # Keys in one order: two writers of the same rows wait for each other instead of deadlocking.
    for key in sorted(increments, key=lambda k: (k.day, k.site_id, k.camera_id, k.model_version)):
        classified, ood = increments[key]
        statement = insert(ScoringTally).values(day=key.day, site_id=key.site_id, camera_id=key.camera_id,
                                                model_version=key.model_version, classified=classified, ood=ood)
        session.execute(statement.on_conflict_do_update(
            index_elements=[ScoringTally.day, ScoringTally.site_id, ScoringTally.camera_id,
                            ScoringTally.model_version],
            set_={"classified": ScoringTally.classified + statement.excluded.classified,
                  "ood": ScoringTally.ood + statement.excluded.ood}))
    for topic, partition in positions:
        next_offset = next_offsets[(topic, partition)]
        if (topic, partition) in stored:
            session.execute(update(MonitorOffset).where(MonitorOffset.topic == topic,
                                                        MonitorOffset.partition == partition)
                            .values(next_offset=next_offset))
            continue
        created = session.execute(insert(MonitorOffset).values(topic=topic, partition=partition,
                                                               next_offset=next_offset)
                                  .on_conflict_do_nothing().returning(MonitorOffset.partition)).first()
        if created is None:  # another writer created the row since this one looked
            raise StaleOffsets(f"offsets of {(topic, partition)} appeared since they were read")


def references(session: Session, model_versions: Iterable[str]) -> dict[str, Reference]:
    rows = session.execute(select(ModelVersion.version, ModelVersion.energy_quantiles, ModelVersion.review_rate)
                           .where(ModelVersion.version.in_(sorted(set(model_versions)))))
    return {name: Reference(quantiles, review_rate) for name, quantiles, review_rate in rows}


def drift_states(session: Session, camera_ids: Iterable[str]) -> dict[str, CameraDrift]:
    rows = session.scalars(select(CameraDrift).where(CameraDrift.camera_id.in_(sorted(set(camera_ids)))))
    return {row.camera_id: row for row in rows}


def save_drift(session: Session, rows: list[dict[str, object]]) -> None:
    """Upsert each camera's latest check (the columns of CameraDrift)."""
    for row in sorted(rows, key=lambda r: str(r["camera_id"])):
        statement = insert(CameraDrift).values(**row)
        session.execute(statement.on_conflict_do_update(
            index_elements=[CameraDrift.camera_id],
            set_={column: statement.excluded[column] for column in row if column != "camera_id"}))
