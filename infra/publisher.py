"""Produce validated events to their topic and key (schemas.events.route), idempotently."""

from __future__ import annotations

from confluent_kafka import KafkaError, Message

from infra.clients import kafka_producer
from infra.settings import Settings
from schemas.codec import encode
from schemas.events import Event, route


class PublishError(RuntimeError):
    """The broker did not acknowledge an event."""


class EventPublisher:
    def __init__(self, settings: Settings, **producer_overrides: object) -> None:
        self._prefix = settings.topic_prefix
        self._producer = kafka_producer(settings, **producer_overrides)
        self._failures: list[str] = []

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failures.append(f"{message.topic()}: {error.str()}")

    def publish(self, event: Event) -> None:
        """Queue one event; `flush` reports whether it was acknowledged."""
        target = route(event)
        while True:
            try:
                self._producer.produce(target.topic.full_name(self._prefix), key=target.key.encode(),
                                       value=encode(event), on_delivery=self._on_delivery)
                break
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.5)
        self._producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every queued event; raises PublishError if any was not acknowledged."""
        pending = self._producer.flush(timeout_s)
        failures, self._failures = self._failures, []
        if pending:
            failures.append(f"{pending} events still unacknowledged after {timeout_s:.0f} s")
        if failures:
            raise PublishError("; ".join(failures))
