"""Loss weights that balance classes and, within a class, the sites its images come from."""

from __future__ import annotations

import numpy as np
import pytest

from training_job.input_pipeline import class_weights, site_balanced_weights

# Class 0: 400 seed images and 10 of a new site; class 1: 300 seed images and 20 of the new site.
LABELS = np.array([0] * 410 + [1] * 320)
SITES = [None] * 400 + ["site-b"] * 10 + [None] * 300 + ["site-b"] * 20


def group_totals(weights: np.ndarray) -> dict[tuple[int, str | None], float]:
    totals: dict[tuple[int, str | None], float] = {}
    for label, site, weight in zip(LABELS.tolist(), SITES, weights.tolist(), strict=True):
        totals[label, site] = totals.get((label, site), 0.0) + weight
    return totals


def test_ten_new_site_images_weigh_as_much_as_four_hundred_seed_images_of_their_class() -> None:
    weights = site_balanced_weights(LABELS, SITES, 2)
    totals = group_totals(weights)
    assert totals[0, None] == pytest.approx(totals[0, "site-b"])
    assert totals[1, None] == pytest.approx(totals[1, "site-b"])
    assert totals[0, None] + totals[0, "site-b"] == pytest.approx(totals[1, None] + totals[1, "site-b"])
    assert weights.mean() == pytest.approx(1.0)
    assert weights[405] == pytest.approx(40 * weights[0])  # one new-site image counts as forty seed images


def test_balance_zero_is_class_balance_only() -> None:
    weights = site_balanced_weights(LABELS, SITES, 2, balance=0.0)
    expected = class_weights(LABELS, 2)
    np.testing.assert_allclose(weights, [expected[label] for label in LABELS.tolist()], rtol=1e-6)


def test_a_partial_balance_lies_between() -> None:
    half = group_totals(site_balanced_weights(LABELS, SITES, 2, balance=0.5))
    assert half[0, "site-b"] / half[0, None] == pytest.approx((10 / 400) ** 0.5)


def test_a_class_from_one_site_only_is_weighted_like_class_balance() -> None:
    weights = site_balanced_weights(np.array([0, 0, 0, 1]), ["a", "a", "a", "b"], 2)
    np.testing.assert_allclose(weights, [2 / 3, 2 / 3, 2 / 3, 2.0])


@pytest.mark.parametrize(("labels", "sites", "balance", "message"), [
    (np.array([0, 1]), ["a"], 1.0, "sites for"),
    (np.array([0, 1]), ["a", "b"], 1.5, "balance"),
    (np.array([0, 0]), ["a", "b"], 1.0, "no training images"),
])
def test_inconsistent_inputs_are_refused(labels: np.ndarray, sites: list[str], balance: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        site_balanced_weights(labels, sites, 2, balance)
