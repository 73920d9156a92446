"""MinIO through the project's client factory: put, get, list, delete."""

from __future__ import annotations

import io
import uuid

import pytest
from minio.error import S3Error

from infra.clients import minio_client
from infra.settings import Settings


def test_put_get_list_delete(settings: Settings) -> None:
    client = minio_client(settings)
    prefix = f"test/{uuid.uuid4().hex}/"
    bodies = {f"{prefix}{name}": name.encode() * 1000 for name in ("a", "b", "c")}
    for key, body in bodies.items():
        client.put_object(settings.bucket_images, key, io.BytesIO(body), len(body),
                          content_type="application/octet-stream")

    listed = {obj.object_name: obj.size for obj in client.list_objects(settings.bucket_images, prefix=prefix)}
    assert listed == {key: len(body) for key, body in bodies.items()}

    response = client.get_object(settings.bucket_images, f"{prefix}b")
    try:
        assert response.read() == bodies[f"{prefix}b"]
    finally:
        response.close()
        response.release_conn()

    for key in bodies:
        client.remove_object(settings.bucket_images, key)
    assert list(client.list_objects(settings.bucket_images, prefix=prefix)) == []
    with pytest.raises(S3Error) as missing:
        client.stat_object(settings.bucket_images, f"{prefix}a")
    assert missing.value.code == "NoSuchKey"


def test_every_bucket_was_provisioned(settings: Settings) -> None:
    client = minio_client(settings)
    assert all(client.bucket_exists(bucket) for bucket in settings.buckets)
