"""The review UI's training run pages: the list, one run's verdict and per-class changes, its confusion matrix."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime

from flask import Flask

from infra.clients import db_sessions, minio_client
from infra.db.models import TrainingRun
from infra.settings import Settings
from schemas.model_artefact import CONFUSION_MATRIX_FILE
from tests.review_ui_support import SignedIn, add_operator

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _completed_run(isolated: Settings) -> str:
    run_id = f"run-ui-{uuid.uuid4().hex[:8]}"
    with db_sessions(isolated).begin() as session:
        session.add(TrainingRun(
            run_id=run_id, dataset_version="v2", request_event_id=str(uuid.uuid4()), attempt=1, status="completed",
            config={"backbone": "efficientnet_lite0"}, finished_at=datetime.now(UTC), timings={"total_s": 12.5},
            progress={"phase": "fine_tune", "epoch": 3, "epochs": 3, "loss": 0.5, "val_accuracy": 0.875},
            log=["10:00:00 started", "10:00:12 <script>alert(1)</script> done"],
            metrics={"accuracy": 0.9, "macro_f1": 0.88, "weighted_f1": 0.89,
                     "per_class_f1": {"glass": 0.9, "metal": 0.8, "textile": 0.95}, "support": {"glass": 10}},
            baseline={"model_version": "run-v1-1", "metrics": {"accuracy": 0.7, "macro_f1": 0.6, "weighted_f1": 0.65}},
            recommendation="promote", reason="macro-F1 +0.280", model_version=run_id,
            per_class_deltas={"glass": {"f1": 0.1}, "metal": {"f1": -0.02}}, promoted=True))
    minio_client(isolated).put_object(isolated.bucket_models, f"{run_id}/{CONFUSION_MATRIX_FILE}", io.BytesIO(PNG),
                                      len(PNG), content_type="image/png")
    return run_id


def test_run_pages_show_the_verdict_changes_log_and_confusion_matrix(app: Flask, deployment: Settings) -> None:
    run_id = _completed_run(deployment)
    operator = SignedIn(app, add_operator(deployment, f"runs-{uuid.uuid4().hex[:6]}"))

    listing = operator.get("/runs").text
    assert f'data-run="{run_id}" data-status="completed"' in listing and "0.880" in listing and "0.600" in listing

    page = operator.get(f"/runs/{run_id}").text
    assert "<strong>promote</strong>: macro-F1 +0.280" in page and "promoted automatically" in page
    assert "fine_tune epoch 3/3 · loss 0.5000 · val_accuracy 0.8750" in page
    assert "+0.1000" in page and "-0.0200" in page and ">new<" in page  # textile: a class production lacked
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert "run.js" not in page  # a finished run does not poll

    image = operator.get(f"/runs/{run_id}/confusion-matrix.png")
    assert image.status_code == 200 and image.mimetype == "image/png" and image.data == PNG
    assert operator.get("/runs/../../etc/confusion-matrix.png").status_code == 404
    assert operator.get("/runs/run-nope/confusion-matrix.png").status_code == 404
    assert operator.get(f"/api/runs/{run_id}").json["status"] == "completed"
    assert app.test_client().get(f"/runs/{run_id}").status_code in (302, 401)  # no session


def _run_with_metrics(isolated: Settings, metrics: dict) -> str:
    run_id = f"run-ood-{uuid.uuid4().hex[:8]}"
    with db_sessions(isolated).begin() as session:
        session.add(TrainingRun(
            run_id=run_id, dataset_version=f"v-{run_id}", request_event_id=str(uuid.uuid4()), attempt=1,
            status="completed", config={}, finished_at=datetime.now(UTC), metrics=metrics, recommendation="promote",
            reason="first model", model_version=run_id, promoted=True))
    return run_id


def test_the_run_page_shows_the_review_rate_and_ood_recall_of_the_thresholds(app: Flask, deployment: Settings) -> None:
    run_id = _run_with_metrics(deployment, {
        "accuracy": 0.9, "macro_f1": 0.88, "weighted_f1": 0.89, "split": "test", "review_rate_target": 0.05,
        "review_rate": 0.0467, "calibration_images": 2280, "ood_recall": 0.7143, "ood_images": 126,
        "ood_auroc": 0.9012})
    operator = SignedIn(app, add_operator(deployment, f"runs-{uuid.uuid4().hex[:6]}"))

    page = operator.get(f"/runs/{run_id}").text

    assert ("OOD thresholds from 2280 in-distribution images send <strong>4.7%</strong> of the test split to review "
            "(target 5.0%) and catch <strong>71.4%</strong> of 126 non-waste photos (energy AUROC 0.901)") in page


def test_a_run_from_before_the_review_rate_calibration_shows_no_review_figures(app: Flask,
                                                                               deployment: Settings) -> None:
    run_id = _run_with_metrics(deployment, {"accuracy": 0.9, "macro_f1": 0.88, "weighted_f1": 0.89})
    operator = SignedIn(app, add_operator(deployment, f"runs-{uuid.uuid4().hex[:6]}"))

    page = operator.get(f"/runs/{run_id}").text

    assert "<strong>promote</strong>" in page and 'id="ood-figures"' not in page
