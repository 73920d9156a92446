"""What a scoring worker tells Prometheus: every routed image counted once, by outcome, and how the worker keeps up.

Invariant: every image whose outcome Kafka acknowledged is counted exactly once in `wastex_scoring_images_total`,
by its routed outcome (classified, ood or dead_letter), when its batch's outcomes were delivered. So after N images
scored the counters add up to N. A record delivered again by this worker (read again after a dropped record, a
rebalance back to it) is not counted again while it is among the last RECENT_RECORDS counted; a record another
worker scores again after a rebalance counts there too. Capture-to-routed latency is observed for the same images
(dead letters excepted: their capture time may be unreadable); batch size and model time once per micro-batch, over
the images that decoded (those the model ran on).

Labels stay bounded: outcomes, DeadLetterReason values, registered model versions, serving runtimes and the
images topic's partitions; never an image, event or camera id. `ScoringMetrics` itself records nothing: it is
what a worker uses with metrics off (WASTEX_METRICS=false), the benchmark's baseline.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Callable, Mapping

from faust.types import TP
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from infra.settings import Settings
from schemas.events import DeadLetterReason, parse_timestamp
from stream_apps.scoring.active_model import ActiveModel
from stream_apps.scoring.batch import Kind, Outcome

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
INFERENCE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
CAPTURE_TO_ROUTED_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
RECENT_RECORDS = 1 << 16  # minutes of records at full speed: a re-read comes within seconds


class ScoringMetrics:
    """What a scoring worker reports; this base records nothing (metrics off)."""

    def outcomes_delivered(self, outcomes: list[Outcome]) -> None:
        """A batch's outcomes, every one acknowledged by Kafka."""

    def batch_inferred(self, images: int, seconds: float) -> None:
        """The model ran on a batch's `images` (those that decoded) for `seconds` in all."""

    def model_served(self, model: ActiveModel, previous: ActiveModel | None) -> None:
        """`model` serves from now on, instead of `previous`."""

    def lag_measured(self, lags: Mapping[TP, int]) -> None:
        """Records not yet committed, per assigned partition of the images topic (every one of them)."""

    def watch_deletions(self, awaiting: Callable[[], int]) -> None:
        """`awaiting()` tells how many images wait for deletion, whenever Prometheus asks."""


UNRECORDED = ScoringMetrics()


class RecordedScoringMetrics(ScoringMetrics):
    """Records into `registry` (the process's default one unless a test brings its own)."""

    def __init__(self, ood_alert_rate: float, registry: CollectorRegistry = REGISTRY) -> None:
        self._images = Counter("wastex_scoring_images", "Images routed, by outcome (reason: dead letters' only)",
                               ["outcome", "reason", "model_version"], registry=registry)
        self._batch_size = Histogram("wastex_scoring_batch_size", "Images the model ran on per micro-batch",
                                     buckets=BATCH_SIZE_BUCKETS, registry=registry)
        self._inference = Histogram("wastex_scoring_inference_seconds", "Model time per micro-batch",
                                    buckets=INFERENCE_BUCKETS, registry=registry)
        self._capture_to_routed = Histogram("wastex_scoring_capture_to_routed_seconds",
                                            "From an image's capture to its outcome's delivery",
                                            buckets=CAPTURE_TO_ROUTED_BUCKETS, registry=registry)
        self._lag = Gauge("wastex_scoring_consumer_lag", "Images topic records not yet committed, per partition",
                          ["topic", "partition"], registry=registry)
        self._model_info = Gauge("wastex_scoring_model_info", "The model served (1) and its runtime",
                                 ["model_version", "runtime"], registry=registry)
        self._serving = Gauge("wastex_scoring_model_serving", "1 once a model serves", registry=registry)
        self._swaps = Counter("wastex_scoring_model_swaps", "Models swapped in after the first one",
                              registry=registry)
        self._awaiting_deletion = Gauge("wastex_scoring_images_awaiting_deletion",
                                        "Classified captures whose image waits for deletion", registry=registry)
        Gauge("wastex_scoring_ood_alert_rate", "The OOD rate above which the OodRateHigh alert fires",
              registry=registry).set(ood_alert_rate)
        # Every outcome's series exists from the start: a rate over it is 0, not missing.
        for reason in DeadLetterReason:
            self._images.labels(Kind.DEAD_LETTER.value, reason.value, "")
        self._lagging: set[TP] = set()
        self._recent = _RecentRecords(RECENT_RECORDS)

    def outcomes_delivered(self, outcomes: list[Outcome]) -> None:
        now = time.time()
        tally: Tally[tuple[str, str, str]] = Tally()
        for outcome in outcomes:
            record = outcome.record
            if not self._recent.first_time((record.topic, record.partition, record.offset)):
                continue
            payload = outcome.event.payload
            if outcome.kind is Kind.DEAD_LETTER:  # no verdict, so no model; its capture time may be unreadable
                tally[(outcome.kind.value, payload["reason"], "")] += 1
                continue
            tally[(outcome.kind.value, "", payload["model_version"])] += 1
            captured = parse_timestamp(payload["captured_at"]).timestamp()
            self._capture_to_routed.observe(max(0.0, now - captured))  # a camera clock ahead is not negative time
        for labels, count in tally.items():
            self._images.labels(*labels).inc(count)

    def batch_inferred(self, images: int, seconds: float) -> None:
        self._batch_size.observe(images)
        self._inference.observe(seconds)

    def model_served(self, model: ActiveModel, previous: ActiveModel | None) -> None:
        if previous is not None:
            self._model_info.remove(previous.version, previous.runtime.runtime)
            self._swaps.inc()
        self._model_info.labels(model.version, model.runtime.runtime).set(1)
        self._serving.set(1)
        for kind in (Kind.CLASSIFIED, Kind.OOD):
            self._images.labels(kind.value, "", model.version)

    def lag_measured(self, lags: Mapping[TP, int]) -> None:
        for tp in self._lagging - lags.keys():  # no longer assigned here: its new owner reports it
            self._lag.remove(tp.topic, str(tp.partition))
        for tp, lag in lags.items():
            self._lag.labels(tp.topic, str(tp.partition)).set(lag)
        self._lagging = set(lags)

    def watch_deletions(self, awaiting: Callable[[], int]) -> None:
        self._awaiting_deletion.set_function(awaiting)


def scoring_metrics(settings: Settings, registry: CollectorRegistry = REGISTRY) -> ScoringMetrics:
    """Recording metrics, unless WASTEX_METRICS is off."""
    return RecordedScoringMetrics(settings.ood_alert_rate, registry) if settings.metrics_enabled else UNRECORDED


class _RecentRecords:
    """The last `capacity` records (topic, partition, offset) seen, to tell a record delivered again."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._order: deque[tuple[str, int, int]] = deque()
        self._seen: set[tuple[str, int, int]] = set()

    def first_time(self, record: tuple[str, int, int]) -> bool:
        if record in self._seen:
            return False
        if len(self._order) == self._capacity:
            self._seen.discard(self._order.popleft())
        self._order.append(record)
        self._seen.add(record)
        return True
