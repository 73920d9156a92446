"""Prometheus metrics of the HTTP ingest, served at `GET /metrics` (no token) while WASTEX_METRICS is on.

Counted as each request is answered, every request but the monitoring ones (`/metrics`, `/health`), so what is
counted is the cameras' traffic (uploads, and refused or mistaken requests):
- `wastex_ingest_requests_total{code}`: requests by the HTTP status code answered (201, 400, 401, 413, 503...).
- `wastex_ingest_received_bytes_total`: their request bodies' bytes (Content-Length: waitress has read a whole body,
  up to the size limit, before the app runs, whatever the answer).
- `wastex_ingest_request_seconds`: how long the app took to answer (check, store, announce), as a histogram.

The camera is never a label: its id comes from a client's token, and the codes are a small fixed set.
"""

from __future__ import annotations

import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

UNCOUNTED_PATHS = frozenset({"/metrics", "/health"})
# An upload is checked, stored in MinIO and acknowledged by Kafka: tens to hundreds of milliseconds when all is
# well, seconds while a store struggles (the publisher gives up after about 10 s).
REQUEST_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class IngestMetrics:
    """The ingest's request metrics, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.requests = Counter("wastex_ingest_requests_total", "Ingest requests by HTTP status code.", ["code"],
                                registry=registry)
        self.received_bytes = Counter("wastex_ingest_received_bytes_total", "Request body bytes received.",
                                      registry=registry)
        self.request_seconds = Histogram("wastex_ingest_request_seconds", "Time to answer an ingest request.",
                                         buckets=REQUEST_SECONDS_BUCKETS, registry=registry)

    def record(self, code: int, body_bytes: int, seconds: float) -> None:
        """One answered request."""
        self.requests.labels(str(code)).inc()
        self.received_bytes.inc(body_bytes)
        self.request_seconds.observe(seconds)


def install(app: Flask) -> IngestMetrics:
    """Count the app's requests and serve them at `/metrics`."""
    # A registry per app, not the process-wide one: tests build several apps in one process, and a registry refuses
    # a metric name twice. The process figures (CPU, memory, GC) join it.
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    metrics = IngestMetrics(registry)

    @app.before_request
    def start_clock() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def count(response: Response) -> Response:
        # After-request functions run for error answers too (Flask finalises those the same way).
        if request.path not in UNCOUNTED_PATHS:
            metrics.record(response.status_code, request.content_length or 0,
                           time.perf_counter() - g.metrics_started)
        return response

    @app.get("/metrics")
    def exposition() -> Response:
        return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics

