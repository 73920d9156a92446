"""A scoring worker's Prometheus metrics: every routed image counted once by outcome, lag per assigned partition,
the served model, and nothing at all with metrics off."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry

from schemas.codec import dead_letter_event
from schemas.events import DeadLetterReason, format_timestamp
from schemas.ood_scores import Thresholds
from stream_apps.metrics_page import serve_metrics
from stream_apps.scoring import consumer_lag
from stream_apps.scoring.active_model import ActiveModel
from stream_apps.scoring.batch import CapturedRecord, Kind, Outcome, PreparedBatch
from stream_apps.scoring.consumer_lag import partition_lags
from stream_apps.scoring.pipeline import ScoringPipeline
from stream_apps.scoring.worker_metrics import UNRECORDED, RecordedScoringMetrics, scoring_metrics
from stream_apps.stream_app import StreamApp

pytestmark = pytest.mark.unit

TOPIC = "wastex.images.captured"
BOUNDED_LABELS = {"outcome", "reason", "model_version", "topic", "partition", "runtime"}


class FakeRuntime:
    def __init__(self, runtime: str) -> None:
        self.runtime = runtime


def model(version: str, runtime: str = "litert") -> ActiveModel:
    return ActiveModel(version, "d" * 64, ["glass", "metal"], Thresholds(), FakeRuntime(runtime))  # type: ignore[arg-type]


def record(offset: int, partition: int = 0) -> CapturedRecord:
    return CapturedRecord(TOPIC, partition, offset, b"cam-1", b"{}")


def routed(kind: Kind, offset: int, version: str = "m-1", captured_s_ago: float = 2.0) -> Outcome:
    captured_at = format_timestamp(datetime.now(UTC) - timedelta(seconds=captured_s_ago))
    # The metrics read two fields of the payload: the rest of a valid ImageClassified would only hide them.
    event = SimpleNamespace(payload={"model_version": version, "captured_at": captured_at})
    return Outcome(kind, event, record(offset))  # type: ignore[arg-type]


def dead(offset: int, reason: DeadLetterReason) -> Outcome:
    event = dead_letter_event(b"not json", "bad", topic=TOPIC, partition=0, offset=offset, key=None,
                              service="test", reason=reason)
    return Outcome(Kind.DEAD_LETTER, event, record(offset))


def images(registry: CollectorRegistry, outcome: str, reason: str = "", version: str = "") -> float | None:
    return registry.get_sample_value("wastex_scoring_images_total",
                                     {"outcome": outcome, "reason": reason, "model_version": version})


@pytest.fixture()
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture()
def metrics(registry: CollectorRegistry) -> RecordedScoringMetrics:
    return RecordedScoringMetrics(ood_alert_rate=0.3, registry=registry)


def test_a_delivered_batch_is_counted_once_per_outcome_with_its_outcome_reason_and_model_labels(
        registry: CollectorRegistry, metrics: RecordedScoringMetrics) -> None:
    metrics.outcomes_delivered([routed(Kind.CLASSIFIED, 0), routed(Kind.CLASSIFIED, 1), routed(Kind.OOD, 2),
                                dead(3, DeadLetterReason.NOT_AN_IMAGE), routed(Kind.CLASSIFIED, 4, version="m-2")])

    assert images(registry, "classified", version="m-1") == 2
    assert images(registry, "classified", version="m-2") == 1
    assert images(registry, "ood", version="m-1") == 1
    assert images(registry, "dead_letter", "not_an_image") == 1


def test_capture_to_routed_latency_is_observed_per_scored_image_and_never_negative(
        registry: CollectorRegistry, metrics: RecordedScoringMetrics) -> None:
    metrics.outcomes_delivered([routed(Kind.CLASSIFIED, 0, captured_s_ago=3.0),
                                routed(Kind.OOD, 1, captured_s_ago=-60.0),  # a camera clock a minute ahead
                                dead(2, DeadLetterReason.MALFORMED_EVENT)])  # nothing tells its capture time

    assert registry.get_sample_value("wastex_scoring_capture_to_routed_seconds_count") == 2
    assert registry.get_sample_value("wastex_scoring_capture_to_routed_seconds_bucket", {"le": "0.05"}) == 1
    assert 3.0 <= registry.get_sample_value("wastex_scoring_capture_to_routed_seconds_sum") < 4.0


def test_outcomes_delivered_again_after_a_re_read_are_not_counted_again(
        registry: CollectorRegistry, metrics: RecordedScoringMetrics) -> None:
    metrics.outcomes_delivered([routed(Kind.CLASSIFIED, 0), routed(Kind.CLASSIFIED, 1)])
    metrics.outcomes_delivered([routed(Kind.CLASSIFIED, 1), routed(Kind.CLASSIFIED, 2)])  # offset 1 comes again

    assert images(registry, "classified", version="m-1") == 3


def test_every_outcome_series_exists_at_zero_before_any_image_so_rates_are_never_missing(
        registry: CollectorRegistry, metrics: RecordedScoringMetrics) -> None:
    metrics.model_served(model("m-1"), None)

    assert all(images(registry, "dead_letter", reason.value) == 0 for reason in DeadLetterReason)
    assert images(registry, "classified", version="m-1") == 0
    assert images(registry, "ood", version="m-1") == 0


def test_a_swap_replaces_the_served_models_info_and_only_swaps_after_the_first_load_are_counted(
        registry: CollectorRegistry, metrics: RecordedScoringMetrics) -> None:
    assert registry.get_sample_value("wastex_scoring_model_serving") == 0
    metrics.model_served(model("m-1", "litert"), None)
    first = (registry.get_sample_value("wastex_scoring_model_info", {"model_version": "m-1", "runtime": "litert"}),
             registry.get_sample_value("wastex_scoring_model_swaps_total"))
    metrics.model_served(model("m-2", "openvino"), model("m-1", "litert"))

    assert first == (1, 0)
    assert registry.get_sample_value("wastex_scoring_model_info", {"model_version": "m-1", "runtime": "litert"}) is None
    assert registry.get_sample_value("wastex_scoring_model_info", {"model_version": "m-2", "runtime": "openvino"}) == 1
    assert registry.get_sample_value("wastex_scoring_model_swaps_total") == 1
    assert registry.get_sample_value("wastex_scoring_model_serving") == 1


def test_lag_is_set_per_assigned_partition_and_a_partition_no_longer_assigned_is_removed(
        registry: CollectorRegistry, metrics: RecordedScoringMetrics) -> None:
    metrics.lag_measured({TP(TOPIC, 0): 12, TP(TOPIC, 1): 0})
    metrics.lag_measured({TP(TOPIC, 1): 7})

    assert registry.get_sample_value("wastex_scoring_consumer_lag", {"topic": TOPIC, "partition": "0"}) is None
    assert registry.get_sample_value("wastex_scoring_consumer_lag", {"topic": TOPIC, "partition": "1"}) == 7


def test_images_awaiting_deletion_and_the_ood_alert_rate_are_read_when_prometheus_asks(
        registry: CollectorRegistry, metrics: RecordedScoringMetrics) -> None:
    pending = [1, 2, 3]
    metrics.watch_deletions(lambda: len(pending))
    pending.pop()

    assert registry.get_sample_value("wastex_scoring_images_awaiting_deletion") == 2
    assert registry.get_sample_value("wastex_scoring_ood_alert_rate") == 0.3


def test_a_batch_the_model_ran_on_gives_its_size_and_model_time(registry: CollectorRegistry,
                                                                 metrics: RecordedScoringMetrics) -> None:
    metrics.batch_inferred(32, 0.2)

    assert registry.get_sample_value("wastex_scoring_batch_size_bucket", {"le": "16.0"}) == 0
    assert registry.get_sample_value("wastex_scoring_batch_size_bucket", {"le": "32.0"}) == 1
    assert registry.get_sample_value("wastex_scoring_inference_seconds_bucket", {"le": "0.25"}) == 1


def test_no_scoring_metric_uses_an_unbounded_label(registry: CollectorRegistry,
                                                   metrics: RecordedScoringMetrics) -> None:
    metrics.model_served(model("m-1"), None)
    metrics.outcomes_delivered([routed(Kind.CLASSIFIED, 0), dead(1, DeadLetterReason.TOO_MANY_PIXELS)])
    metrics.lag_measured({TP(TOPIC, 0): 1})
    labels = {name for family in registry.collect() for sample in family.samples for name in sample.labels}

    assert labels - {"le"} <= BOUNDED_LABELS


def test_with_metrics_off_nothing_is_recorded_and_no_metrics_route_or_scrape_target_exists(
        registry: CollectorRegistry, tmp_path: Path) -> None:
    settings = SimpleNamespace(metrics_enabled=False, ood_alert_rate=0.3, state_dir=tmp_path)
    metrics = scoring_metrics(settings, registry)  # type: ignore[arg-type]
    metrics.outcomes_delivered([routed(Kind.CLASSIFIED, 0)])
    metrics.model_served(model("m-1"), None)
    app = StreamApp("metrics-off", broker="kafka://127.0.0.1:1")
    serve_metrics(app, settings, "scoring", "scoring-1", registry=registry)  # type: ignore[arg-type]

    assert metrics is UNRECORDED
    assert list(registry.collect()) == []
    assert "/metrics" not in app.web.views
    assert app._app_tasks == []  # nothing would register a scrape target


def test_metrics_on_serve_the_text_format_at_metrics_without_a_trailing_slash(
        registry: CollectorRegistry, metrics: RecordedScoringMetrics, tmp_path: Path) -> None:
    settings = SimpleNamespace(metrics_enabled=True, state_dir=tmp_path)
    refreshed = []

    async def refresh() -> None:
        refreshed.append(True)

    app = StreamApp("metrics-on", broker="kafka://127.0.0.1:1")
    serve_metrics(app, settings, "scoring", "scoring-1", before_scrape=refresh, registry=registry)  # type: ignore[arg-type]
    response = asyncio.run(app.web.views["/metrics"].get(None))

    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    assert b"wastex_scoring_ood_alert_rate 0.3" in response.body
    assert refreshed == [True]


class FakeConsumer:
    """What lag reads of a Faust consumer: the assignment, the broker's log ends, commits and positions."""

    def __init__(self, assigned: set[TP], log_ends: dict[TP, int], committed: dict[TP, int],
                 positions: dict[TP, int], broker_error: Exception | None = None) -> None:
        self._assigned, self._log_ends, self._positions = assigned, log_ends, positions
        self._committed_offset = committed
        self._broker_error = broker_error

    def assignment(self) -> set[TP]:
        return self._assigned

    async def highwaters(self, *partitions: TP) -> dict[TP, int]:
        if self._broker_error is not None:
            raise self._broker_error
        if not self._log_ends:  # a broker that does not answer
            await asyncio.sleep(3600)
        return {tp: self._log_ends[tp] for tp in partitions}

    async def position(self, tp: TP) -> int:
        return self._positions[tp]


