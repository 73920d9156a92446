"""Integration tests run against the real services that `wastex infra up` started."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import NewTopic
from minio import Minio

from infra.clients import kafka_admin, minio_client
from infra.services import all_services
from infra.settings import Settings


@pytest.fixture(scope="session", autouse=True)
def running_services(settings: Settings) -> None:
    unhealthy = [s.name for s in (svc.status() for svc in all_services(settings)) if not s.healthy]
    if unhealthy:
        pytest.fail(f"services not healthy: {', '.join(unhealthy)}; run `wastex infra up` first", pytrace=False)


@pytest.fixture()
def new_topic(settings: Settings) -> Iterator[Callable[..., str]]:
    """Creates uniquely named topics for one test and deletes them afterwards."""
    admin = kafka_admin(settings)
    created: list[str] = []

    def create(partitions: int = 1) -> str:
        name = f"{settings.topic_prefix}test.{uuid.uuid4().hex[:12]}"
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result()
        created.append(name)
        return name

    yield create
    if created:
        for future in admin.delete_topics(created).values():
            future.result()


@pytest.fixture()
def storage(settings: Settings) -> Minio:
    return minio_client(settings)


@pytest.fixture()
def uploaded(settings: Settings, storage: Minio) -> Iterator[list[str]]:
    """Image object keys a test created; removed at the end."""
    keys: list[str] = []
    yield keys
    for key in set(keys):
        storage.remove_object(settings.bucket_images, key)
