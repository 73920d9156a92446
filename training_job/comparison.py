"""The candidate against the production model on the same labelled split: both evaluated over the
candidate's classes, per-class and macro-F1 deltas.

The production model may know fewer classes than the candidate (a version brought new ones): it never
predicts those, so their F1 is 0 for it. It may also know classes the candidate does not: when one of them is
its top class, the prediction names no class of the split and is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from training_job.evaluation import ClassificationMetrics, prediction_metrics

# The figures of a ClassificationMetrics that events carry (schemas: metrics are name -> number).
SUMMARY_FIGURES = ("accuracy", "macro_f1", "macro_precision", "macro_recall", "weighted_f1", "weighted_precision",
                   "weighted_recall")
PER_CLASS_FIGURES = {"f1": "per_class_f1", "precision": "per_class_precision", "recall": "per_class_recall"}


def predictions_in(logits: np.ndarray, model_classes: Sequence[str], target_classes: Sequence[str]) -> np.ndarray:
    """The top class of each row of ``logits`` (columns in ``model_classes`` order) as an index into
    ``target_classes``; -1 where the top class is not one of them."""
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[1] != len(model_classes):
        raise ValueError(f"logits of shape {logits.shape} do not fit {len(model_classes)} model classes")
    position = {name: index for index, name in enumerate(target_classes)}
    mapping = np.array([position.get(name, -1) for name in model_classes], dtype=np.int64)
    return mapping[logits.argmax(axis=1)]


def baseline_metrics(labels: np.ndarray, logits: np.ndarray, model_classes: Sequence[str],
                     target_classes: Sequence[str]) -> ClassificationMetrics:
    """Metrics of a model with its own class list on labels that index ``target_classes``."""
    return prediction_metrics(labels, predictions_in(logits, model_classes, target_classes), list(target_classes))


def summary(metrics: ClassificationMetrics | dict[str, Any]) -> dict[str, float]:
    """The headline figures of a metrics object or its JSON document."""
    document = metrics.to_json() if isinstance(metrics, ClassificationMetrics) else metrics
    return {name: float(document[name]) for name in SUMMARY_FIGURES}


def per_class_deltas(candidate: ClassificationMetrics, baseline: ClassificationMetrics) -> dict[str, dict[str, float]]:
    """Class -> {"f1", "precision", "recall"}: candidate minus baseline, for every class of the candidate."""
    if candidate.classes != baseline.classes:
        raise ValueError("compare metrics over the same class list")
    return {name: {figure: getattr(candidate, field)[name] - getattr(baseline, field)[name]
                   for figure, field in PER_CLASS_FIGURES.items()}
            for name in candidate.classes}


@dataclass(frozen=True)
class Comparison:
    candidate: ClassificationMetrics
    baseline: ClassificationMetrics | None  # None: no production model to compare with
    baseline_version: str | None

    @property
    def macro_f1_delta(self) -> float | None:
        return None if self.baseline is None else self.candidate.macro_f1 - self.baseline.macro_f1

    @property
    def deltas(self) -> dict[str, dict[str, float]]:
        return {} if self.baseline is None else per_class_deltas(self.candidate, self.baseline)

    def worst_class_drop(self) -> tuple[str, float] | None:
        """The class whose F1 drops most (as a positive number), or None when none drops."""
        drops = [(-delta["f1"], name) for name, delta in self.deltas.items() if delta["f1"] < 0]
        if not drops:
            return None
        drop, name = max(drops)
        return name, drop


def compare(candidate: ClassificationMetrics, baseline: ClassificationMetrics | None,
            baseline_version: str | None = None) -> Comparison:
    if (baseline is None) != (baseline_version is None):
        raise ValueError("a baseline needs its model version, and only a baseline has one")
    if baseline is not None and baseline.classes != candidate.classes:
        raise ValueError("evaluate the baseline over the candidate's classes (baseline_metrics)")
    return Comparison(candidate, baseline, baseline_version)
