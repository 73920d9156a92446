"""Every metric of every unit is named `wastex_<unit>_...` and labelled only by values from a bounded set: never an
image, event, camera or operator id. And every name the dashboard and the alert rules use is a metric of some unit."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from sqlalchemy.exc import OperationalError

from infra.services.prometheus import ALERT_RULES
from infra.settings import PROJECT_ROOT
from producers.ingest_metrics import IngestMetrics
from review_ui.ui_metrics import ReviewStoreCollector, UiMetrics
from stream_apps.builder.builder_metrics import RecordedBuilderMetrics
from stream_apps.scoring.worker_metrics import RecordedScoringMetrics
from training_job.trainer_metrics import TrainerMetrics

pytestmark = pytest.mark.unit
# Each label and what bounds it: an enum, the registry's model versions, the topic's partitions, HTTP codes.
BOUNDED_LABELS = {
    "outcome": "classified | ood | dead_letter",
    "reason": "DeadLetterReason",
    "model_version": "registered model versions",
    "runtime": "serving runtimes",
    "topic": "the image topic",
    "partition": "its partitions",
    "status": "queue item or run statuses",
    "kind": "label action kinds",
    "metric": "Keras epoch metrics",
    "code": "HTTP status codes",
    "le": "histogram buckets",
}
UNITS = ("scoring", "builder", "trainer", "review", "ingest")


def _unreachable_store() -> None:
    raise OperationalError("SELECT 1", {}, Exception("no database in a unit test"))


def _families() -> Iterator[Metric]:
    registries = [CollectorRegistry() for _ in range(5)]
    RecordedScoringMetrics(0.3, registries[0]).outcomes_delivered([])
    RecordedBuilderMetrics(registries[1])
    TrainerMetrics(registries[2])
    UiMetrics(_unreachable_store, registries[3])  # type: ignore[arg-type]
    IngestMetrics(registries[4])
    for registry in registries:
        yield from registry.collect()
    yield from ReviewStoreCollector.families()


def test_every_metric_is_a_units_and_has_bounded_labels_only() -> None:
    families = list(_families())
    assert {family.name.split("_")[1] for family in families} == set(UNITS)
    for family in families:
        assert re.fullmatch(rf"wastex_({'|'.join(UNITS)})_[a-z_]+", family.name), family.name
        for sample in family.samples:
            assert set(sample.labels) <= BOUNDED_LABELS.keys(), (sample.name, sample.labels)


def test_every_name_the_dashboard_and_alerts_use_is_a_metric() -> None:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    exported = {family.name + suffix for family in _families() for suffix in ("", *suffixes.get(family.type, ()))}
    dashboard = json.loads((PROJECT_ROOT / "infra" / "grafana" / "wastex-dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    expressions += [rule["expr"] for rule in yaml.safe_load(ALERT_RULES.read_text())["groups"][0]["rules"]]
    used = {name for expr in expressions for name in re.findall(r"\bwastex_[a-z_]+", expr)}
    assert used - exported == set()
