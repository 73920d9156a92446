"""Evaluation of a trained classifier: scikit-learn metrics, the confusion-matrix picture, OOD calibration to a
review rate, OOD recall and AUROC.

Everything works on logits (batch, classes) so the training pipeline and `wastex evaluate` share one path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    accuracy_score,
    classification_report,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from schemas.ood_scores import Thresholds, energy_score, is_ood, max_softmax


@dataclass(frozen=True)
class ClassificationMetrics:
    """Scores of one model on one labelled split; every per-class entry is keyed by class name."""

    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    weighted_precision: float
    weighted_recall: float
    weighted_f1: float
    per_class_f1: dict[str, float]
    per_class_precision: dict[str, float]
    per_class_recall: dict[str, float]
    support: dict[str, int]
    confusion: list[list[int]]  # rows = true class, columns = predicted class, both in `classes` order
    classes: list[str]
    report: str  # scikit-learn's classification_report text

    def to_json(self) -> dict:
        return asdict(self)


def _check_logits(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"expected a non-empty (images, classes) logit matrix, got shape {logits.shape}")
    return logits


def classification_metrics(labels: np.ndarray, logits: np.ndarray, classes: list[str]) -> ClassificationMetrics:
    """Metrics of argmax(logits) against integer `labels`; averages run over every class of the model.

    A class with no images and no predictions scores 0 (zero_division=0), as in the classification report.
    """
    logits = _check_logits(logits)
    if logits.shape[1] != len(classes):
        raise ValueError(f"logits have {logits.shape[1]} columns but there are {len(classes)} classes")
    return prediction_metrics(labels, logits.argmax(axis=1), classes)


def prediction_metrics(labels: np.ndarray, predicted: np.ndarray, classes: list[str]) -> ClassificationMetrics:
    """Metrics of predicted class indices against integer `labels`, both indices into `classes`.

    A prediction of -1 names no class of the list (a model that predicted a class these labels never use):
    it is always wrong, counts against the true class's recall and is left out of the confusion matrix.
    """
    labels = np.asarray(labels).astype(np.int64, copy=False)
    predicted = np.asarray(predicted).astype(np.int64, copy=False)
    if labels.ndim != 1 or labels.shape[0] == 0:
        raise ValueError(f"expected a non-empty list of labels, got shape {labels.shape}")
    if predicted.shape != labels.shape:
        raise ValueError(f"expected {predicted.shape[0]} labels, got shape {labels.shape}")
    if labels.min() < 0 or labels.max() >= len(classes):
        raise ValueError(f"labels must lie in [0, {len(classes)}), got {labels.min()}..{labels.max()}")
    if predicted.min() < -1 or predicted.max() >= len(classes):
        raise ValueError(f"predictions must lie in [-1, {len(classes)}), got {predicted.min()}..{predicted.max()}")

    class_ids = list(range(len(classes)))

    def averaged(average: str) -> tuple[float, float, float]:
        precision, recall, f1, _ = precision_recall_fscore_support(
            labels, predicted, labels=class_ids, average=average, zero_division=0)
        return float(precision), float(recall), float(f1)

    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=class_ids, average=None, zero_division=0)
    macro, weighted = averaged("macro"), averaged("weighted")
    return ClassificationMetrics(
        accuracy=float(accuracy_score(labels, predicted)),
        macro_precision=macro[0], macro_recall=macro[1], macro_f1=macro[2],
        weighted_precision=weighted[0], weighted_recall=weighted[1], weighted_f1=weighted[2],
        per_class_f1={name: float(value) for name, value in zip(classes, f1, strict=True)},
        per_class_precision={name: float(value) for name, value in zip(classes, precision, strict=True)},
        per_class_recall={name: float(value) for name, value in zip(classes, recall, strict=True)},
        support={name: int(value) for name, value in zip(classes, support, strict=True)},
        confusion=confusion_matrix(labels, predicted, labels=class_ids).tolist(),
        classes=list(classes),
        report=classification_report(labels, predicted, labels=class_ids, target_names=list(classes),
                                      digits=3, zero_division=0),
    )


def save_confusion_matrix_png(metrics: ClassificationMetrics, path: Path, title: str) -> None:
    """Draw the confusion matrix with counts in the cells; the figure grows with the number of classes."""
    size = max(5.0, 0.55 * len(metrics.classes) + 2.5)
    # A bare Figure on an Agg canvas: no pyplot state, no display needed, nothing left open afterwards.
    figure = Figure(figsize=(size, size), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    display = ConfusionMatrixDisplay(np.asarray(metrics.confusion), display_labels=metrics.classes)
    display.plot(ax=axes, cmap="Blues", values_format="d", xticks_rotation=45, colorbar=False,
                 text_kw={"fontsize": 10 if len(metrics.classes) <= 10 else 7})
    axes.set_title(title)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def flagged(logits: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """Which rows the scoring workers' OOD rule flags: energy above tau_energy or max softmax below tau_softmax."""
    return is_ood(_check_logits(logits), thresholds)


def thresholds_for_review_rate(logits: np.ndarray, review_rate: float) -> Thresholds:
    """OOD thresholds that flag `review_rate` of these in-distribution (calibration) images, by either rule.

    Both thresholds sit at one quantile level q of the calibration images: tau_energy at the (1 - q) quantile of
    their energies, tau_softmax at the q quantile of their max softmax, so each rule alone flags a share q. The two
    rules mostly flag the same images, so together they flag between q and 2q; q is the largest level (found by
    bisection) at which the union flags no more than `review_rate` of the images.
    """
    if not 0.0 <= review_rate <= 1.0:
        raise ValueError(f"review_rate must lie between 0 and 1, got {review_rate}")
    logits = _check_logits(logits)
    energies, confidences = energy_score(logits), max_softmax(logits)

    def at_level(level: float) -> Thresholds:
        return Thresholds(tau_energy=float(np.quantile(energies, 1.0 - level)),
                          tau_softmax=float(np.quantile(confidences, level)))

    def share_flagged(level: float) -> float:
        thresholds = at_level(level)
        return float(np.mean((energies > thresholds.tau_energy) | (confidences < thresholds.tau_softmax)))

    # The flagged share never falls as the level rises, and level 0 flags nothing: keep `low` within the rate.
    low, high = 0.0, 1.0
    for _ in range(50):
        middle = (low + high) / 2
        if share_flagged(middle) <= review_rate:
            low = middle
        else:
            high = middle
    return at_level(low)


def energy_percentiles(logits: np.ndarray) -> list[float]:
    """Percentiles 0, 1, ..., 100 of the energies of these images: a model's in-distribution reference for drift."""
    return [float(value) for value in np.percentile(energy_score(_check_logits(logits)), np.arange(101))]


def ood_auroc(in_distribution_logits: np.ndarray, ood_logits: np.ndarray) -> float:
    """AUROC of the energy score at telling OOD images (positives) from in-distribution ones."""
    in_distribution = _check_logits(in_distribution_logits)
    ood = _check_logits(ood_logits)
    if in_distribution.shape[1] != ood.shape[1]:
        raise ValueError(f"logit widths differ: {in_distribution.shape[1]} vs {ood.shape[1]}")
    scores = np.concatenate([energy_score(in_distribution), energy_score(ood)])
    is_ood = np.concatenate([np.zeros(len(in_distribution)), np.ones(len(ood))])
    return float(roc_auc_score(is_ood, scores))
