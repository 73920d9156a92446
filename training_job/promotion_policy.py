"""What to do with a candidate: promote it, keep the production model, or leave it to an operator.

- promote: there is no production model, or macro-F1 improves by at least ``min_gain`` and no class's F1
  drops by more than ``max_class_drop``;
- keep: macro-F1 is lower than the production model's;
- review: anything between (a gain below the margin, or a class that drops too far).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from training_job.comparison import Comparison

# Differences this small are rounding, not a change in quality.
TOLERANCE = 1e-9


class Recommendation(StrEnum):
    PROMOTE = "promote"
    KEEP = "keep"
    REVIEW = "review"


@dataclass(frozen=True)
class Verdict:
    recommendation: Recommendation
    reason: str


@dataclass(frozen=True)
class PromotionPolicy:
    min_gain: float = 0.0  # least macro-F1 improvement for an automatic promotion
    max_class_drop: float = 0.05  # largest F1 drop of any one class an automatic promotion allows

    def __post_init__(self) -> None:
        if self.min_gain < 0 or self.max_class_drop < 0:
            raise ValueError("the promotion margins must not be negative")

    def judge(self, comparison: Comparison) -> Verdict:
        delta = comparison.macro_f1_delta
        if delta is None:
            return Verdict(Recommendation.PROMOTE, "no production model to compare with")
        candidate, baseline = comparison.candidate.macro_f1, comparison.baseline.macro_f1
        figures = f"macro-F1 {candidate:.4f} against {baseline:.4f} of {comparison.baseline_version}"
        if delta < -TOLERANCE:
            return Verdict(Recommendation.KEEP, f"{figures}: lower than production")
        if delta < self.min_gain - TOLERANCE:
            return Verdict(Recommendation.REVIEW, f"{figures}: a gain of {delta:+.4f}, below the margin "
                                                  f"{self.min_gain:.4f}")
        worst = comparison.worst_class_drop()
        if worst is not None and worst[1] > self.max_class_drop + TOLERANCE:
            name, drop = worst
            return Verdict(Recommendation.REVIEW, f"{figures}, but F1 of {name} drops by {drop:.4f} "
                                                  f"(limit {self.max_class_drop:.4f})")
        return Verdict(Recommendation.PROMOTE, f"{figures}: a gain of {delta:+.4f}, no class drops by more "
                                               f"than {self.max_class_drop:.4f}")
