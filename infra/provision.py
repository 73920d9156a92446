"""What the running services need before any unit starts: topics, buckets, the database schema."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

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


def align_topic_configs(settings: Settings) -> list[str]:
    """Give existing topics the config their spec names where it differs; returns the names changed.

    Creation alone would leave a topic made by an older release on its old policy (cameras.drift was deleted after
    30 days before it was compacted, and workers read a camera's state from it). Keys the spec does not name are
    left as the site set them.
    """
    admin = kafka_admin(settings)
    existing = set(admin.list_topics(timeout=10).topics)
    specs = {spec.full_name(settings.topic_prefix): spec for spec in ALL_TOPICS if spec.config}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in specs if name in existing]
    if not resources:
        return []
    changes = []
    for resource, future in admin.describe_configs(resources, request_timeout=30).items():
        live = {key: entry.value for key, entry in future.result().items()}
        wanted = specs[resource.name].config
        entries = [ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                   for key, value in wanted.items() if live.get(key) != value]
        if entries:
            changes.append(ConfigResource(ConfigResource.Type.TOPIC, resource.name, incremental_configs=entries))
    if not changes:
        return []
    for future in admin.incremental_alter_configs(changes, request_timeout=30).values():
        future.result()
    return sorted(resource.name for resource in changes)


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
    return {"topics": ensure_topics(settings), "reconfigured": align_topic_configs(settings),
            "buckets": ensure_buckets(settings)}


def provisioned_summary(created: dict[str, list[str]]) -> str:
    return (f"{len(created['topics'])} new topics, {len(created['buckets'])} new buckets, "
            f"{len(created['reconfigured'])} topics reconfigured, schema at head")
