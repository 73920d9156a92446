"""The OOD scores a model version's thresholds refer to: energy E(x) = -T * logsumexp(f(x) / T) and max softmax.

Training calibrates the thresholds and scoring applies them, so both read the definitions from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp, softmax

from schemas.model_artefact import SEED_TAU_ENERGY, SEED_TAU_SOFTMAX


@dataclass(frozen=True)
class Thresholds:
    """Flag an image as OOD when its energy is above tau_energy or its max softmax below tau_softmax."""

    tau_energy: float = SEED_TAU_ENERGY
    tau_softmax: float = SEED_TAU_SOFTMAX


def energy_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Energy per row of a (batch, classes) logit matrix; lower means more in-distribution."""
    return -temperature * logsumexp(np.asarray(logits, dtype=np.float64) / temperature, axis=-1)


def max_softmax(logits: np.ndarray) -> np.ndarray:
    """Highest class probability per row of a (batch, classes) logit matrix."""
    return softmax(np.asarray(logits, dtype=np.float64), axis=-1).max(axis=-1)


def is_ood(logits: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """The OOD flag per row of a (batch, classes) logit matrix, by the rule of `Thresholds`."""
    return (energy_score(logits) > thresholds.tau_energy) | (max_softmax(logits) < thresholds.tau_softmax)
