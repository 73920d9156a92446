"""Deleting image objects: the one place that does, and only what nothing references.

An object `<prefix>/<sha256>.<ext>` of the images bucket is kept while any `dataset_entries`, `review_items`,
`imported_images` or `staged_labels` row names its sha256, or while it is a kept sample or an audit sample (an
audit sample's review row may not be projected yet). The check and the
delete run in one PostgreSQL transaction holding a transaction-scoped advisory lock on the sha256, which the
review-queue projection also takes when it inserts a review row: a capture flagged OOD while its twin is
being deleted is either seen by the check or inserted after the delete, never lost in between.

An object written again after its deletion was decided (a camera sent the same bytes anew, its event still on
its way) is left alone: its own outcome decides about it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from minio import Minio
from minio.error import S3Error
from sqlalchemy import Connection, Engine, exists, func, or_, select
from sqlalchemy.orm import Session

from infra.clients import db_engine, minio_client
from infra.db.models import DatasetEntry, ImportedImage, ReviewItem, StagedLabel
from infra.retry import is_transient
from infra.settings import Settings
from schemas.image_keys import CAPTURES, IMAGE_KEY, PREFIXES

log = logging.getLogger(__name__)

# Every table whose rows point at an image by its sha256: a row in any of them keeps the image.
REFERENCING = (DatasetEntry, ReviewItem, ImportedImage, StagedLabel)
_MISSING = {"NoSuchKey", "NoSuchObject"}
_CHUNK = 1000


def advisory_key(sha256: str) -> int:
    """The 64-bit advisory-lock key of an image: the first 16 hex digits of its sha256, as a signed bigint."""
    return int.from_bytes(bytes.fromhex(sha256[:16]), "big", signed=True)


def lock_image(connection: Connection | Session, sha256: str) -> None:
    """Hold the image's lock until the transaction ends: no reference to it is added or checked meanwhile."""
    connection.execute(select(func.pg_advisory_xact_lock(advisory_key(sha256))))


def keeps_sample(sha256: str, keep_rate: float) -> bool:
    """A fixed fraction of images, chosen by content, stays in MinIO after classification."""
    return int(sha256[:8], 16) / 0x1_0000_0000 < keep_rate


def audits_sample(sha256: str, audit_rate: float) -> bool:
    """A fixed fraction of images, chosen by content, is audited: an operator checks the predicted class.

    Digits 9-16 of the digest, not keeps_sample's 1-8: which images are audited is independent of which are kept.
    """
    return int(sha256[8:16], 16) / 0x1_0000_0000 < audit_rate


def is_referenced(connection: Connection, sha256: str) -> bool:
    return bool(connection.scalar(select(or_(*(exists().where(table.sha256 == sha256) for table in REFERENCING)))))


def referenced_among(connection: Connection, digests: Iterable[str]) -> set[str]:
    """The digests that some row references."""
    wanted, found = sorted(set(digests)), set()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start:start + _CHUNK]
        for table in REFERENCING:
            found.update(connection.scalars(select(table.sha256).where(table.sha256.in_(chunk)).distinct()))
    return found


class Verdict(StrEnum):
    DELETED = "deleted"
    REFERENCED = "referenced"
    KEPT_SAMPLE = "kept sample"
    AUDIT_SAMPLE = "audit sample"
    WRITTEN_AGAIN = "written again"  # put again after the deletion was decided
    MISSING = "missing"


@dataclass(frozen=True)
class DeletionPass:
    """What a pass over due deletions left to try again, and the passing failure that stopped it."""

    retry: list[tuple[str, str]] = field(default_factory=list)
    error: BaseException | None = None


@dataclass
class PrefixReport:
    objects: int = 0
    bytes: int = 0
    removed: int = 0  # with --dry-run: would be removed
    removed_bytes: int = 0
    kept: Counter[str] = field(default_factory=Counter)  # why: referenced, kept sample, too young, ...


@dataclass
class GcReport:
    dry_run: bool
    min_age_s: float
    prefixes: dict[str, PrefixReport] = field(default_factory=lambda: {p: PrefixReport() for p in PREFIXES})

    def as_dict(self) -> dict[str, object]:
        return {"dry_run": self.dry_run, "min_age_s": self.min_age_s,
                "prefixes": {name: {"objects": r.objects, "bytes": r.bytes, "removed": r.removed,
                                    "removed_bytes": r.removed_bytes, "kept": dict(r.kept)}
                             for name, r in self.prefixes.items()}}


@dataclass(frozen=True)
class _Candidate:
    prefix: str
    key: str
    sha256: str
    size: int


