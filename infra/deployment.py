"""An isolated deployment on the shared servers: its own topic prefix, database and buckets.

Tests and benchmarks run side by side with a live system this way, and drop everything afterwards.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from contextlib import closing

import psycopg2
from minio import Minio
from minio.deleteobjects import DeleteObject

from infra.clients import kafka_admin, minio_client
from infra.db.migrate import upgrade_to_head
from infra.provision import ensure_buckets, ensure_topics
from infra.settings import Settings


def _run_outside_transaction(settings: Settings, statement: str) -> None:
    """CREATE and DROP DATABASE refuse to run inside a transaction."""
    with closing(psycopg2.connect(host=settings.postgres_host, port=settings.postgres_port,
                                  user=settings.postgres_user, password=settings.postgres_password,
                                  dbname="postgres")) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement)


def create_database(settings: Settings) -> Settings:
    """Settings of a fresh database at the schema head (and a topic prefix of the same name, unprovisioned)."""
    name = f"t{uuid.uuid4().hex[:10]}"
    isolated = dataclasses.replace(settings, topic_prefix=f"{name}.", postgres_db=name)
    _run_outside_transaction(settings, f'CREATE DATABASE "{name}"')
    upgrade_to_head(isolated)
    return isolated


def drop_database(isolated: Settings) -> None:
    _run_outside_transaction(isolated, f'DROP DATABASE IF EXISTS "{isolated.postgres_db}" WITH (FORCE)')


def create_deployment(settings: Settings) -> Settings:
    """Settings of a new deployment: a fresh database at the schema head, its own topics and buckets."""
    isolated = create_database(settings)
    name = isolated.postgres_db
    isolated = dataclasses.replace(isolated, bucket_images=f"{name}-images", bucket_datasets=f"{name}-datasets",
                                   bucket_models=f"{name}-models")
    ensure_topics(isolated)
    ensure_buckets(isolated)
    return isolated


def _remove_bucket(client: Minio, bucket: str) -> None:
    if not client.bucket_exists(bucket):
        return
    objects = [DeleteObject(o.object_name) for o in client.list_objects(bucket, recursive=True)]
    for error in client.remove_objects(bucket, objects):
        raise RuntimeError(f"could not remove s3://{bucket}/{error.name}: {error.message}")
    client.remove_bucket(bucket)


def drop_deployment(isolated: Settings) -> None:
    admin = kafka_admin(isolated)
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(isolated.topic_prefix)]
    if names:
        for future in admin.delete_topics(names).values():
            future.result()
    client = minio_client(isolated)
    for bucket in isolated.buckets:
        _remove_bucket(client, bucket)
    drop_database(isolated)


def environment(isolated: Settings, **extra: str) -> dict[str, str]:
    """Environment variables that point a `wastex` sub-process at the deployment."""
    return {**os.environ, "WASTEX_TOPIC_PREFIX": isolated.topic_prefix, "WASTEX_POSTGRES_DB": isolated.postgres_db,
            "WASTEX_BUCKET_IMAGES": isolated.bucket_images, "WASTEX_BUCKET_DATASETS": isolated.bucket_datasets,
            "WASTEX_BUCKET_MODELS": isolated.bucket_models, **extra}
