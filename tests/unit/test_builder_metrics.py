"""The version builder's Prometheus metrics: each version it creates counted once with its build time, a request
answered by an existing version counted not at all, and nothing recorded with metrics off."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import IntegrityError

from stream_apps.builder.builder_metrics import UNRECORDED, RecordedBuilderMetrics, builder_metrics
from stream_apps.builder.version_builder import VersionBuilder

pytestmark = pytest.mark.unit


class FakeStore:
    """The version rows a build reads, by request id."""

    def __init__(self) -> None:
        self.by_request_id: dict[str, Any] = {}

    def by_request(self, request_id: str) -> Any:
        return self.by_request_id.get(request_id)

    def get(self, name: str) -> Any:
        return next(v for v in self.by_request_id.values() if v.name == name)


class FakeAnnouncer:
    def __init__(self) -> None:
        self.announced: list[str] = []

    def announce(self, name: str) -> None:
        self.announced.append(name)


def builder(registry: CollectorRegistry, store: FakeStore, materialise: Any) -> VersionBuilder:
    built = VersionBuilder(None, store, FakeAnnouncer(), metrics=RecordedBuilderMetrics(registry))  # type: ignore[arg-type]
    built.materialise = materialise  # type: ignore[method-assign]  # the database transaction, faked
    return built


def sample(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name)


def test_a_version_created_is_counted_once_with_its_build_time_and_its_request_repeated_counts_nothing() -> None:
    registry, store = CollectorRegistry(), FakeStore()

    def materialise(request: dict[str, Any]) -> Any:
        store.by_request_id[request["request_id"]] = SimpleNamespace(name="v1", announced_at=None)
        return store.by_request_id[request["request_id"]]

    versions = builder(registry, store, materialise)
    versions.build({"request_id": "r-1"})
    store.by_request_id["r-1"].announced_at = "now"
    versions.build({"request_id": "r-1"})  # the request redelivered

    assert sample(registry, "wastex_builder_versions_created_total") == 1
    assert sample(registry, "wastex_builder_build_seconds_count") == 1


def test_a_request_another_builder_answered_first_counts_no_version_here() -> None:
    registry, store = CollectorRegistry(), FakeStore()

    def materialise(request: dict[str, Any]) -> Any:
        store.by_request_id[request["request_id"]] = SimpleNamespace(name="v1", announced_at="then")
        raise IntegrityError("insert", {}, Exception("request_id taken"))

    builder(registry, store, materialise).build({"request_id": "r-1"})

    assert sample(registry, "wastex_builder_versions_created_total") == 0
    assert sample(registry, "wastex_builder_build_seconds_count") == 0


def test_staged_decisions_are_counted_one_by_one() -> None:
    registry = CollectorRegistry()
    metrics = RecordedBuilderMetrics(registry)
    metrics.decision_staged()
    metrics.decision_staged()

    assert sample(registry, "wastex_builder_decisions_staged_total") == 2


def test_builder_metrics_have_no_labels() -> None:
    registry = CollectorRegistry()
    metrics = RecordedBuilderMetrics(registry)
    metrics.decision_staged()
    metrics.version_created()
    metrics.version_built(1.5)

    assert {name for family in registry.collect() for s in family.samples for name in s.labels} <= {"le"}


def test_with_metrics_off_the_builder_records_nothing() -> None:
    registry = CollectorRegistry()
    metrics = builder_metrics(SimpleNamespace(metrics_enabled=False), registry)  # type: ignore[arg-type]
    metrics.decision_staged()
    metrics.version_created()

    assert metrics is UNRECORDED
    assert list(registry.collect()) == []
