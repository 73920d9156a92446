"""What the running services need before any unit starts: topics, buckets, the database schema."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

from infra.clients import kafka_admin, minio_client
from infra.db.migrate import upgrade_to_head
from infra.settings import Settings
from schemas.topics import ALL_TOPICS


def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics with their partitions and retention; returns the names created."""
    admin = kafka_admin(settings)
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [
        NewTopic(spec.full_name(settings.topic_prefix),
                 num_partitions=spec.partition_count(settings.image_partitions),
                 replication_factor=1, config=spec.config)
        for spec in ALL_TOPICS
        if spec.full_name(settings.topic_prefix) not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, request_timeout=30).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created


def ensure_buckets(settings: Settings) -> list[str]:
    client = minio_client(settings)
    created = []
    for bucket in settings.buckets:
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
            created.append(bucket)
    return created


def provision(settings: Settings) -> dict[str, list[str]]:
    upgrade_to_head(settings)
    return {"topics": ensure_topics(settings), "buckets": ensure_buckets(settings)}
