"""Training run pages: every run with its status and verdict, and one run's progress, metrics, comparison
with the production model, confusion matrix and log."""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, render_template
from minio.error import S3Error
from sqlalchemy import select

from infra.db.models import ModelVersion, TrainingRun
from review_ui.views.common import services
from schemas.model_artefact import CONFUSION_MATRIX_FILE

blueprint = Blueprint("runs", __name__)
RUNS_SHOWN = 200


@blueprint.get("/runs")
def runs() -> str:
    with services().sessions() as session:
        rows = list(session.scalars(select(TrainingRun).order_by(TrainingRun.started_at.desc()).limit(RUNS_SHOWN)))
        serving = session.scalars(select(ModelVersion.version).where(ModelVersion.status == "production")).first()
    return render_template("runs.html", rows=rows, serving=serving)


def _run_or_404(run_id: str) -> TrainingRun:
    with services().sessions() as session:
        run = session.scalars(select(TrainingRun).where(TrainingRun.run_id == run_id)).one_or_none()
    if run is None:
        abort(404, f"no training run {run_id}")
    return run


@blueprint.get("/runs/<run_id>")
def run(run_id: str) -> str:
    current = _run_or_404(run_id)
    with services().sessions() as session:
        model = session.scalars(select(ModelVersion).where(ModelVersion.version == current.model_version)
                                ).one_or_none() if current.model_version else None
    return render_template("run.html", run=current, model=model)


@blueprint.get("/api/runs/<run_id>")
def run_status(run_id: str) -> Response:
    """What the run page polls while a run is under way."""
    current = _run_or_404(run_id)
    return jsonify({"run_id": current.run_id, "status": current.status, "progress": current.progress,
                    "log_lines": len(current.log or [])})


@blueprint.get("/runs/<run_id>/confusion-matrix.png")
def confusion_matrix(run_id: str) -> Response:
    """The run's confusion matrix from its artefacts; the key comes from the run's row, never from the URL."""
    current = _run_or_404(run_id)
    if not current.model_version:
        abort(404, "this run registered no model")
    svc = services()
    try:
        key = f"{current.model_version}/{CONFUSION_MATRIX_FILE}"
        response = svc.storage.get_object(svc.settings.bucket_models, key)
    except S3Error:
        abort(404, "the run's confusion matrix is not in the model store")
    try:
        body = response.read()
    finally:
        response.close()
        response.release_conn()
    answer = Response(body, mimetype="image/png")
    answer.headers["Cache-Control"] = "private, max-age=86400"  # a run's artefacts never change
    return answer
