"""Out-of-distribution verdicts of the seeds' rule: flag when energy > tau_E or max softmax < tau_p.
Thresholds belong to the model version; the seeds' values are only the fallback."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import softmax

from schemas.ood_scores import Thresholds, energy_score


@dataclass(frozen=True)
class Verdict:
    predicted_index: int
    confidence: float
    energy: float
    probabilities: np.ndarray
    ood_reason: str | None  # None: in-distribution; else "energy", "softmax" or "both"

    @property
    def is_ood(self) -> bool:
        return self.ood_reason is not None


def judge(logits: np.ndarray, thresholds: Thresholds) -> list[Verdict]:
    """One verdict per row of a (batch, classes) logit matrix."""
    logits = np.asarray(logits, dtype=np.float64)
    energies = energy_score(logits)
    probabilities = softmax(logits, axis=-1)
    verdicts = []
    for row_probs, energy in zip(probabilities, energies, strict=True):
        index = int(np.argmax(row_probs))
        confidence = float(row_probs[index])
        too_energetic = energy > thresholds.tau_energy
        unsure = confidence < thresholds.tau_softmax
        reason = "both" if too_energetic and unsure else "energy" if too_energetic else "softmax" if unsure else None
        verdicts.append(Verdict(index, confidence, float(energy), row_probs, reason))
    return verdicts
