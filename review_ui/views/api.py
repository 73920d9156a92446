"""The JSON API (mirrors the seeds: OOD images, review, label, classes, counts, count history).

Every route needs a signed-in session; every POST needs the X-CSRF-Token header; routes marked admin_only
answer 403 to a labeller. The docstrings are the API documentation page (/api): first line the summary,
the rest the details.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from werkzeug.exceptions import BadRequest, NotFound

from infra.db import audit
from infra.db.models import ReviewItem
from review_ui import actions
from review_ui.actions import ActionError, run_action
from review_ui.audited_accuracy import (
    AccuracyFilter,
    counts_accuracy,
    day_rows,
    drift_marks,
    figures_by_group,
    site_reports,
)
from review_ui.class_registry import ClassNameError, ensure_class, list_classes
from review_ui.counts_view import HISTORY_MINUTES
from review_ui.imports import ImportRefused
from review_ui.outbox import outbox_status
from review_ui.queue import (
    QueryError,
    QueueFilter,
    facets,
    item_document,
    kind_counts,
    neighbour,
    parse_paging,
    queue_page,
)
from review_ui.roles import admin_only
from review_ui.security import csrf_token
from review_ui.views.common import (
    action_response,
    class_document,
    import_uploads,
    json_body,
    operator,
    services,
)

blueprint = Blueprint("api", __name__, url_prefix="/api")
AUDIT_LIMIT = 50


def _flag(value: object) -> bool:
    """A JSON or form boolean; the string "false" is false."""
    return value is True or (isinstance(value, str) and value.lower() in {"true", "1", "on"})


def _item_ids(body: dict[str, Any]) -> list[int]:
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise BadRequest("ids must be a non-empty list of item ids")
    return ids


@blueprint.errorhandler(ActionError)
def action_error(error: ActionError) -> tuple[Response, int]:
    return jsonify(error=error.message), error.status


@blueprint.errorhandler(QueryError)
def query_error(error: QueryError) -> tuple[Response, int]:
    return jsonify(error=str(error)), 400


@blueprint.get("/session")
def session_info() -> Response:
    """The signed-in operator, their role and the session's CSRF token.

    Returns {"operator", "role" (labeller | admin), "csrf_token"}.
    """
    return jsonify(operator=operator(), role=g.operator_role, csrf_token=csrf_token())


@blueprint.get("/ood")
def list_ood() -> Response:
    """List OOD images (the review queue), filtered and paged.

    Query: status (pending | labelled | discarded | all; default pending), kind (ood: flagged out of
    distribution | audit: sampled in distribution for a check of the predicted class | all; default all), camera,
    predicted (class), since / until (ISO date-time, UTC unless an offset is given; on captured_at), sort (energy:
    most uncertain first, default; newest), page (from 1), per_page (1-100, default 24).
    Returns {"items": [item], "total", "page", "per_page", "pages", "facets": {"cameras", "predicted"},
    "kinds": {"all", "ood", "audit"} (how many items each kind would show with the other filters)}.
    """
    queue = QueueFilter.from_args(request.args)
    page, per_page = parse_paging(request.args)
    with services().sessions() as session:
        result = queue_page(session, queue, page, per_page)
        return jsonify(items=[item_document(item) for item in result.items], total=result.total, page=result.page,
                       per_page=result.per_page, pages=result.pages, facets=facets(session),
                       kinds=kind_counts(session, queue))


def _item(session: Any, item_id: int) -> ReviewItem:
    item = session.get(ReviewItem, item_id)
    if item is None:
        raise NotFound(f"no review item with id {item_id}")
    return item


@blueprint.get("/ood/<int:item_id>")
def get_ood(item_id: int) -> Response:
    """One review item (OOD image or audit sample): metadata, top-5 probabilities, review status.

    Returns item: {"id", "kind" (ood | audit), "image", "image_url", "thumbnail_url", "camera_id", "site_id",
    "captured_at", "flagged_at", "model_version", "predicted_class", "confidence", "energy", "reason", "thresholds",
    "top5": [{"class", "probability"}], "status", "label", "decided_by", "decided_at"}.
    """
    with services().sessions() as session:
        return jsonify(item_document(_item(session, item_id)))


@blueprint.get("/ood/<int:item_id>/<any(next, prev):direction>")
def ood_neighbour(item_id: int, direction: str) -> Response:
    """The item after (next) or before (prev) this one in a queue order; takes the /api/ood filters.

    Returns {"item": item or null}. After an action the page asks for next: the queue goes on from there.
    """
    queue = QueueFilter.from_args(request.args)
    with services().sessions() as session:
        found = neighbour(session, queue, _item(session, item_id), direction)
        return jsonify(item=item_document(found) if found else None)


@blueprint.post("/ood/<int:item_id>/label")
def label_one(item_id: int) -> Response:
    """Label one image: JSON {"label", "action_id", "new_class": false}.

    label must be a registered class (any case) unless new_class is true, which registers it first
    (names are de-duplicated without case). action_id is a fresh UUID per operator action: sending the
    same action again returns the first answer and emits nothing new.
    Returns {"action_id", "kind", "replayed", "label", "new_class", "changed": [item], "unchanged": [id],
    "events": [event id], "published", "outbox": {"pending", "last_error"}, "warning"}; published is false
    (with a warning) when Kafka is unreachable: the action is saved and its events are sent later.
    """
    body = json_body()
    result = run_action(services().sessions, actions.label_items, operator(), body.get("action_id"), [item_id],
                        str(body.get("label", "")), create_class=_flag(body.get("new_class")))
    return action_response(result)


@blueprint.post("/label")
def label_many() -> Response:
    """Bulk label: JSON {"ids": [id], "label", "action_id", "new_class": false}. Undone as one action.

    Returns the same as /api/ood/<id>/label.
    """
    body = json_body()
    result = run_action(services().sessions, actions.label_items, operator(), body.get("action_id"),
                        _item_ids(body), str(body.get("label", "")), create_class=_flag(body.get("new_class")))
    return action_response(result)


@blueprint.post("/ood/<int:item_id>/review")
def review_one(item_id: int) -> Response:
    """Mark reviewed: the operator confirms the predicted class. JSON {"action_id"}.

    Emits LabelAssigned with the predicted class (an audit confirmation; a label with another class is an audit
    correction). Every LabelAssigned of an item carries its site_id and review_kind (ood | audit).
    Returns the same as /api/ood/<id>/label.
    """
    body = json_body()
    return action_response(run_action(services().sessions, actions.mark_reviewed, operator(),
                                      body.get("action_id"), item_id))


@blueprint.post("/ood/<int:item_id>/discard")
def discard_one(item_id: int) -> Response:
    """Discard as not waste: JSON {"action_id", "reason": "not waste"}. Emits ImageDiscarded.

    Returns the same as /api/ood/<id>/label.
    """
    body = json_body()
    return action_response(run_action(services().sessions, actions.discard_items, operator(),
                                      body.get("action_id"), [item_id],
                                      str(body.get("reason") or actions.DEFAULT_DISCARD_REASON)))


@blueprint.post("/discard")
def discard_many() -> Response:
    """Bulk discard: JSON {"ids": [id], "action_id", "reason": "not waste"}. Undone as one action."""
    body = json_body()
    return action_response(run_action(services().sessions, actions.discard_items, operator(),
                                      body.get("action_id"), _item_ids(body),
                                      str(body.get("reason") or actions.DEFAULT_DISCARD_REASON)))


@blueprint.post("/undo")
def undo() -> Response:
    """Undo your latest action that is not undone yet (again: the one before). JSON {"action_id"}.

    Each image returns to its state before: back in the queue (LabelRetracted), or its earlier label
    (LabelAssigned) or discard (ImageDiscarded). 409 when there is nothing to undo or another operator
    changed an image since. Returns the same as /api/ood/<id>/label; changed holds the restored items.
    """
    body = json_body()
    return action_response(run_action(services().sessions, actions.undo_last, operator(), body.get("action_id")))


@blueprint.get("/classes")
def get_classes() -> Response:
    """The class registry in registration order (the digit shortcuts follow it).

    Returns {"classes": [{"id", "name", "created_by", "created_at"}]}.
    """
    with services().sessions() as session:
        return jsonify(classes=[class_document(c) for c in list_classes(session)])


@blueprint.post("/classes")
def create_class() -> tuple[Response, int]:
    """Register a class: JSON {"name"}. Names are trimmed, 1-64 characters, unique without case.

    Returns 201 {"class", "created": true}, or 200 {"class", "created": false} with the existing spelling.
    """
    body = json_body()
    try:
        with services().sessions() as session, session.begin():
            found, created = ensure_class(session, str(body.get("name", "")), operator())
            document = class_document(found)
    except ClassNameError as error:
        raise BadRequest(str(error)) from None
    return jsonify({"class": document, "created": created}), 201 if created else 200


@blueprint.get("/counts")
def counts() -> Response:
    """Current totals per class and per camera, from the compacted counts.totals topic, with the audited accuracy.

    Returns {"class": {name: count}, "camera": {id: count}, "as_of", "error", "accuracy": {"model_version" (the
    serving model, null without one), "camera": {id: figures}, "site": {id: figures}}}; figures: {"audited",
    "correct", "accuracy", "interval" [low, high] (95% Wilson), "scored", "ood", "ood_rate",
    "silent_miscount_rate"}, over all days of the serving model; a figure without its inputs is null.
    """
    svc = services()
    with svc.sessions() as session:
        accuracy = counts_accuracy(session)
    return jsonify({**svc.counts.totals(), "accuracy": accuracy})


@blueprint.get("/accuracy")
def accuracy() -> Response:
    """Audited accuracy per site and camera (and per day), with OOD rate, silent miscounts and drift marks.

    Query: since / until (days of capture, UTC, inclusive, like 2026-01-31), model (a model version; default all).
    Returns {"sites": [{"site_id", "rows": [{"model_version", figures}], "cameras": [{"camera_id",
    "model_version", figures, "drift": null or {"drifting", "since", "ood_rate", "energy_ks",
    "median_energy_shift", "images", "checked_at", "model_version"}}]}], "days": [{"day", "site_id",
    "camera_id", "model_version", figures}]}; figures as in /api/counts. An audit answer is correct when its
    label is the predicted class (a discard is wrong).
    """
    try:
        selection = AccuracyFilter.from_args(request.args)
    except ValueError as error:
        raise BadRequest(str(error)) from None
    with services().sessions() as session:
        groups = figures_by_group(session, selection)
        reports = site_reports(groups, drift_marks(session))
    return jsonify(sites=[{"site_id": r.site_id, "rows": r.rows, "cameras": r.cameras} for r in reports],
                   days=day_rows(groups))


@blueprint.get("/counts/history")
def counts_history() -> Response:
    """Per-minute counts of the last hour, per class (or per camera), from counts.windows.

    Query: scope (class | camera; default class), minutes (1-120; default 60).
    Returns {"scope", "minutes": [window start], "series": {name: [count per minute]}}.
    """
    scope = request.args.get("scope", "class")
    if scope not in {"class", "camera"}:
        raise BadRequest("scope must be class or camera")
    try:
        minutes = int(request.args.get("minutes", HISTORY_MINUTES))
    except ValueError:
        raise BadRequest("minutes must be a whole number") from None
    if not 1 <= minutes <= 120:
        raise BadRequest("minutes must be between 1 and 120")
    return jsonify(services().counts.history(scope, minutes))


@blueprint.post("/import")
@admin_only
def import_labelled() -> Response:
    """Import labelled images (admin): multipart form with files (one or more), label, new_class (true/false).

    Each file becomes an object images/<sha256>.<ext> and a LabelAssigned event; the same bytes with the
    same class again change nothing. Returns {"results": [{"file_name", "status", "detail", "sha256"}],
    "warning"}; status is imported, relabelled, already imported, refused (not an image, too large) or
    failed (image store down: import again). warning is set when Kafka is down (events wait in the outbox).
    """
    try:
        outcomes, warning = import_uploads(request.form.get("label", ""),
                                           _flag(request.form.get("new_class")))
    except ImportRefused as error:
        raise BadRequest(str(error)) from None
    return jsonify(results=[{"file_name": o.file_name, "status": o.status, "detail": o.detail, "sha256": o.sha256}
                            for o in outcomes], warning=warning)


@blueprint.get("/outbox")
def outbox() -> Response:
    """Label events not yet acknowledged by Kafka, and the latest ones rejected for good.

    Returns {"pending", "last_error", "oldest_pending_at", "rejected": [{"id", "event_id", "reason", "created_at"}]};
    pending > 0 for long means Kafka is down. A rejected event (it fails its contract, or Kafka refuses it for
    good) was dead-lettered and is no longer sent, so the events after it are not held up.
    """
    with services().sessions() as session:
        return jsonify(outbox_status(session).as_dict())


@blueprint.get("/audit")
@admin_only
def audit_trail() -> Response:
    """The admin audit trail, newest first (admin): who promoted, rolled back, activated, requested, imported.

    Query: action (repeatable: promote, rollback, auto-promote, activate, version_request, import,
    operator_created, password_reset, role_changed, operator_deactivated, operator_activated, sessions_ended),
    subject (a model version, dataset version, class or operator), limit (1-500, default 50).
    Returns {"entries": [{"id", "at", "operator", "action", "subject", "detail"}]}.
    """
    try:
        limit = int(request.args.get("limit", AUDIT_LIMIT))
    except ValueError:
        raise BadRequest("limit must be a whole number") from None
    if not 1 <= limit <= audit.MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {audit.MAX_LIMIT}")
    actions = request.args.getlist("action") or None
    with services().sessions() as session:
        rows = audit.recent(session, actions=actions, subject=request.args.get("subject") or None, limit=limit)
        return jsonify(entries=[audit.audit_document(row) for row in rows])
