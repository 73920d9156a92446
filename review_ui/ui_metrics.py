"""Prometheus metrics of the review UI, served unauthenticated at `GET /metrics` while WASTEX_METRICS is on.

Read from PostgreSQL at every scrape (left out of the answer while the database is unreachable):
- `wastex_review_queue_items{status}`: review items by status (pending, labelled, discarded).
- `wastex_review_outbox_rows`: label events in the outbox still to be sent to Kafka (neither sent nor rejected).
- `wastex_review_outbox_oldest_age_seconds`: how long the oldest of them has waited; 0 when none waits.
Counted by this process as it answers:
- `wastex_review_label_actions_total{kind}`: operator actions, once per action (a bulk label of 50 images is one;
  an action_id sent again is not counted again): label, review (the predicted class confirmed), discard, undo,
  and import (one per import of labelled images from the page or the API).
- `wastex_review_failed_sign_ins_total`: sign-ins refused for a wrong username or password. Attempts the throttle
  refuses before checking the password (locked, busy) are not failures of their own: they count nothing.

No label carries an image, camera, operator or any text an operator typed: kinds and statuses are fixed sets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flask import Flask, Response, current_app
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from infra.settings import Settings
from review_ui.outbox import outbox_backlog
from review_ui.queue import status_counts

log = logging.getLogger(__name__)
EXTENSION = "wastex_ui_metrics"  # the app extension holding the app's UiMetrics (absent while metrics are off)
METRICS_ENDPOINT = "metrics"
LABEL_ACTION_KINDS = ("label", "review", "discard", "undo", "import")
# A scrape must answer even when PostgreSQL does not: connecting, waiting for the pooled connection, a statement
# and unacknowledged network traffic (a host gone silent) are each given up after about this long.
STORE_TIMEOUT_S = 2


def store_sessions(settings: Settings) -> sessionmaker:
    """Sessions on an engine of their own with short timeouts: the UI's engine waits as long as it takes."""
    engine = create_engine(
        settings.database_url, pool_size=1, max_overflow=0, pool_timeout=STORE_TIMEOUT_S, pool_pre_ping=True,
        connect_args={"connect_timeout": STORE_TIMEOUT_S, "tcp_user_timeout": STORE_TIMEOUT_S * 1000,
                      "options": f"-c statement_timeout={STORE_TIMEOUT_S * 1000}"})
    return sessionmaker(engine)


class ReviewStoreCollector(Collector):
    """The queue depth and the outbox backlog, read from PostgreSQL when Prometheus scrapes."""

    def __init__(self, sessions: sessionmaker) -> None:
        self._sessions = sessions
        self._failing = False  # a failure is logged once per outage, not at every scrape

    @staticmethod
    def families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (GaugeMetricFamily("wastex_review_queue_items", "Review queue items by status.", labels=["status"]),
                GaugeMetricFamily("wastex_review_outbox_rows", "Label events waiting in the outbox for Kafka."),
                GaugeMetricFamily("wastex_review_outbox_oldest_age_seconds",
                                  "How long the oldest waiting label event has waited (0 when none waits)."))

    def describe(self) -> Iterable[Metric]:
        # Without this a registry that describes its collectors would query the database on registration.
        return self.families()

    def collect(self) -> Iterable[Metric]:
        try:
            with self._sessions() as session:
                by_status = status_counts(session)
                backlog = outbox_backlog(session)
        except SQLAlchemyError as error:  # unreachable, too slow, or refusing us
            if not self._failing:
                log.warning("metrics: the review queue and outbox figures are left out while they cannot be "
                            "read from PostgreSQL: %s", error)
            self._failing = True
            return []
        self._failing = False
        queue, rows, oldest_age = self.families()
        for status, count in by_status.items():
            queue.add_metric([status], count)
        rows.add_metric([], backlog.rows)
        oldest_age.add_metric([], backlog.oldest_age_s)
        return [queue, rows, oldest_age]


class UiMetrics:
    """The review UI's metrics, registered in `registry`: the counters the views increment, the store figures."""

    def __init__(self, store: sessionmaker, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.label_actions = Counter("wastex_review_label_actions_total", "Operator label actions by kind.",
                                     ["kind"], registry=registry)
        for kind in LABEL_ACTION_KINDS:  # every kind from 0 on, so the first action of a kind shows in rate()
            self.label_actions.labels(kind)
        self.failed_sign_ins = Counter("wastex_review_failed_sign_ins_total",
                                       "Sign-ins refused for a wrong username or password.", registry=registry)
        registry.register(ReviewStoreCollector(store))


def install(app: Flask, settings: Settings) -> UiMetrics:
    """Give the app its metrics and the `/metrics` route (endpoint METRICS_ENDPOINT, public: Prometheus signs in
    nowhere)."""
    # A registry per app, not the process-wide one: tests (and tools) build several apps in one process, and a
    # registry refuses a metric name twice. The process figures (CPU, memory, GC) join it.
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    ui_metrics = app.extensions[EXTENSION] = UiMetrics(store_sessions(settings), registry)

    def exposition() -> Response:
        return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.add_url_rule("/metrics", METRICS_ENDPOINT, exposition, methods=["GET"])
    return ui_metrics


def _installed() -> UiMetrics | None:
    return current_app.extensions.get(EXTENSION)


def count_label_action(kind: str) -> None:
    """One operator action of this kind (see LABEL_ACTION_KINDS) was carried out; nothing while metrics are off."""
    if (ui_metrics := _installed()) is not None:
        ui_metrics.label_actions.labels(kind).inc()


def count_failed_sign_in() -> None:
    """A sign-in with a wrong username or password; nothing while metrics are off."""
    if (ui_metrics := _installed()) is not None:
        ui_metrics.failed_sign_ins.inc()

