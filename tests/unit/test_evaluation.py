"""Classification metrics, the confusion-matrix PNG, OOD calibration to a review rate and AUROC, on known cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from schemas.ood_scores import energy_score, max_softmax
from stream_apps.scoring.ood import judge
from training_job.evaluation import (
    ClassificationMetrics,
    classification_metrics,
    energy_percentiles,
    flagged,
    ood_auroc,
    save_confusion_matrix_png,
    thresholds_for_review_rate,
)

CLASSES = ["glass", "paper", "metal"]


def logits_predicting(predictions: list[int], n_classes: int) -> np.ndarray:
    return 5.0 * np.eye(n_classes)[predictions]


def test_metrics_of_a_small_three_class_case() -> None:
    # glass: 2 of 3 right, nothing else called glass -> P 1, R 2/3, F1 0.8
    # paper: 2 of 2 right, one glass called paper   -> P 2/3, R 1, F1 0.8
    # metal: 1 of 1 right                           -> P 1, R 1, F1 1
    labels = np.array([0, 0, 0, 1, 1, 2])
    metrics = classification_metrics(labels, logits_predicting([0, 0, 1, 1, 1, 2], 3), CLASSES)

    assert metrics.accuracy == pytest.approx(5 / 6)
    assert metrics.per_class_f1 == pytest.approx({"glass": 0.8, "paper": 0.8, "metal": 1.0})
    assert metrics.per_class_precision == pytest.approx({"glass": 1.0, "paper": 2 / 3, "metal": 1.0})
    assert metrics.per_class_recall == pytest.approx({"glass": 2 / 3, "paper": 1.0, "metal": 1.0})
    assert metrics.support == {"glass": 3, "paper": 2, "metal": 1}
    assert metrics.macro_f1 == pytest.approx((0.8 + 0.8 + 1.0) / 3)
    assert metrics.weighted_f1 == pytest.approx((3 * 0.8 + 2 * 0.8 + 1 * 1.0) / 6)
    assert metrics.macro_recall == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert metrics.confusion == [[2, 1, 0], [0, 2, 0], [0, 0, 1]]
    assert metrics.classes == CLASSES
    for name in CLASSES:
        assert name in metrics.report


def test_a_class_absent_from_the_split_still_gets_a_zero_row() -> None:
    classes = [*CLASSES, "trash"]
    metrics = classification_metrics(np.array([0, 1, 2, 2]), logits_predicting([0, 1, 2, 1], 4), classes)

    assert len(metrics.confusion) == 4 and all(len(row) == 4 for row in metrics.confusion)
    assert metrics.confusion[3] == [0, 0, 0, 0]
    assert [row[3] for row in metrics.confusion] == [0, 0, 0, 0]
    assert metrics.support["trash"] == 0
    assert metrics.per_class_f1["trash"] == 0.0
    assert "trash" in metrics.report


def test_metrics_survive_a_json_round_trip() -> None:
    rng = np.random.default_rng(1)
    metrics = classification_metrics(rng.integers(0, 3, 50), rng.normal(size=(50, 3)), CLASSES)

    decoded = json.loads(json.dumps(metrics.to_json()))
    assert decoded == metrics.to_json()
    assert ClassificationMetrics(**decoded) == metrics


@pytest.mark.parametrize(("labels", "logits"), [
    (np.array([0, 1]), np.zeros((2, 4))),  # more logit columns than classes
    (np.array([0, 1, 2]), np.zeros((2, 3))),  # one label too many
    (np.array([0, 3]), np.zeros((2, 3))),  # label outside the class list
    (np.array([], dtype=int), np.zeros((0, 3))),  # nothing to evaluate
])
def test_inconsistent_inputs_are_refused(labels: np.ndarray, logits: np.ndarray) -> None:
    with pytest.raises(ValueError):
        classification_metrics(labels, logits, CLASSES)


@pytest.mark.parametrize("n_classes", [3, 20])
def test_confusion_matrix_png_is_written(tmp_path, n_classes: int) -> None:
    rng = np.random.default_rng(n_classes)
    classes = [f"class_{index}" for index in range(n_classes)]
    metrics = classification_metrics(rng.integers(0, n_classes, 400), rng.normal(size=(400, n_classes)), classes)
    path = tmp_path / "plots" / "confusion.png"

    save_confusion_matrix_png(metrics, path, title="test split")

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
    with Image.open(path) as picture:
        picture.verify()
    with Image.open(path) as picture:
        # The figure grows with the class list so 20 names stay readable.
        assert min(picture.size) >= 500 and (n_classes < 20 or min(picture.size) >= 1200)


def in_distribution_logits(rng: np.random.Generator, count: int) -> np.ndarray:
    """Confident logits: one class well ahead, with varying margins."""
    logits = rng.normal(0.0, 1.0, size=(count, 6))
    logits[np.arange(count), rng.integers(0, 6, count)] += rng.uniform(2.0, 10.0, count)
    return logits


def gaussian_logits(rng: np.random.Generator, count: int, classes: int = 6) -> np.ndarray:
    return rng.normal(0.0, 2.0, size=(count, classes))


@pytest.mark.parametrize("review_rate", [0.01, 0.05, 0.2])
def test_the_thresholds_flag_the_review_rate_of_ten_thousand_gaussian_logit_rows(review_rate: float) -> None:
    logits = gaussian_logits(np.random.default_rng(11), 10_000)

    thresholds = thresholds_for_review_rate(logits, review_rate)

    assert np.mean(flagged(logits, thresholds)) == pytest.approx(review_rate, abs=0.005)
    # Both rules take part: each alone flags less than the union, and at least a third of the rate.
    energy_share = np.mean(energy_score(logits) > thresholds.tau_energy)
    softmax_share = np.mean(max_softmax(logits) < thresholds.tau_softmax)
    assert review_rate / 3 < energy_share <= review_rate and review_rate / 3 < softmax_share <= review_rate


def test_the_thresholds_flag_the_review_rate_of_a_small_val_set_plus_out_of_fold_scores() -> None:
    rng = np.random.default_rng(12)
    calibration = np.concatenate([in_distribution_logits(rng, 17), in_distribution_logits(rng, 400) - 0.5])

    thresholds = thresholds_for_review_rate(calibration, 0.05)

    # Never above the rate; below it by at most the two images one level step can add (one per rule).
    assert 0.05 - 2 / len(calibration) <= np.mean(flagged(calibration, thresholds)) <= 0.05
    # What they cost on images the calibration never saw, from the same distribution:
    unseen = np.concatenate([in_distribution_logits(rng, 4000), in_distribution_logits(rng, 4000) - 0.5])
    assert np.mean(flagged(unseen, thresholds)) == pytest.approx(0.05, abs=0.02)


def test_a_higher_review_rate_tightens_both_thresholds_and_zero_flags_nothing() -> None:
    logits = in_distribution_logits(np.random.default_rng(13), 500)

    none, few, many = (thresholds_for_review_rate(logits, rate) for rate in (0.0, 0.02, 0.2))

    assert not flagged(logits, none).any()
    assert many.tau_energy < few.tau_energy <= none.tau_energy
    assert many.tau_softmax > few.tau_softmax >= none.tau_softmax


@pytest.mark.parametrize("review_rate", [-0.1, 1.5])
def test_the_rule_refuses_a_review_rate_outside_zero_one(review_rate: float) -> None:
    with pytest.raises(ValueError, match="review_rate"):
        thresholds_for_review_rate(np.zeros((10, 3)), review_rate)


def test_the_rule_refuses_empty_logits() -> None:
    with pytest.raises(ValueError):
        thresholds_for_review_rate(np.zeros((0, 3)), 0.05)


def test_the_calibration_flags_what_the_scoring_workers_flag() -> None:
    logits = gaussian_logits(np.random.default_rng(14), 300, classes=4)
    thresholds = thresholds_for_review_rate(logits, 0.1)

    assert flagged(logits, thresholds).tolist() == [verdict.is_ood for verdict in judge(logits, thresholds)]


def test_energy_percentiles_are_101_monotone_values_from_the_lowest_to_the_highest_energy() -> None:
    logits = in_distribution_logits(np.random.default_rng(15), 250)

    percentiles = energy_percentiles(logits)

    assert len(percentiles) == 101 and all(isinstance(value, float) for value in percentiles)
    assert np.all(np.diff(percentiles) >= 0) and np.diff(percentiles).sum() > 0
    energies = energy_score(logits)
    assert percentiles[0] == pytest.approx(energies.min()) and percentiles[100] == pytest.approx(energies.max())
    assert percentiles[50] == pytest.approx(np.median(energies))


def test_auroc_is_one_when_ood_images_have_clearly_higher_energy() -> None:
    rng = np.random.default_rng(3)
    confident = in_distribution_logits(rng, 200) + 10.0  # raising every logit lowers the energy
    flat = rng.normal(0.0, 0.1, size=(100, 6))

    assert ood_auroc(confident, flat) == pytest.approx(1.0)
    # Swapping the roles proves OOD is the positive class and higher energy counts as more OOD.
    assert ood_auroc(flat, confident) == pytest.approx(0.0)


def test_auroc_is_about_half_when_both_sets_come_from_one_distribution() -> None:
    rng = np.random.default_rng(4)

    assert ood_auroc(in_distribution_logits(rng, 2000), in_distribution_logits(rng, 2000)) == pytest.approx(
        0.5, abs=0.03)


@pytest.mark.parametrize("empty_side", ["in_distribution", "ood"])
def test_auroc_refuses_an_empty_set(empty_side: str) -> None:
    some, none = np.ones((5, 3)), np.zeros((0, 3))
    with pytest.raises(ValueError):
        if empty_side == "ood":
            ood_auroc(some, none)
        else:
            ood_auroc(none, some)
