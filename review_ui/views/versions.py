"""Dataset version pages: the versions with lineage and statistics, what is staged, one version's images,
the difference between two versions, the active version, and a request for a new version."""

from __future__ import annotations

import uuid

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from werkzeug.exceptions import BadRequest, NotFound

from infra.db import audit
from infra.db.dataset_versions import VersionError, VersionStore
from infra.publisher import EventPublisher, PublishError
from review_ui.roles import admin_only
from review_ui.views.common import operator, services
from schemas.codec import InvalidEvent, new_event
from schemas.dataset_manifest import SPLITS
from schemas.events import EventType

blueprint = Blueprint("versions", __name__)
STAGED_SHOWN = 50
PER_PAGE = 48
REQUEST_PUBLISH_WAIT_S = 5.0
TRAIL_SHOWN = 20


def _store() -> VersionStore:
    return VersionStore(services().sessions)


def _version_or_404(store: VersionStore, name: str):
    try:
        return store.get(name)
    except VersionError as error:
        raise NotFound(str(error)) from None


@blueprint.get("/versions")
def versions() -> str:
    store = _store()
    rows = [{"version": version, "parent": store.parent_name(version)} for version in reversed(store.versions())]
    staged = store.staged()
    with services().sessions() as session:
        trail = audit.recent(session, actions=audit.DATASET_ACTIONS, limit=TRAIL_SHOWN)
    return render_template("versions.html", rows=rows, staged=staged[:STAGED_SHOWN], staged_total=len(staged),
                           names=[row["version"].name for row in rows], trail=trail)


@blueprint.post("/versions")
@admin_only
def request_version() -> Response | tuple[str, int]:
    """Ask the version builder for a version = the active version + the staged decisions."""
    payload = {"request_id": f"ui-{uuid.uuid4().hex}", "requested_by": operator(), "trigger": "manual",
               "notes": request.form.get("notes", "").strip()}
    name = request.form.get("name", "").strip()
    if name:
        payload["name"] = name
    try:
        event = new_event(EventType.CREATE_VERSION_REQUESTED, payload, "review_ui")
    except InvalidEvent as error:
        raise BadRequest(f"the version request is not valid: {error}") from None
    # The delivery either succeeds or fails within the wait, so the answer below is definite.
    publisher = EventPublisher(services().settings, **{"message.timeout.ms": int(REQUEST_PUBLISH_WAIT_S * 1000)})
    try:
        publisher.publish(event)
        publisher.flush(2 * REQUEST_PUBLISH_WAIT_S)
    except PublishError as error:
        flash(f"The version was not requested: Kafka did not acknowledge the request ({error}). Try again.",
              "error")
        return redirect(url_for("versions.versions"))
    with services().sessions.begin() as session:
        audit.record(session, operator(), "version_request", name or payload["request_id"],
                     {"request_id": payload["request_id"], "notes": payload["notes"]})
    flash(f"Version requested ({payload['request_id']}); the builder makes it from the staged decisions.", "ok")
    return redirect(url_for("versions.versions"))


@blueprint.get("/versions/<name>")
def version(name: str) -> str:
    store = _store()
    current = _version_or_404(store, name)
    label = request.args.get("class") or None
    split = request.args.get("split") or None
    if split is not None and split not in SPLITS:
        raise BadRequest(f"split must be one of {', '.join(SPLITS)}")
    try:
        page = max(1, int(request.args.get("page", "1")))
    except ValueError:
        raise BadRequest("page must be a whole number") from None
    members, total = store.members_page(name, label=label, split=split, offset=(page - 1) * PER_PAGE,
                                        limit=PER_PAGE)
    return render_template("version.html", version=current, lineage=store.lineage(name), members=members,
                           total=total, page=page, pages=max(1, -(-total // PER_PAGE)), label=label, split=split,
                           splits=SPLITS)


@blueprint.get("/version-diff")
def diff() -> str:
    store = _store()
    older, newer = request.args.get("older", ""), request.args.get("newer", "")
    for name in (older, newer):
        _version_or_404(store, name)
    return render_template("version_diff.html", older=older, newer=newer, diff=store.diff(older, newer),
                           names=[v.name for v in reversed(store.versions())])


@blueprint.post("/versions/<name>/activate")
@admin_only
def activate(name: str) -> Response:
    store = _store()
    _version_or_404(store, name)
    store.activate(name, by=operator())
    flash(f"{name} is the active dataset version.", "ok")
    return redirect(url_for("versions.version", name=name))
