"""Pending review items grouped by visual similarity, so an operator can label a whole group in one action.

Similarity is the cosine distance between the scoring model's penultimate embeddings (sent with the event):
average-linkage agglomerative clustering cut at a distance threshold, within one model version (two models'
features are not comparable). Only the `MAX_GROUPED` most uncertain pending items are grouped, so a request
stays bounded however long the queue is; items without an embedding are left out and counted. Embeddings
never change, so a grouping is cached by the exact items it was computed from and is never stale.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics.pairwise import cosine_distances
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from infra.db.models import ReviewItem
from review_ui.queue import QueueFilter

MAX_GROUPED = 500  # the most uncertain pending items that are grouped
CACHED_GROUPINGS = 8


def group_embeddings(embeddings: np.ndarray, distance: float) -> np.ndarray:
    """A group label per row: rows whose average cosine distance stays within `distance` share a label."""
    if len(embeddings) < 2:
        return np.zeros(len(embeddings), dtype=int)
    # Precomputed: sklearn's own cosine metric refuses an all-zero row; here it is at distance 1 from every other.
    distances = cosine_distances(embeddings)
    clustering = AgglomerativeClustering(n_clusters=None, metric="precomputed", linkage="average",
                                         distance_threshold=distance)
    return clustering.fit_predict(distances)


@dataclass(frozen=True)
class SimilarGroup:
    """Item ids of one group, most uncertain first, all scored by `model_version`."""

    model_version: str
    item_ids: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.item_ids)


@dataclass(frozen=True)
class Grouping:
    """The groups (largest first, then most uncertain first) and what was left out of them."""

    groups: tuple[SimilarGroup, ...]
    grouped: int  # items in groups
    without_embedding: int  # among the most uncertain MAX_GROUPED pending items
    beyond_limit: int  # pending items past the MAX_GROUPED most uncertain ones
    distance: float  # the cosine distance threshold the groups were cut at


def _cluster(ranked: list[tuple[int, str, list[float]]], distance: float) -> tuple[SimilarGroup, ...]:
    """Groups of (id, model version, embedding) rows given most uncertain first; group order follows the rows."""
    members: dict[tuple[str, int, int], list[int]] = {}
    by_version: dict[tuple[str, int], list[int]] = {}
    for index, (_, version, embedding) in enumerate(ranked):
        by_version.setdefault((version, len(embedding)), []).append(index)
    for (version, size), indices in by_version.items():
        labels = group_embeddings(np.array([ranked[i][2] for i in indices], dtype=np.float64), distance)
        for index, label in zip(indices, labels, strict=True):
            members.setdefault((version, size, int(label)), []).append(index)
    groups = sorted(members.items(), key=lambda entry: (-len(entry[1]), entry[1][0]))
    return tuple(SimilarGroup(version, tuple(ranked[i][0] for i in indices)) for (version, _, _), indices in groups)


class SimilarGroups:
    """Groupings of the pending queue, cached by the items and threshold they were computed from."""

    def __init__(self, distance: float, limit: int = MAX_GROUPED) -> None:
        self.distance = distance
        self.limit = limit
        self._cache: OrderedDict[tuple, tuple[SimilarGroup, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def pending(self, session: Session, queue: QueueFilter | None = None, distance: float | None = None
                ) -> Grouping:
        """The groups among the `limit` most uncertain pending items that `queue` (camera, class...) shows, at
        `distance` (default: the one this grouper was made with)."""
        distance = self.distance if distance is None else distance
        pending = replace(queue or QueueFilter(), status="pending", sort="energy")
        has_embedding = func.coalesce(func.json_typeof(ReviewItem.embedding), "null") == "array"
        rows = session.execute(pending.ordered().with_only_columns(ReviewItem.id, ReviewItem.model_version,
                                                                    has_embedding).limit(self.limit)).all()
        total = session.scalar(select(func.count()).select_from(pending.query().subquery())) or 0
        ranked_ids = [(item_id, version) for item_id, version, embedded in rows if embedded]
        key = (distance, tuple(ranked_ids))
        with self._lock:
            groups = self._cache.get(key)
            if groups is not None:
                self._cache.move_to_end(key)
        if groups is None:
            embeddings = dict(session.execute(select(ReviewItem.id, ReviewItem.embedding)
                                              .where(ReviewItem.id.in_([i for i, _ in ranked_ids]))).all())
            groups = _cluster([(i, version, embeddings[i]) for i, version in ranked_ids], distance)
            with self._lock:
                self._cache[key] = groups
                while len(self._cache) > CACHED_GROUPINGS:
                    self._cache.popitem(last=False)
        return Grouping(groups, len(ranked_ids), len(rows) - len(ranked_ids), max(0, total - len(rows)), distance)

