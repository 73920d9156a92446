"""The System page: every process's health and the last hour's figures from Prometheus (admin and labeller)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, render_template

from review_ui.system_status import SYSTEM_CHARTS, system_report
from review_ui.views.common import services

blueprint = Blueprint("system", __name__)


@blueprint.get("/system")
def system() -> str:
    return render_template("system.html", report=system_report(services().settings), charts=SYSTEM_CHARTS)


@blueprint.get("/api/system")
def api_system() -> Response:
    """Processes, stream workers (health, model, images/s, lag) and the last hour's charts from Prometheus.

    {"prometheus": {"url", "error"}, "processes": [...], "workers": [...], "charts": [{"key", "title", "unit",
    "series": [{"name", "points": [[unix time, value], ...]}]}]}; without Prometheus, `error` says why and the
    workers still carry their `/health/`."""
    return jsonify(system_report(services().settings))
