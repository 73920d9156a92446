"""Stopping a local service of `wastex infra` and starting it again, for fault injection (bench and tests)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from infra.services import KafkaService, MinioService, PostgresService, Service, ServiceError
from infra.settings import Settings

OUTAGES: dict[str, type[Service]] = {"minio": MinioService, "postgres": PostgresService, "kafka": KafkaService}


def start_again(target: Service, attempts: int = 6, pause_s: float = 10.0) -> None:
    """Start a stopped service, trying again when its port is still taken: on a port inside the ephemeral range
    (32768-60999) a client reconnecting to the stopped server can connect to itself and hold the port a while."""
    for attempt in range(1, attempts + 1):
        try:
            target.up()
            return
        except ServiceError:
            if attempt == attempts:
                raise
            time.sleep(pause_s)


@contextmanager
def service_stopped(settings: Settings, name: str) -> Iterator[None]:
    """`name` (minio, postgres, kafka) down inside the block, and started and healthy again after it."""
    target = OUTAGES[name](settings)
    target.down()
    try:
        yield
    finally:
        start_again(target)
