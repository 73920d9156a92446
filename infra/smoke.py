"""A round trip through all three services: the main job until the demo exists."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass

from confluent_kafka import TopicPartition
from sqlalchemy import text

from infra.clients import db_engine, kafka_consumer, kafka_producer, minio_client
from infra.settings import Settings
from schemas.topics import INFRA_SMOKE


@dataclass(frozen=True)
class SmokeResult:
    kafka: str
    minio: str
    postgres: str


def _kafka_round_trip(settings: Settings, token: str) -> str:
    topic = INFRA_SMOKE.full_name(settings.topic_prefix)
    producer = kafka_producer(settings)
    producer.produce(topic, key=token, value=token.encode())
    if producer.flush(15) != 0:
        raise RuntimeError("Kafka: the smoke message was not acknowledged within 15 s")
    consumer = kafka_consumer(settings, group_id=f"wastex-smoke-{token}")
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        for _ in range(100):
            message = consumer.poll(0.3)
            if message is not None and not message.error() and message.value() == token.encode():
                return f"produced and consumed 1 message on {topic}"
    finally:
        consumer.close()
    raise RuntimeError(f"Kafka: the smoke message never came back from {topic}")


def _minio_round_trip(settings: Settings, token: str) -> str:
    client = minio_client(settings)
    key = f"smoke/{token}.txt"
    body = token.encode()
    client.put_object(settings.bucket_images, key, io.BytesIO(body), len(body), content_type="text/plain")
    response = client.get_object(settings.bucket_images, key)
    try:
        read_back = response.read()
    finally:
        response.close()
        response.release_conn()
    client.remove_object(settings.bucket_images, key)
    if read_back != body:
        raise RuntimeError("MinIO: the object read back differs from the one written")
    return f"put, got and deleted {settings.bucket_images}/{key}"


def _postgres_round_trip(settings: Settings) -> str:
    with db_engine(settings).connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        server = connection.execute(text("SHOW server_version")).scalar_one()
    return f"PostgreSQL {server}, schema at migration {version}"


def run_smoke(settings: Settings) -> SmokeResult:
    token = uuid.uuid4().hex
    return SmokeResult(kafka=_kafka_round_trip(settings, token), minio=_minio_round_trip(settings, token),
                       postgres=_postgres_round_trip(settings))
