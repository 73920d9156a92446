"""The energy/softmax OOD rule on logits whose outcome is known."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.ood_scores import SEED_TAU_ENERGY, Thresholds, energy_score, is_ood, near_a_decision
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


def test_a_row_not_near_a_decision_keeps_its_class_and_flag_under_any_move_within_the_tolerance() -> None:
    generator = np.random.default_rng(3)
    logits = generator.normal(0, 2.5, size=(4000, 6))
    thresholds = Thresholds(tau_energy=float(np.median(energy_score(logits))), tau_softmax=0.6)
    tolerance = 0.2
    near = near_a_decision(logits, thresholds, tolerance)
    assert 0.05 < near.mean() < 0.95  # both kinds of row are tried
    for _ in range(20):
        moved = logits + generator.uniform(-tolerance, tolerance, size=logits.shape)
        moved[:, 0] = logits[:, 0] + tolerance * np.sign(generator.normal(size=len(logits)))  # extremes too
        far = ~near
        assert (moved[far].argmax(axis=1) == logits[far].argmax(axis=1)).all()
        assert (is_ood(moved[far], thresholds) == is_ood(logits[far], thresholds)).all()


def test_a_tie_and_rows_on_either_threshold_are_near_a_decision_and_a_clear_row_is_not() -> None:
    thresholds = Thresholds(tau_energy=-3.0, tau_softmax=0.5)
    tie = [4.0, 4.1, 0.0]
    on_energy = [np.log(np.exp(3.0) - 2 * np.exp(-5.0)), -5.0, -5.0]  # energy exactly -3, one clear class
    on_softmax = [1.0, 0.0, np.log(np.e - 1)]  # max softmax exactly 0.5, its runner-up 0.46 behind
    clear = [8.0, 0.0, 0.0]
    near = near_a_decision(np.array([tie, on_energy, on_softmax, clear]), thresholds, 0.1)
    assert near.tolist() == [True, True, True, False]
    assert not near_a_decision(np.array([clear]), Thresholds(tau_energy=-3.0, tau_softmax=0.0), 0.1).any()
