"""The trainer's pure parts: candidate vs production on the same split, the promotion policy, run events."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.codec import encode
from schemas.events import EventType
from training_job import run_events
from training_job.comparison import baseline_metrics, compare, predictions_in
from training_job.evaluation import ClassificationMetrics, prediction_metrics
from training_job.promotion_policy import PromotionPolicy, Recommendation
from training_job.run_store import run_id_for

CLASSES = ["glass", "metal", "paper"]


def _metrics(per_class_f1: dict[str, float]) -> ClassificationMetrics:
    """Metrics with the given per-class F1 (macro-F1 their mean); the other figures do not matter here."""
    classes = list(per_class_f1)
    macro = float(np.mean(list(per_class_f1.values())))
    return ClassificationMetrics(
        accuracy=macro, macro_precision=macro, macro_recall=macro, macro_f1=macro, weighted_precision=macro,
        weighted_recall=macro, weighted_f1=macro, per_class_f1=dict(per_class_f1),
        per_class_precision=dict(per_class_f1), per_class_recall=dict(per_class_f1),
        support=dict.fromkeys(classes, 10), confusion=[[0] * len(classes) for _ in classes], classes=classes,
        report="")


def test_a_model_with_fewer_classes_is_mapped_into_the_candidates_order() -> None:
    # The production model knows [metal, glass]; the candidate [glass, metal, paper].
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.5], [0.2, 0.1]])
    assert predictions_in(logits, ["metal", "glass"], CLASSES).tolist() == [1, 0, 1, 1]
    labels = np.array([1, 0, 2, 1])  # metal, glass, paper, metal
    metrics = baseline_metrics(labels, logits, ["metal", "glass"], CLASSES)
    assert metrics.classes == CLASSES
    assert metrics.per_class_f1["paper"] == 0.0  # never predicted: the new class scores 0
    assert metrics.per_class_recall["metal"] == 1.0 and metrics.per_class_precision["metal"] == pytest.approx(2 / 3)
    assert metrics.accuracy == pytest.approx(0.75)


def test_a_top_class_the_candidate_does_not_know_is_a_wrong_prediction() -> None:
    logits = np.array([[5.0, 0.0], [0.0, 5.0]])  # columns: cardboard (retired), glass
    predicted = predictions_in(logits, ["cardboard", "glass"], CLASSES)
    assert predicted.tolist() == [-1, 0]
    metrics = prediction_metrics(np.array([0, 0]), predicted, CLASSES)
    assert metrics.accuracy == 0.5 and metrics.per_class_recall["glass"] == 0.5
    assert metrics.per_class_precision["glass"] == 1.0  # the foreign prediction is no false positive of a class
    assert sum(map(sum, metrics.confusion)) == 1  # and is not in the matrix


def test_logits_must_fit_the_model_classes() -> None:
    with pytest.raises(ValueError, match="do not fit 3 model classes"):
        predictions_in(np.zeros((2, 2)), CLASSES, CLASSES)


def test_per_class_deltas_and_macro_delta() -> None:
    candidate = _metrics({"glass": 0.9, "metal": 0.7, "paper": 0.6})
    baseline = _metrics({"glass": 0.8, "metal": 0.75, "paper": 0.0})
    comparison = compare(candidate, baseline, "m1")
    assert comparison.macro_f1_delta == pytest.approx((0.1 - 0.05 + 0.6) / 3)
    assert comparison.deltas["glass"]["f1"] == pytest.approx(0.1)
    assert comparison.deltas["paper"] == pytest.approx({"f1": 0.6, "precision": 0.6, "recall": 0.6})
    assert comparison.worst_class_drop() == ("metal", pytest.approx(0.05))


def test_without_a_baseline_there_are_no_deltas() -> None:
    comparison = compare(_metrics({"glass": 0.5, "metal": 0.5}), None)
    assert comparison.macro_f1_delta is None and comparison.deltas == {} and comparison.worst_class_drop() is None


def test_comparison_needs_one_class_list() -> None:
    with pytest.raises(ValueError, match="candidate's classes"):
        compare(_metrics({"glass": 0.5, "metal": 0.5}), _metrics({"metal": 0.5, "glass": 0.5}), "m1")
    with pytest.raises(ValueError, match="model version"):
        compare(_metrics({"glass": 0.5}), _metrics({"glass": 0.5}))


@pytest.mark.parametrize(("candidate", "baseline", "policy", "expected"), [
    # a gain and no class drops: promote
    ({"a": 0.9, "b": 0.8}, {"a": 0.8, "b": 0.8}, PromotionPolicy(), Recommendation.PROMOTE),
    # the same macro-F1 meets a zero margin
    ({"a": 0.8, "b": 0.8}, {"a": 0.8, "b": 0.8}, PromotionPolicy(), Recommendation.PROMOTE),
    # a class drops by exactly the limit: still allowed
    ({"a": 1.0, "b": 0.75}, {"a": 0.8, "b": 0.8}, PromotionPolicy(max_class_drop=0.05), Recommendation.PROMOTE),
    # a class drops by more than the limit: an operator decides
    ({"a": 1.0, "b": 0.7}, {"a": 0.8, "b": 0.8}, PromotionPolicy(max_class_drop=0.05), Recommendation.REVIEW),
    # a gain below the margin: review
    ({"a": 0.82, "b": 0.8}, {"a": 0.8, "b": 0.8}, PromotionPolicy(min_gain=0.02), Recommendation.REVIEW),
    # the margin met exactly
    ({"a": 0.84, "b": 0.8}, {"a": 0.8, "b": 0.8}, PromotionPolicy(min_gain=0.02), Recommendation.PROMOTE),
    # worse than production: keep it, whatever the margins
    ({"a": 0.79, "b": 0.8}, {"a": 0.8, "b": 0.8}, PromotionPolicy(max_class_drop=1.0), Recommendation.KEEP),
])
def test_the_policy(candidate: dict, baseline: dict, policy: PromotionPolicy, expected: Recommendation) -> None:
    verdict = policy.judge(compare(_metrics(candidate), _metrics(baseline), "m1"))
    assert verdict.recommendation is expected, verdict.reason
    assert "m1" in verdict.reason


def test_the_policy_promotes_the_first_model_and_names_the_dropping_class() -> None:
    first = PromotionPolicy(min_gain=0.5).judge(compare(_metrics({"a": 0.1, "b": 0.1}), None))
    assert first.recommendation is Recommendation.PROMOTE and "no production model" in first.reason
    verdict = PromotionPolicy().judge(compare(_metrics({"a": 1.0, "b": 0.6}), _metrics({"a": 0.5, "b": 0.8}), "m1"))
    assert verdict.recommendation is Recommendation.REVIEW and "F1 of b drops by 0.2000" in verdict.reason
    with pytest.raises(ValueError):
        PromotionPolicy(min_gain=-0.1)


def test_run_ids_are_valid_model_versions_and_fit_the_column() -> None:
    assert run_id_for("v2", 1) == "run-v2-1"
    long_name = "x" * 64
    first, second = run_id_for(long_name, 1), run_id_for(long_name, 2)
    assert len(first) <= 64 and first != second and first.endswith("-1")
    assert run_id_for("y" + "x" * 63, 1) != first  # shortened names stay distinct through the digest


def test_run_events_validate_and_carry_stable_ids() -> None:
    record = {"phase": "fine-tune", "epoch": 2, "epochs": 3, "elapsed_s": 4.5, "loss": 0.3, "val_accuracy": 0.9}
    event = run_events.progressed("run-v2-1", "v2", record)
    encode(event)
    assert event.event_type is EventType.TRAINING_RUN_PROGRESSED
    assert event.payload["phase"] == "fine_tune" and event.payload["epochs"] == 3
    assert event.payload["metrics"] == {"elapsed_s": 4.5, "loss": 0.3, "val_accuracy": 0.9}
    assert run_events.progressed("run-v2-1", "v2", record).event_id == event.event_id
    assert run_events.progressed("run-v2-2", "v2", record).event_id != event.event_id
    failed = run_events.failed("run-v2-1", "v2", "x" * 5000, retryable=True)
    assert len(failed.payload["error"]) == 4000
    completed = run_events.completed("run-v2-1", "v2", model_version="run-v2-1",
                                     artefact_uri="s3://wastex-models/run-v2-1/model.keras",
                                     metrics={"macro_f1": 0.5}, baseline=None, recommendation="promote",
                                     reason="no production model", per_class_deltas={})
    encode(completed)
