"""`GET /health`: is the UI process working, or waiting for a store (the label outbox or the queue projection)?

Public like the ingest's `/health`, for probes and monitors: it tells only what the process waits for, never
any queue content or label.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from review_ui.views.common import services

blueprint = Blueprint("health", __name__)


@blueprint.get("/health")
def health() -> Response:
    """{"status": "ok"}, or {"status": "degraded", "waiting": [{"for", "reason", "since_s"}]} while the label
    outbox or the review-queue projection waits for Kafka or PostgreSQL (answered 200 either way: the UI serves)."""
    return jsonify(services().health())
