"""What the version builder tells Prometheus: decisions staged and versions created, each counted once.

Invariant: a label-log decision is counted once, when this worker staged it (a redelivered one is not, see
`VersionBuilder.stage`), whether the `stage` agent or a build's catch-up staged it; a version is counted once, when
this worker's transaction created it; a request answered by a version that exists already counts nothing. The build
time (catch-up, rows, manifest, announcement) is observed for each version built in one go. No labels.
`BuilderMetrics` itself records nothing: metrics off.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from infra.settings import Settings

BUILD_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class BuilderMetrics:
    """What the builder reports; this base records nothing (metrics off)."""

    def decision_staged(self) -> None:
        """One label-log decision staged for the next version."""

    def version_created(self) -> None:
        """One version created by this worker (its rows committed)."""

    def version_built(self, seconds: float) -> None:
        """A version this worker created was announced, `seconds` after its request was taken up."""


UNRECORDED = BuilderMetrics()


class RecordedBuilderMetrics(BuilderMetrics):
    """Records into `registry` (the process's default one unless a test brings its own)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self._staged = Counter("wastex_builder_decisions_staged", "Label-log decisions staged", registry=registry)
        self._created = Counter("wastex_builder_versions_created", "Dataset versions created", registry=registry)
        self._build = Histogram("wastex_builder_build_seconds", "Time to build one version",
                                buckets=BUILD_SECONDS_BUCKETS, registry=registry)

    def decision_staged(self) -> None:
        self._staged.inc()

    def version_created(self) -> None:
        self._created.inc()

    def version_built(self, seconds: float) -> None:
        self._build.observe(seconds)


def builder_metrics(settings: Settings, registry: CollectorRegistry = REGISTRY) -> BuilderMetrics:
    """Recording metrics, unless WASTEX_METRICS is off."""
    return RecordedBuilderMetrics(registry) if settings.metrics_enabled else UNRECORDED
