"""The OOD scores a model version's thresholds refer to: energy E(x) = -T * logsumexp(f(x) / T) and max softmax.

Training calibrates the thresholds and scoring applies them, so both read the definitions from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp, softmax

# The seeds' hard-coded OOD thresholds: only for a model that brings none of its own.
SEED_TAU_ENERGY = -4.338604
SEED_TAU_SOFTMAX = 0.70


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


def near_a_decision(logits: np.ndarray, thresholds: Thresholds, tolerance: float) -> np.ndarray:
    """Rows whose top class or OOD flag could change if each logit moved by up to `tolerance`.

    Such a move shifts the gap between the top two logits by at most 2 * tolerance, the energy (logsumexp) by at
    most tolerance, and the log of the max softmax by at most 2 * tolerance; a row is near a decision when one of
    them is within that distance of its boundary.
    """
    top_two = np.sort(np.asarray(logits, dtype=np.float64), axis=-1)[..., -2:]
    close_classes = top_two[..., 1] - top_two[..., 0] < 2 * tolerance
    close_energy = np.abs(energy_score(logits) - thresholds.tau_energy) < tolerance
    with np.errstate(divide="ignore"):  # a threshold of 0 flags nothing by softmax: no row is near it
        close_softmax = np.abs(np.log(max_softmax(logits)) - np.log(thresholds.tau_softmax)) < 2 * tolerance
    return close_classes | close_energy | close_softmax
