"""The queue's Groups view: pending items grouped by visual similarity, each group labelled in one bulk action.

Labelling goes through the existing bulk action (POST /api/label), so a group is undone as one action and emits
one LabelAssigned per image, like any other bulk label.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.exceptions import BadRequest

from infra.db.models import ReviewItem
from review_ui.class_registry import list_classes
from review_ui.queue import QueryError, QueueFilter, item_document
from review_ui.similar_groups import MAX_GROUPED, Grouping, SimilarGroups
from review_ui.views.common import class_document, services

blueprint = Blueprint("groups", __name__)
GROUPER = "wastex_similar_groups"
MIN_DISTANCE, MAX_DISTANCE, DISTANCE_STEP = 0.05, 1.0, 0.05


def _grouper() -> SimilarGroups:
    grouper = current_app.extensions.get(GROUPER)
    if grouper is None:
        grouper = current_app.extensions[GROUPER] = SimilarGroups(services().settings.review_group_distance)
    return grouper


def _filter() -> QueueFilter:
    try:
        return QueueFilter.from_args(request.args)
    except QueryError as problem:
        raise BadRequest(str(problem)) from None


def _distance() -> float | None:
    """The `distance` query parameter (a cosine distance), or None for the configured one."""
    raw = request.args.get("distance")
    if not raw:
        return None
    try:
        distance = float(raw)
    except ValueError:
        distance = float("nan")
    if not MIN_DISTANCE <= distance <= MAX_DISTANCE:
        raise BadRequest(f"distance must be a number from {MIN_DISTANCE} to {MAX_DISTANCE}, got {raw[:20]!r}")
    return distance


def _documents(session: Session, grouping: Grouping) -> list[dict[str, Any]]:
    """Each group with its items as the queue shows them, and the classes the model predicted for them."""
    ids = [item_id for group in grouping.groups for item_id in group.item_ids]
    items = {item.id: item for item in session.scalars(select(ReviewItem).where(ReviewItem.id.in_(ids)))}
    documents = []
    for group in grouping.groups:
        members = [item_document(items[item_id]) for item_id in group.item_ids if item_id in items]
        predicted = Counter(member["predicted_class"] for member in members).most_common()
        documents.append({"size": len(members), "model_version": group.model_version,
                          "predicted": [{"class": name, "count": count} for name, count in predicted],
                          "max_energy": max(member["energy"] for member in members), "items": members})
    return documents


@blueprint.get("/queue/groups")
def groups() -> str:
    queue = _filter()
    with services().sessions() as session:
        grouping = _grouper().pending(session, queue, _distance())
        documents = _documents(session, grouping)
        classes = [class_document(c) for c in list_classes(session)]
    steps = {"tighter": max(MIN_DISTANCE, grouping.distance - DISTANCE_STEP),
             "looser": min(MAX_DISTANCE, grouping.distance + DISTANCE_STEP)}
    return render_template("groups.html", groups=[g for g in documents if g["size"] > 1],
                           alone=sum(1 for g in documents if g["size"] == 1), grouping=grouping, classes=classes,
                           limit=MAX_GROUPED, filter_args=queue.to_args(),
                           steps={name: round(value, 2) for name, value in steps.items()})


@blueprint.get("/api/groups")
def api_groups() -> Response:
    """Pending images grouped by visual similarity (the model's embedding), largest group first.

    Takes the /api/ood filters (camera, predicted, since, until; status and sort are always pending and energy)
    and distance (cosine, 0.05-1; default WASTEX_GROUP_DISTANCE): larger makes fewer, larger, less pure groups.
    Only the 500 most uncertain pending images are grouped; images without an embedding are left out.
    Returns {"groups": [{"size", "model_version", "predicted": [{"class", "count"}], "max_energy", "items": [item]}],
    "grouped", "without_embedding", "beyond_limit", "distance"}; a group of one is an image like no other.
    Label a group with POST /api/label {"ids": [its item ids], "label"}.
    """
    queue = _filter()
    with services().sessions() as session:
        grouping = _grouper().pending(session, queue, _distance())
        documents = _documents(session, grouping)
    return jsonify(groups=documents, grouped=grouping.grouped, without_embedding=grouping.without_embedding,
                   beyond_limit=grouping.beyond_limit, distance=grouping.distance)