def test_lag_is_the_log_end_minus_the_commit_or_the_fetch_position_where_nothing_is_committed_yet() -> None:
    zero, one, other = TP(TOPIC, 0), TP(TOPIC, 1), TP("wastex.labels", 0)
    consumer = FakeConsumer({zero, one, other}, {zero: 120, one: 40, other: 9}, {zero: 100}, {one: 25, zero: 118})

    assert asyncio.run(partition_lags(consumer, TOPIC)) == {zero: 20, one: 15}  # type: ignore[arg-type]


@pytest.mark.parametrize("broker_error", [ConnectionError("kafka is restarting"), None], ids=["failing", "silent"])
def test_lag_is_not_measured_while_the_broker_fails_or_does_not_answer(
        monkeypatch: pytest.MonkeyPatch, broker_error: Exception | None) -> None:
    monkeypatch.setattr(consumer_lag, "MEASURE_TIMEOUT_S", 0.05)
    zero = TP(TOPIC, 0)
    consumer = FakeConsumer({zero}, {}, {zero: 3}, {}, broker_error=broker_error)

    assert asyncio.run(partition_lags(consumer, TOPIC)) is None  # type: ignore[arg-type]


def test_the_pipeline_reports_once_per_batch_how_many_images_the_model_ran_on_and_for_how_long() -> None:
    class Runtime:
        runtime, input_size = "fake", 2

        def scores(self, pixels: np.ndarray) -> tuple[np.ndarray, None]:
            return np.zeros((len(pixels), 2), np.float32), None

    class Scorer:
        """Every record decodes except offset 3, which the model never sees."""

        def prepare(self, records: list[CapturedRecord], size: int, pool: object) -> PreparedBatch:
            decoded = [r for r in records if r.offset != 3]
            return PreparedBatch(decoded, [None] * len(decoded),  # type: ignore[list-item]
                                 [np.zeros((size, size, 3))] * len(decoded))

        def route(self, batch: PreparedBatch, logits: np.ndarray, model: ActiveModel, embeddings: None
                  ) -> list[Outcome]:
            return []

    batches: list[tuple[int, float]] = []
    observed = SimpleNamespace(batch_inferred=lambda images, seconds: batches.append((images, seconds)))
    pipeline = ScoringPipeline(Scorer(), chunk_size=2, metrics=observed)  # type: ignore[arg-type]
    try:
        asyncio.run(pipeline.score([record(offset) for offset in range(5)],
                                   ActiveModel("m-1", "d", ["a", "b"], Thresholds(), Runtime())))  # type: ignore[arg-type]
        asyncio.run(pipeline.score([record(3)], ActiveModel("m-1", "d", ["a", "b"], Thresholds(),
                                                            Runtime())))  # type: ignore[arg-type]
    finally:
        pipeline.close()

    assert [images for images, _ in batches] == [4]  # the second batch, only a record that failed to decode: none
    assert batches[0][1] >= 0
