"""Model pages: the registry, which model serves, an admin's promote and rollback, and the trail of both."""

from __future__ import annotations

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from infra.db import audit
from infra.db.models import ModelVersion, TrainingRun
from infra.db.registry import RegistryError, promote, rollback
from infra.publisher import PublishError
from review_ui.roles import admin_only
from review_ui.views.common import operator, services

blueprint = Blueprint("models", __name__)
SOURCE = "review_ui"
TRAIL_SHOWN = 20


@blueprint.get("/models")
def models() -> str:
    with services().sessions() as session:
        rows = list(session.scalars(select(ModelVersion).order_by(ModelVersion.created_at.desc())))
        # The trainer names a candidate after its run.
        versions = [row.version for row in rows]
        trained = set(session.scalars(select(TrainingRun.run_id).where(TrainingRun.run_id.in_(versions))))
        trail = audit.recent(session, actions=audit.MODEL_ACTIONS, limit=TRAIL_SHOWN)
    earlier = sorted((row for row in rows if row.status != "production" and row.promoted_at),
                     key=lambda row: row.promoted_at, reverse=True)
    return render_template("models.html", rows=rows, trained=trained, rollback_target=earlier[0] if earlier else None,
                           trail=trail)


@blueprint.post("/models/<version>/promote")
@admin_only
def promote_model(version: str) -> Response:
    """Serve VERSION in every scoring worker; the registry row changes only once Kafka has the event."""
    return _move_production(lambda: promote(services().settings, version, operator(), source=SOURCE))


@blueprint.post("/models/rollback")
@admin_only
def rollback_model() -> Response:
    to_version = request.form.get("to") or None
    return _move_production(lambda: rollback(services().settings, to_version, operator(), source=SOURCE))


def _move_production(move) -> Response:
    try:
        event = move()
    except RegistryError as error:
        flash(str(error), "error")
    except PublishError as error:
        flash(f"Nothing changed: Kafka did not acknowledge the promotion ({error}). Try again.", "error")
    else:
        payload = event.payload
        flash(f"{payload['model_version']} (digest {payload['artefact_digest'][:12]}) now serves "
              f"(was {payload['previous_model_version'] or 'none'}); "
              "the scoring workers swap to it between batches.", "ok")
    return redirect(url_for("models.models"))
