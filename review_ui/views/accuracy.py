"""The Sites page: audited accuracy per site and camera, OOD rate, silent miscounts and drift marks."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from review_ui.audited_accuracy import (
    AccuracyFilter,
    day_rows,
    drift_marks,
    figures_by_group,
    model_versions,
    serving_model,
    site_reports,
)
from review_ui.views.common import services

blueprint = Blueprint("accuracy", __name__)


@blueprint.get("/accuracy")
def accuracy() -> tuple[str, int] | str:
    error = None
    try:
        selection = AccuracyFilter.from_args(request.args)
    except ValueError as problem:
        error, selection = str(problem), AccuracyFilter()
    with services().sessions() as session:
        groups = figures_by_group(session, selection)
        html = render_template("accuracy.html", sites=site_reports(groups, drift_marks(session)),
                               days=day_rows(groups), selection=selection, models=model_versions(session),
                               serving=serving_model(session), error=error)
    return (html, 400) if error else html
