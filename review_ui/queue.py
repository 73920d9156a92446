"""Reads of the review queue: filters, pages, the neighbour of an item, and items as JSON documents."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.orm import Session

from infra.db.models import ReviewItem

STATUSES = ("pending", "labelled", "discarded", "all")
KINDS = ("all", "ood", "audit")  # flagged out-of-distribution, or sampled in-distribution for an audit answer
SORTS = ("energy", "newest")
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 24


class QueryError(ValueError):
    """A filter or paging parameter that cannot be used; the message names it."""


def _parse_time(name: str, raw: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise QueryError(f"{name} must be a date-time like 2026-01-31T12:00 (UTC unless an offset is given), "
                         f"got {raw[:40]!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class QueueFilter:
    """Which items a queue shows and in what order: most uncertain (highest energy) or newest first."""

    status: str = "pending"
    kind: str = "all"
    camera: str | None = None
    predicted: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    sort: str = "energy"

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> QueueFilter:
        status = args.get("status") or "pending"
        sort = args.get("sort") or "energy"
        if status not in STATUSES:
            raise QueryError(f"status must be one of {', '.join(STATUSES)}, got {status[:40]!r}")
        if sort not in SORTS:
            raise QueryError(f"sort must be one of {', '.join(SORTS)}, got {sort[:40]!r}")
        kind = args.get("kind") or "all"
        if kind not in KINDS:
            raise QueryError(f"kind must be one of {', '.join(KINDS)}, got {kind[:40]!r}")
        since = _parse_time("since", args["since"]) if args.get("since") else None
        until = _parse_time("until", args["until"]) if args.get("until") else None
        if since and until and since >= until:
            raise QueryError("since must be before until")
        return cls(status, kind, args.get("camera") or None, args.get("predicted") or None, since, until, sort)

    def to_args(self) -> dict[str, str]:
        """The query-string form, without defaults, for links that keep the filter."""
        defaults = asdict(QueueFilter())
        return {key: value.isoformat() if isinstance(value, datetime) else value
                for key, value in asdict(self).items() if value and value != defaults[key]}

    def with_status(self, status: str) -> QueueFilter:
        return replace(self, status=status)

    def with_kind(self, kind: str) -> QueueFilter:
        return replace(self, kind=kind)

    def _order(self) -> tuple[Any, Any]:
        column = ReviewItem.energy if self.sort == "energy" else ReviewItem.captured_at
        return column, ReviewItem.id

    def query(self) -> Select[tuple[ReviewItem]]:
        statement = select(ReviewItem)
        if self.status != "all":
            statement = statement.where(ReviewItem.status == self.status)
        if self.kind != "all":
            statement = statement.where(ReviewItem.kind == self.kind)
        if self.camera:
            statement = statement.where(ReviewItem.camera_id == self.camera)
        if self.predicted:
            statement = statement.where(ReviewItem.predicted_class == self.predicted)
        if self.since:
            statement = statement.where(ReviewItem.captured_at >= self.since)
        if self.until:
            statement = statement.where(ReviewItem.captured_at < self.until)
        return statement

    def ordered(self) -> Select[tuple[ReviewItem]]:
        first, second = self._order()
        return self.query().order_by(first.desc(), second.desc())


@dataclass(frozen=True)
class QueuePage:
    items: list[ReviewItem]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def parse_paging(args: Mapping[str, str]) -> tuple[int, int]:
    try:
        page = int(args.get("page") or 1)
        per_page = int(args.get("per_page") or DEFAULT_PER_PAGE)
    except ValueError:
        raise QueryError("page and per_page must be whole numbers") from None
    if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        raise QueryError(f"page must be >= 1 and per_page between 1 and {MAX_PER_PAGE}")
    return page, per_page


def queue_page(session: Session, queue: QueueFilter, page: int, per_page: int) -> QueuePage:
    total = session.scalar(select(func.count()).select_from(queue.query().subquery())) or 0
    items = list(session.scalars(queue.ordered().offset((page - 1) * per_page).limit(per_page)))
    return QueuePage(items, total, page, per_page)


def neighbour(session: Session, queue: QueueFilter, item: ReviewItem, direction: str) -> ReviewItem | None:
    """The item after (or before) this one in the queue's order, whatever this item's own status is now.

    Keyset on (sort column, id): after labelling an item the operator gets the next one, not the first.
    """
    first, second = queue._order()
    here = tuple_(first, second)
    value = (item.energy if queue.sort == "energy" else item.captured_at, item.id)
    if direction == "next":
        statement = queue.query().where(here < tuple_(*value)).order_by(first.desc(), second.desc())
    elif direction == "prev":
        statement = queue.query().where(here > tuple_(*value)).order_by(first.asc(), second.asc())
    else:
        raise QueryError(f"direction must be next or prev, got {direction[:20]!r}")
    return session.scalars(statement.limit(1)).first()


def facets(session: Session) -> dict[str, list[str]]:
    """The cameras and predicted classes in the queue, for the filter drop-downs."""
    return {
        "cameras": list(session.scalars(select(ReviewItem.camera_id).distinct().order_by(ReviewItem.camera_id))),
        "predicted": list(session.scalars(select(ReviewItem.predicted_class).distinct()
                                          .order_by(ReviewItem.predicted_class))),
    }


def kind_counts(session: Session, queue: QueueFilter) -> dict[str, int]:
    """How many items each kind filter would show with the queue's other filters: the counts of the kind chips."""
    grouped = dict(session.execute(queue.with_kind("all").query().with_only_columns(ReviewItem.kind, func.count())
                                   .group_by(ReviewItem.kind)).all())
    return {"all": sum(grouped.values()), "ood": grouped.get("ood", 0), "audit": grouped.get("audit", 0)}


def status_counts(session: Session) -> dict[str, int]:
    """How many items have each status (pending, labelled, discarded; 0 for a status no item has)."""
    grouped = dict(session.execute(select(ReviewItem.status, func.count()).group_by(ReviewItem.status)).tuples().all())
    return {status: grouped.get(status, 0) for status in STATUSES if status != "all"}


def top_probabilities(classes: list[str], probabilities: list[float], count: int = 5) -> list[dict[str, Any]]:
    ranked = sorted(zip(classes, probabilities, strict=True), key=lambda pair: pair[1], reverse=True)
    return [{"class": name, "probability": round(float(p), 6)} for name, p in ranked[:count]]


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if moment else None


def item_document(item: ReviewItem) -> dict[str, Any]:
    """An item as the API and the page scripts see it."""
    return {
        "id": item.id,
        "source_event_id": item.source_event_id,
        "kind": item.kind,
        "image": {"bucket": item.bucket, "object_key": item.object_key, "sha256": item.sha256},
        "image_url": f"/images/{item.object_key}",
        "thumbnail_url": f"/thumbnails/{item.object_key}",
        "camera_id": item.camera_id,
        "site_id": item.site_id,
        "captured_at": _iso(item.captured_at),
        "flagged_at": _iso(item.flagged_at),
        "model_version": item.model_version,
        "predicted_class": item.predicted_class,
        "confidence": item.confidence,
        "energy": item.energy,
        "reason": item.reason,
        "thresholds": item.thresholds,
        "top5": top_probabilities(item.classes, item.probabilities),
        "status": item.status,
        "label": item.label,
        "decided_by": item.decided_by,
        "decided_at": _iso(item.decided_at),
    }