class ImageRetention:
    def __init__(self, storage: Minio, engine: Engine, bucket: str, keep_rate: float,
                 audit_rate: float = 0.0) -> None:
        self._storage = storage
        self._engine = engine
        self._bucket = bucket
        self._keep_rate = keep_rate
        self._audit_rate = audit_rate

    def _sample_verdict(self, sha256: str) -> Verdict | None:
        """Why a sample stays whatever references it: kept for good, or audited (its review row may be on its way)."""
        if keeps_sample(sha256, self._keep_rate):
            return Verdict.KEPT_SAMPLE
        if audits_sample(sha256, self._audit_rate):
            return Verdict.AUDIT_SAMPLE
        return None

    @classmethod
    def of(cls, settings: Settings) -> ImageRetention:
        """Retention over the configured images bucket and database."""
        return cls(minio_client(settings), db_engine(settings), settings.bucket_images, settings.keep_sample_rate,
                   settings.audit_rate)

    def delete_unreferenced(self, key: str, not_modified_after: datetime) -> Verdict:
        """Delete the image object `key` unless something references it, it is a kept or audit sample, or it was
        written after `not_modified_after`. Store failures are raised (see infra.retry.is_transient)."""
        match = IMAGE_KEY.fullmatch(key)
        if match is None:
            raise ValueError(f"{key!r} is not an image object key")
        sha256 = match["sha256"]
        if (sample := self._sample_verdict(sha256)) is not None:
            return sample
        with self._engine.begin() as connection:
            lock_image(connection, sha256)
            if is_referenced(connection, sha256):
                return Verdict.REFERENCED
            try:
                written = self._storage.stat_object(self._bucket, key).last_modified
            except S3Error as error:
                if error.code in _MISSING:
                    return Verdict.MISSING
                raise
            if written is not None and written > not_modified_after:
                return Verdict.WRITTEN_AGAIN
            self._storage.remove_object(self._bucket, key)
        return Verdict.DELETED

    def delete_classified_captures(self, targets: list[tuple[str, str]], delay_s: float) -> DeletionPass:
        """The scoring worker's deletions: (bucket, key) of captures classified at least `delay_s` ago, in order.

        Only captures of this bucket are ever deleted here, and none written in the last `delay_s`. A passing
        failure stops the pass and hands back the rest to try later; any other failure leaves that image behind
        (for `wastex images gc`) and goes on.
        """
        scored_before = datetime.now(UTC) - timedelta(seconds=delay_s)
        for index, (bucket, key) in enumerate(targets):
            match = IMAGE_KEY.fullmatch(key)
            if bucket != self._bucket or match is None or match["prefix"] != CAPTURES:
                log.warning("not deleting s3://%s/%s: only captures of %s are deleted after scoring", bucket, key,
                            self._bucket)
                continue
            try:
                verdict = self.delete_unreferenced(key, scored_before)
            except Exception as error:
                if is_transient(error):
                    return DeletionPass(targets[index:], error)
                log.exception("could not delete %s; it stays until `wastex images gc`", key)
                continue
            log.debug("%s: %s", key, verdict)
        return DeletionPass()

    def collect_garbage(self, min_age_s: float, *, dry_run: bool, now: datetime | None = None) -> GcReport:
        """Remove (with dry_run only count) the image objects older than min_age_s that nothing references."""
        report = GcReport(dry_run, min_age_s)
        cutoff = (now or datetime.now(UTC)) - timedelta(seconds=min_age_s)
        old: list[_Candidate] = []
        for candidate, modified in _listed(self._storage, self._bucket):
            counts = report.prefixes[candidate.prefix]
            counts.objects += 1
            counts.bytes += candidate.size
            if modified is None or modified > cutoff:
                counts.kept["too young"] += 1
            elif (sample := self._sample_verdict(candidate.sha256)) is not None:
                counts.kept[sample] += 1
            else:
                old.append(candidate)
        with self._engine.connect() as connection:
            referenced = referenced_among(connection, (c.sha256 for c in old))
        for candidate in old:
            counts = report.prefixes[candidate.prefix]
            if candidate.sha256 in referenced:
                counts.kept[Verdict.REFERENCED] += 1
                continue
            # The listing is only a first cut: the decision is made again under the image's lock.
            verdict = Verdict.DELETED if dry_run else self.delete_unreferenced(candidate.key, cutoff)
            if verdict is Verdict.DELETED:
                counts.removed += 1
                counts.removed_bytes += candidate.size
            else:
                counts.kept[verdict] += 1
        return report


def _listed(storage: Minio, bucket: str) -> Iterator[tuple[_Candidate, datetime | None]]:
    for prefix in PREFIXES:
        for obj in storage.list_objects(bucket, prefix=f"{prefix}/", recursive=True):
            match = IMAGE_KEY.fullmatch(obj.object_name)
            if match is not None:  # anything else under these prefixes is not an image this system wrote
                yield _Candidate(prefix, obj.object_name, match["sha256"], obj.size or 0), obj.last_modified
