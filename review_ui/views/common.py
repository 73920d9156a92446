"""Helpers the route modules share: the running services, JSON bodies, action responses."""

from __future__ import annotations

from typing import Any

from flask import current_app, g, jsonify, request
from werkzeug.exceptions import BadRequest

from infra.db.models import WasteClass
from review_ui.actions import ActionResult
from review_ui.imports import ImportOutcome
from review_ui.outbox import outbox_status
from review_ui.queue import item_document
from review_ui.services import UiServices
from review_ui.ui_metrics import count_label_action

# How long an action (an import) waits for its label events to reach Kafka before answering "saved, not sent yet".
PUBLISH_WAIT_S = 3.0
IMPORT_PUBLISH_WAIT_S = 5.0


def services() -> UiServices:
    return current_app.extensions["wastex_ui"]


def operator() -> str:
    return g.operator


def class_document(waste_class: WasteClass) -> dict[str, Any]:
    return {"id": waste_class.id, "name": waste_class.name, "created_by": waste_class.created_by,
            "created_at": waste_class.created_at.isoformat() if waste_class.created_at else None}


def json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("send a JSON object (Content-Type: application/json)")
    return body


def outbox_warning(pending: int, last_error: str | None) -> str | None:
    if not pending:
        return None
    cause = f" (last error: {last_error})" if last_error else ""
    return (f"The label log (Kafka) is not reachable: {pending} label event(s) are saved and waiting; they are "
            f"sent automatically when it is back. Nothing is lost.{cause}")


def action_payload(result: ActionResult) -> dict[str, Any]:
    """The answer to an action, after waiting briefly for its events to be acknowledged by Kafka."""
    svc = services()
    published = svc.drainer.wait_for(result.event_ids, PUBLISH_WAIT_S)
    with svc.sessions() as session:
        status = outbox_status(session)
    return {
        "action_id": result.action_id,
        "kind": result.kind,
        "replayed": result.replayed,
        "label": result.label,
        "new_class": result.new_class,
        "changed": [item_document(item) for item in result.changed],
        "unchanged": result.unchanged,
        "events": result.event_ids,
        "published": published,
        "outbox": status.as_dict(),
        "warning": None if published else outbox_warning(status.pending, status.last_error or svc.drainer.last_error),
    }


def action_response(result: ActionResult) -> Any:
    """The answer to an action; every action answers through here, so this is where it is counted."""
    if not result.replayed:  # an action_id sent again did nothing new
        count_label_action(result.kind)
    return jsonify(action_payload(result))


def import_uploads(label: str, new_class: bool) -> tuple[list[ImportOutcome], str | None]:
    """Import the request's `files` with one class; the outcomes and a warning if events wait in the outbox.

    Raises BadRequest when no file was sent and ImportRefused when the class cannot be used.
    """
    uploads = request.files.getlist("files")
    if not any(upload.filename for upload in uploads):
        raise BadRequest("no files: choose one or more images (multipart field 'files')")
    svc = services()
    outcomes = svc.importer.import_files(((upload.filename or "unnamed", upload.read()) for upload in uploads),
                                         label, operator(), create_class=new_class)
    count_label_action("import")
    event_ids = [o.event_id for o in outcomes if o.event_id and o.status in {"imported", "relabelled"}]
    if svc.drainer.wait_for(event_ids, IMPORT_PUBLISH_WAIT_S):
        return outcomes, None
    with svc.sessions() as session:
        status = outbox_status(session)
    return outcomes, outbox_warning(status.pending, status.last_error or svc.drainer.last_error)
