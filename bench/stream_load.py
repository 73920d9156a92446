"""(c) of the scoring benchmark: the full path producer -> Kafka/MinIO -> worker -> routed event.

Runs in an isolated deployment (own topics, database and buckets) with one real scoring worker.
The images are uploaded first; the timed part publishes their events, as a burst for the sustained rate
and then paced at 70% of it for latency, which is measured to the broker timestamp of the routed record. The
worker's CPU time over the burst (all its threads, from /proc) divided by the images is what the stream costs
per image, to set against the decode + model pipeline's own; the servers' CPU time (Kafka, MinIO, PostgreSQL)
over the same burst is what they take from the same cores.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer, TopicPartition

from infra.clients import kafka_consumer, minio_client
from infra.db.registry import promote
from infra.deployment import create_deployment, drop_deployment
from infra.publisher import EventPublisher
from infra.services.process import free_port, group_cpu_seconds, process_cpu_seconds
from infra.settings import Settings
from producers.capture import SOURCE, CapturedImage, CaptureSink, captured_event
from schemas.codec import new_event
from schemas.events import Event, EventType, parse_timestamp, utc_now
from schemas.model_artefact import ArtefactInfo
from schemas.topics import DEAD_LETTERS, IMAGES_CLASSIFIED, IMAGES_OOD
from stream_apps.worker_process import WorkerProcess
from training_job.model_registry import import_model

WARM_UP_IMAGES = 64
LATENCY_SHARE = 0.7
# The counting agents read the routed records after they are routed: their CPU belongs to the burst's cost too.
COUNTING_SETTLE_S = 2.0


@dataclass(frozen=True)
class StreamFigures:
    pipeline_ips: float
    latency_rate_ips: float
    p50_ms: float
    p99_ms: float
    routed: int
    worker_cpu_ms_per_image: float
    services_cpu_ms_per_image: float  # Kafka, MinIO and PostgreSQL over the same burst


def captured_images(photos: list[bytes]) -> list[CapturedImage]:
    """JPEG photos from six simulated cameras."""
    return [CapturedImage(data, "image/jpeg", f"bench-cam-{i % 6}", "bench") for i, data in enumerate(photos)]


def captured_events(photos: list[bytes], bucket: str) -> list[Event]:
    return [captured_event(image, bucket) for image in captured_images(photos)]


def recaptured(event: Event) -> Event:
    """The same stored image captured again now: a new event id and a capture time of this moment."""
    now = utc_now()
    return new_event(EventType.IMAGE_CAPTURED, {**event.payload, "captured_at": now}, SOURCE, occurred_at=now)


def routed_topics_reader(isolated: Settings) -> Consumer:
    """A consumer of every partition of the outcome topics (classified, OOD, dead letters), from the start."""
    consumer = kafka_consumer(isolated, group_id=f"bench-{uuid.uuid4().hex}")
    partitions = []
    for spec in (IMAGES_CLASSIFIED, IMAGES_OOD, DEAD_LETTERS):
        topic = spec.full_name(isolated.topic_prefix)
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions += [TopicPartition(topic, p, 0) for p in metadata.partitions]
    consumer.assign(partitions)
    return consumer


class RoutedRecords:
    """Broker timestamps of routed records by captured event id, read from the start of the output topics."""

    def __init__(self, isolated: Settings) -> None:
        self._consumer = routed_topics_reader(isolated)
        self.routed_at: dict[str, float] = {}

    def wait_for(self, ids: set[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ids <= self.routed_at.keys():
            if time.monotonic() > deadline:
                missing = len(ids - self.routed_at.keys())
                raise RuntimeError(f"{missing} of {len(ids)} images not routed within {timeout_s:.0f} s")
            for message in self._consumer.consume(500, 0.2):
                if message.error():
                    continue
                # The worker validated these on produce; plain parsing keeps the reader's CPU off the figures.
                event = json.loads(message.value())
                if event["event_type"] == EventType.DEAD_LETTER:
                    raise RuntimeError(f"a benchmark photo was dead-lettered: {event['payload']['reason']}: "
                                       f"{event['payload']['detail']}")
                self.routed_at[event["payload"]["captured_event_id"]] = message.timestamp()[1] / 1000

    def close(self) -> None:
        self._consumer.close()


def services_cpu_seconds(settings: Settings) -> float:
    """CPU time of the local Kafka, MinIO and PostgreSQL servers (0 for one not started by `wastex infra up`)."""
    total = 0.0
    for pid_file in (settings.state_dir / "run").glob("*.pid"):
        try:
            total += group_cpu_seconds(int(pid_file.read_text().strip()))
        except (OSError, ValueError):
            continue
    return total


def _publish_burst(publisher: EventPublisher, stored: list[Event]) -> tuple[list[Event], float]:
    started = time.time()
    burst = [recaptured(event) for event in stored]
    for event in burst:
        publisher.publish(event)
    publisher.flush()
    return burst, started


def publish_paced(publisher: EventPublisher, stored: list[Event], rate: float, seconds: float) -> list[Event]:
    sent: list[Event] = []
    started = time.monotonic()
    for index in range(int(rate * seconds)):
        time.sleep(max(0.0, started + index / rate - time.monotonic()))
        sent.append(recaptured(stored[index % len(stored)]))
        publisher.publish(sent[-1])
    publisher.flush()
    return sent


def measure_stream(settings: Settings, keras_file: Path, info: ArtefactInfo, photos: list[bytes],
                   latency_seconds: float, log_dir: Path, runtime: str, metrics: bool = True) -> StreamFigures:
    """The stream's figures with the worker serving on `runtime`, recording its Prometheus metrics or not."""
    isolated = create_deployment(settings)
    client = minio_client(isolated)
    # Images stay put for the whole run: the same photo is captured again in the latency phase.
    worker = WorkerProcess(isolated, f"bench-scoring-{runtime}-metrics-{'on' if metrics else 'off'}", free_port(),
                           log_dir, WASTEX_DELETE_DELAY_S="86400", WASTEX_SERVING_RUNTIME=runtime,
                           WASTEX_METRICS=str(metrics).lower())
    try:
        imported = import_model(isolated, keras_file, info.classes, tau_energy=info.tau_energy,
                                tau_softmax=info.tau_softmax)
        promote(isolated, imported.version, promoted_by="bench", source="bench")
        publisher = EventPublisher(isolated)
        sink = CaptureSink(client, isolated.bucket_images, publisher)
        with ThreadPoolExecutor(4) as pool:
            stored = list(pool.map(sink.store, captured_images(photos)))
        health = worker.start().wait_serving(timeout_s=300)
        if health["runtime"] != runtime:
            raise RuntimeError(f"the worker serves on {health['runtime']}, not {runtime}: see {worker.log_path}")
        assert worker.process is not None
        routed = RoutedRecords(isolated)
        try:
            warm_up, _ = _publish_burst(publisher, stored[:WARM_UP_IMAGES])
            routed.wait_for({e.event_id for e in warm_up}, 300)

            cpu_before = process_cpu_seconds(worker.process.pid)
            services_before = services_cpu_seconds(settings)
            burst, started = _publish_burst(publisher, stored)
            routed.wait_for({e.event_id for e in burst}, 600)
            time.sleep(COUNTING_SETTLE_S)
            cpu_ms_per_image = 1000 * (process_cpu_seconds(worker.process.pid) - cpu_before) / len(burst)
            services_ms_per_image = 1000 * (services_cpu_seconds(settings) - services_before) / len(burst)
            pipeline_ips = len(burst) / (max(routed.routed_at[e.event_id] for e in burst) - started)

            rate = LATENCY_SHARE * pipeline_ips
            paced = publish_paced(publisher, stored, rate, latency_seconds)
            routed.wait_for({e.event_id for e in paced}, 300)
            latencies = [1000 * (routed.routed_at[e.event_id] - parse_timestamp(e.occurred_at).timestamp())
                         for e in paced]
        finally:
            routed.close()
    finally:
        worker.stop()
        drop_deployment(isolated)
    return StreamFigures(pipeline_ips, rate, float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99)),
                         len(routed.routed_at), cpu_ms_per_image, services_ms_per_image)

