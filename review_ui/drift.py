"""Whether one camera's recent images still look like the serving model's in-distribution reference.

The test, over the images of a camera's window that one model version scored:
- OOD rate: the share of the window flagged OOD. It passes its limit when it exceeds both
  WASTEX_DRIFT_MAX_OOD_RATE (the share a site accepts to send to review) and the 99.9th percentile of the share
  that as many in-distribution images would show at the model's expected review rate (binomial), so a small
  window of a model calibrated to flag many images does not alarm by chance.
- Energy: the one-sided one-sample Kolmogorov-Smirnov statistic sup_x (F_ref(x) - F_window(x)) computed exactly
  (scipy.stats.kstest, alternative "less"): how far the window's energies lie above the reference, that is how much
  less familiar its images look (images more familiar than the reference, such as the training photos themselves,
  are no drift), where F_ref is the CDF of the model's calibration energies interpolated linearly between
  its percentiles 0..100 (ModelVersion.energy_quantiles). It passes its limit when it exceeds both
  WASTEX_DRIFT_MAX_KS and the 99.9th percentile of the statistic that as many images drawn from the reference
  would show (scipy.stats.ksone), so a small window does not alarm by chance. The shift of the median energy
  (window median minus the reference's 50th percentile) is reported with it.
  A model without a reference (an imported one) has the OOD-rate test only.
- No verdict with fewer than WASTEX_DRIFT_MIN_IMAGES images: the state stays what it was.
Hysteresis: a drifting camera recovers only once every statistic is below RECOVERY_FRACTION of its limit, so a
camera that hovers at a limit changes state once, not at every check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from infra.settings import Settings

RECOVERY_FRACTION = 0.8
CHANCE_QUANTILE = 0.999  # of the OOD share healthy images show: above it, chance is no longer the explanation
OOD_RATE, ENERGY_KS = "ood_rate", "energy_ks"


@dataclass(frozen=True)
class DriftLimits:
    min_images: int
    max_ks: float
    max_ood_rate: float

    @classmethod
    def from_settings(cls, settings: Settings) -> DriftLimits:
        return cls(settings.drift_min_images, settings.drift_max_ks, settings.drift_max_ood_rate)


@dataclass(frozen=True)
class WindowStatistics:
    images: int
    ood_rate: float | None  # None for an empty window
    expected_ood_rate: float
    ood_rate_limit: float  # what ood_rate is compared with (see ood_rate_limit)
    energy_ks: float | None  # None without a reference
    median_energy_shift: float | None
    energy_ks_limit: float  # what energy_ks is compared with (see energy_ks_limit)


def reference_cdf(quantiles: Sequence[float]) -> Callable[[np.ndarray], np.ndarray]:
    """The CDF interpolated linearly between percentiles evenly spaced from 0 to 100 (the first value is the
    minimum, the last the maximum). Raises ValueError for fewer than two values, non-finite or decreasing ones."""
    values = np.asarray(quantiles, dtype=float)
    if values.ndim != 1 or len(values) < 2 or not np.all(np.isfinite(values)) or np.any(np.diff(values) < 0):
        raise ValueError("an energy reference is at least two finite, non-decreasing percentiles")
    levels = np.linspace(0.0, 1.0, len(values))
    # Equal percentiles (a mass at one energy): the CDF there is the highest level sharing the value.
    unique, first_in_reversed = np.unique(values[::-1], return_index=True)
    at_unique = levels[len(values) - 1 - first_in_reversed]
    return lambda x: np.interp(x, unique, at_unique, left=0.0, right=1.0)


def energy_ks(energies: Sequence[float], quantiles: Sequence[float]) -> float:
    """sup_x (F_ref(x) - F_window(x)) of the energies against the reference interpolated from `quantiles`."""
    if len(energies) == 0:
        raise ValueError("no energies to compare")
    return float(stats.kstest(np.asarray(energies, dtype=float), reference_cdf(quantiles), alternative="less",
                              method="asymp").statistic)


def median_energy_shift(energies: Sequence[float], quantiles: Sequence[float]) -> float:
    """The window's median energy minus the reference's (positive: less familiar images)."""
    reference_cdf(quantiles)  # the same validation as the KS statistic
    return float(np.median(energies) - np.interp(0.5, np.linspace(0.0, 1.0, len(quantiles)), quantiles))


def ood_rate_limit(images: int, expected_rate: float, max_ood_rate: float) -> float:
    """The OOD share above which a window of `images` drifts: the site's limit, or what chance alone could give
    at the expected rate if that is higher."""
    if images == 0:
        return max_ood_rate
    by_chance = float(stats.binom.ppf(CHANCE_QUANTILE, images, expected_rate)) / images
    return max(max_ood_rate, by_chance)


def energy_ks_limit(images: int, max_ks: float) -> float:
    """The KS statistic above which a window of `images` drifts: the site's limit, or what chance alone could give
    a window drawn from the reference if that is higher."""
    if images == 0:
        return max_ks
    return max(max_ks, float(stats.ksone.ppf(CHANCE_QUANTILE, images)))


def window_statistics(energies: Sequence[float], ood: Sequence[bool], quantiles: Sequence[float] | None,
                      expected_rate: float, limits: DriftLimits) -> WindowStatistics:
    """The statistics of one window (energies and OOD flags of the same images, in any order)."""
    images = len(energies)
    if images != len(ood):
        raise ValueError("energies and OOD flags must describe the same images")
    ood_rate = sum(bool(flag) for flag in ood) / images if images else None
    with_reference = quantiles is not None and images > 0
    return WindowStatistics(
        images=images, ood_rate=ood_rate, expected_ood_rate=expected_rate,
        ood_rate_limit=ood_rate_limit(images, expected_rate, limits.max_ood_rate),
        energy_ks=energy_ks(energies, quantiles) if with_reference else None,
        median_energy_shift=median_energy_shift(energies, quantiles) if with_reference else None,
        energy_ks_limit=energy_ks_limit(images, limits.max_ks))


def reasons(statistics: WindowStatistics, fraction: float = 1.0) -> list[str]:
    """Which statistics exceed `fraction` of their limit."""
    passed = []
    if statistics.ood_rate is not None and statistics.ood_rate > fraction * statistics.ood_rate_limit:
        passed.append(OOD_RATE)
    if statistics.energy_ks is not None and statistics.energy_ks > fraction * statistics.energy_ks_limit:
        passed.append(ENERGY_KS)
    return passed


def next_state(drifting: bool, statistics: WindowStatistics, limits: DriftLimits) -> bool:
    """The camera's state after this window: drifting once a limit is passed, recovered once every statistic is
    well below its limit (RECOVERY_FRACTION), unchanged in between or with too few images for a verdict."""
    if statistics.images < limits.min_images:
        return drifting
    if not drifting:
        return bool(reasons(statistics))
    return bool(reasons(statistics, RECOVERY_FRACTION))
