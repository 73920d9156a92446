"""The energy/softmax OOD rule on logits whose outcome is known."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.model_artefact import SEED_TAU_ENERGY
from schemas.ood_scores import Thresholds, energy_score
from stream_apps.scoring.ood import judge


def test_energy_matches_its_definition() -> None:
    logits = np.array([[2.0, 1.0, 0.1], [10.0, -3.0, 0.0]])
    expected = -np.log(np.exp(logits).sum(axis=1))
    np.testing.assert_allclose(energy_score(logits), expected)
    # Large logits must not overflow (logsumexp is shifted).
    assert np.isfinite(energy_score(np.array([[1000.0, 999.0]])))[0]


def test_confident_logits_are_in_distribution_and_flat_ones_are_not() -> None:
    confident, flat = np.array([12.0, 0.0, 0.0]), np.array([0.1, 0.0, 0.05])
    sure, unsure = judge(np.stack([confident, flat]), Thresholds())
    assert not sure.is_ood and sure.predicted_index == 0 and sure.confidence > 0.99
    assert sure.energy < SEED_TAU_ENERGY
    assert unsure.ood_reason == "both"
    assert unsure.probabilities.sum() == pytest.approx(1.0)


def test_each_threshold_alone_can_flag() -> None:
    # Confident (softmax 0.99) but low total evidence: only the energy threshold fires.
    low_evidence = np.array([[0.0, -5.0, -5.0]])
    assert judge(low_evidence, Thresholds(tau_energy=-1.0, tau_softmax=0.5))[0].ood_reason == "energy"
    # Lots of evidence spread over two classes: only the softmax threshold fires.
    split = np.array([[20.0, 20.0, 0.0]])
    assert judge(split, Thresholds(tau_energy=-4.0, tau_softmax=0.7))[0].ood_reason == "softmax"


def test_thresholds_travel_with_the_model() -> None:
    logits = np.array([[5.0, 0.0]])
    assert not judge(logits, Thresholds(tau_energy=-4.0, tau_softmax=0.9))[0].is_ood
    assert judge(logits, Thresholds(tau_energy=-6.0, tau_softmax=0.9))[0].ood_reason == "energy"
