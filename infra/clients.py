"""Client factories for the three stores, configured from settings."""

from __future__ import annotations

from functools import cache
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from minio import Minio
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import sessionmaker

from infra.kafka_security import confluent_config
from infra.settings import Settings


def kafka_producer(settings: Settings, **overrides: Any) -> Producer:
    """An idempotent producer: acks from all replicas, no duplicates on retry."""
    config = {
        **confluent_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        # The Java and aiokafka (Faust) default: a key lands on the same partition whoever produces it.
        "partitioner": "murmur2_random",
        **overrides,
    }
    return Producer(config)


def kafka_consumer(settings: Settings, group_id: str, **overrides: Any) -> Consumer:
    config = {
        **confluent_config(settings),
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        **overrides,
    }
    return Consumer(config)


def kafka_admin(settings: Settings, **overrides: Any) -> AdminClient:
    return AdminClient({**confluent_config(settings), **overrides})


def minio_client(settings: Settings) -> Minio:
    return Minio(settings.s3_endpoint, access_key=settings.s3_access_key, secret_key=settings.s3_secret_key,
                 secure=settings.s3_secure)


@cache
def _engine(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True)


def db_engine(settings: Settings) -> Engine:
    return _engine(settings.database_url)


def db_sessions(settings: Settings) -> sessionmaker:
    return sessionmaker(db_engine(settings), expire_on_commit=False)
