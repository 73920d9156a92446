"""Drift statistics of a camera's window against a model's energy percentiles, and the window memory."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from review_ui.camera_windows import CameraWindows, Observation
from review_ui.drift import (
    DriftLimits,
    WindowStatistics,
    energy_ks,
    energy_ks_limit,
    median_energy_shift,
    next_state,
    ood_rate_limit,
    reasons,
    reference_cdf,
    window_statistics,
)

LIMITS = DriftLimits(min_images=50, max_ks=0.3, max_ood_rate=0.25)


def _normal_percentiles(rng: np.random.Generator, size: int = 200_000) -> list[float]:
    return list(np.percentile(rng.normal(0.0, 1.0, size), np.arange(101)))


def test_the_ks_statistic_is_the_exact_supremum_against_the_interpolated_reference() -> None:
    uniform = list(np.linspace(0.0, 1.0, 101))  # F_ref(x) = x on [0, 1]
    # ECDF steps 0.25 .. 1 at 0.6 .. 0.9: the largest gap below the reference is 0.6 just before the first image.
    assert energy_ks([0.8, 0.6, 0.9, 0.7], uniform) == pytest.approx(0.6)
    # More familiar than the reference (lower energies): only the gap before the first image, 0.1, counts.
    assert energy_ks([0.3, 0.1, 0.4, 0.2], uniform) == pytest.approx(0.1)
    assert energy_ks([2.0, 3.0], uniform) == pytest.approx(1.0)  # every image beyond the reference's maximum
    assert energy_ks([0.5], [0.0, 1.0]) == pytest.approx(0.5)  # two percentiles: min and max


def test_a_window_from_the_reference_distribution_has_a_small_ks_and_a_shifted_one_the_theoretical_gap() -> None:
    rng = np.random.default_rng(3)
    reference = _normal_percentiles(rng)
    same = rng.normal(0.0, 1.0, 2000)
    shifted = rng.normal(1.0, 1.0, 2000)
    assert energy_ks(same, reference) < 0.04
    # Two unit normals one sigma apart: sup |F - G| = Phi(0.5) - Phi(-0.5) = 0.383.
    assert energy_ks(shifted, reference) == pytest.approx(stats.norm.cdf(0.5) - stats.norm.cdf(-0.5), abs=0.04)
    assert energy_ks(rng.normal(-1.0, 1.0, 2000), reference) < 0.04  # more familiar images are no drift
    assert median_energy_shift(shifted, reference) == pytest.approx(1.0, abs=0.1)
    assert median_energy_shift(same, reference) == pytest.approx(0.0, abs=0.1)


def test_a_wider_window_with_the_same_median_is_caught_by_ks_but_not_by_the_median_shift() -> None:
    rng = np.random.default_rng(4)
    reference = _normal_percentiles(rng)
    wider = rng.normal(0.0, 3.0, 2000)
    grid = np.linspace(-10, 10, 20001)
    gap = np.max(np.abs(stats.norm.cdf(grid) - stats.norm.cdf(grid / 3.0)))  # 0.24 at |x| = 1.57
    assert energy_ks(wider, reference) == pytest.approx(gap, abs=0.04)
    assert abs(median_energy_shift(wider, reference)) < 0.2


def test_equal_percentiles_are_a_mass_at_one_energy() -> None:
    half_at_zero = [0.0] * 51 + list(np.linspace(0.02, 1.0, 50))
    cdf = reference_cdf(half_at_zero)
    assert cdf(np.array([-0.1, 0.0, 1.0, 2.0])) == pytest.approx([0.0, 0.5, 1.0, 1.0])
    assert reference_cdf([5.0, 5.0])(np.array([4.9, 5.0])) == pytest.approx([0.0, 1.0])


@pytest.mark.parametrize("quantiles", [[1.0], [2.0, 1.0], [0.0, float("nan")], [[0.0, 1.0]]])
def test_an_unusable_reference_is_refused(quantiles: list) -> None:
    with pytest.raises(ValueError):
        reference_cdf(quantiles)


def test_the_ood_rate_limit_is_the_setting_unless_chance_alone_could_pass_it() -> None:
    assert ood_rate_limit(50, 0.05, 0.25) == 0.25  # 5 % expected: 13 of 50 OOD by chance is below 1e-4
    assert ood_rate_limit(50, 0.30, 0.25) > 0.45  # 30 % expected: 22 of 50 happen by chance
    assert ood_rate_limit(5000, 0.30, 0.25) < 0.33  # a large window pins the rate down
    assert ood_rate_limit(0, 0.05, 0.25) == 0.25


def test_the_ks_limit_is_the_setting_unless_chance_alone_could_pass_it() -> None:
    assert energy_ks_limit(1000, 0.15) == 0.15  # 1000 images from the reference: KS above 0.059 is below 1e-3
    assert 0.24 < energy_ks_limit(50, 0.15) < 0.27  # 50 images: about sqrt(ln(1000) / 100)
    assert energy_ks_limit(0, 0.15) == 0.15
    rng = np.random.default_rng(3)
    reference = list(np.quantile(rng.normal(size=100_000), np.linspace(0, 1, 101)))
    healthy = np.array([energy_ks(rng.normal(size=50), reference) for _ in range(300)])
    # Healthy windows of 50 pass the setting alone often, the chance limit about once in a thousand.
    assert np.mean(healthy > 0.15) > 0.05 and np.mean(healthy > energy_ks_limit(50, 0.15)) <= 0.01


def test_window_statistics_without_a_reference_test_the_ood_rate_only() -> None:
    statistics = window_statistics([-3.0] * 60, [True] * 20 + [False] * 40, None, 0.05, LIMITS)
    assert statistics.images == 60 and statistics.ood_rate == pytest.approx(1 / 3)
    assert statistics.energy_ks is None and statistics.median_energy_shift is None
    assert reasons(statistics) == ["ood_rate"]
    with pytest.raises(ValueError):
        window_statistics([-3.0], [True, False], None, 0.05, LIMITS)


def _statistics(images: int = 100, ood_rate: float = 0.05, ks: float | None = 0.1) -> WindowStatistics:
    return WindowStatistics(images, ood_rate, 0.05, 0.25, ks, None if ks is None else 0.0, 0.3)


def test_a_camera_drifts_past_a_limit_and_recovers_only_well_below_it() -> None:
    assert next_state(False, _statistics(ks=0.35), LIMITS) is True
    assert next_state(False, _statistics(ood_rate=0.3), LIMITS) is True
    assert next_state(False, _statistics(ks=0.27), LIMITS) is False
    assert next_state(True, _statistics(ks=0.27), LIMITS) is True  # between 80 % of the limit and the limit
    assert next_state(True, _statistics(ood_rate=0.22), LIMITS) is True
    assert next_state(True, _statistics(ks=0.2, ood_rate=0.1), LIMITS) is False
    assert reasons(_statistics(ks=0.35, ood_rate=0.3)) == ["ood_rate", "energy_ks"]


def test_too_few_images_give_no_verdict() -> None:
    assert next_state(False, _statistics(images=49, ks=0.9, ood_rate=1.0), LIMITS) is False
    assert next_state(True, _statistics(images=49, ks=0.0, ood_rate=0.0), LIMITS) is True


def test_windows_forget_old_images_and_ids_and_keep_the_latest_model_version_only() -> None:
    windows = CameraWindows(window_s=100)
    windows.add("e1", "cam-1", "site-a", Observation(1000.0, -10.0, False, "m1"), read_at=1000.0)
    windows.add("e2", "cam-1", "site-a", Observation(1050.0, -9.0, True, "m1"), read_at=1050.0)
    windows.add("e3", "cam-1", "site-b", Observation(1060.0, -8.0, False, "m2"), read_at=1060.0)
    windows.add("e4", "cam-2", "site-a", Observation(9999.0, -7.0, False, "m1"), read_at=1070.0)  # clock ahead
    assert windows.seen("e1") and not windows.seen("e5")
    [cam1, cam2] = windows.windows()
    assert (cam1.site_id, cam1.model_version, cam1.energies, cam1.ood) == ("site-b", "m2", [-8.0], [False])
    assert (cam2.camera_id, cam2.energies) == ("cam-2", [-7.0])

    windows.prune(now=1160.0)  # keeps what was captured (and read) from 1060 on
    assert not windows.seen("e1") and not windows.seen("e2") and windows.seen("e3")
    assert [(w.camera_id, w.energies) for w in windows.windows()] == [("cam-1", [-8.0]), ("cam-2", [-7.0])]
    windows.prune(now=1171.0)  # cam-2's image counts as captured when read (1070), not in the future
    assert windows.windows() == []


def test_a_camera_window_keeps_at_most_its_newest_images() -> None:
    windows = CameraWindows(window_s=100, max_per_camera=3)
    for index in range(5):
        windows.add(f"e{index}", "cam", "site", Observation(10.0 + index, float(index), False, "m1"), read_at=20.0)
    assert windows.windows()[0].energies == [2.0, 3.0, 4.0]
