"""Image bytes in MinIO, read with a size cap (deletions belong to infra.image_retention)."""

from __future__ import annotations

from minio import Minio
from minio.error import S3Error

from stream_apps.scoring.decode import BadImage

_MISSING = {"NoSuchKey", "NoSuchBucket", "NoSuchObject"}


class ImageStore:
    def __init__(self, client: Minio, max_bytes: int) -> None:
        self._client = client
        self._max_bytes = max_bytes

    def fetch(self, bucket: str, key: str) -> bytes:
        """The object's bytes; BadImage("missing_object" | "too_many_bytes") instead of a partial read."""
        try:
            response = self._client.get_object(bucket, key)
        except S3Error as error:
            if error.code in _MISSING:
                raise BadImage("missing_object", f"s3://{bucket}/{key}: {error.code}") from None
            raise
        try:
            data = response.read(self._max_bytes + 1)
        finally:
            response.close()
            response.release_conn()
        if len(data) > self._max_bytes:
            raise BadImage("too_many_bytes", f"s3://{bucket}/{key} is over the {self._max_bytes}-byte limit")
        return data
