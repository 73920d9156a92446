"""Folders in and out of MinIO: model artefacts and manifests are written once under a prefix."""

from __future__ import annotations

from pathlib import Path

from minio import Minio


def upload_folder(client: Minio, bucket: str, prefix: str, folder: Path) -> list[str]:
    """Upload every file under folder to bucket/prefix/...; returns the object keys."""
    keys = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = f"{prefix.rstrip('/')}/{path.relative_to(folder).as_posix()}"
        client.fput_object(bucket, key, str(path))
        keys.append(key)
    return keys


def download_prefix(client: Minio, bucket: str, prefix: str, folder: Path) -> list[Path]:
    """Download every object under bucket/prefix/ into folder (atomically per file); returns the paths."""
    prefix = prefix.rstrip("/") + "/"
    paths = []
    for obj in client.list_objects(bucket, prefix=prefix, recursive=True):
        target = folder / obj.object_name[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        client.fget_object(bucket, obj.object_name, str(partial))
        partial.replace(target)
        paths.append(target)
    return paths


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/some/prefix -> ("bucket", "some/prefix")."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    return bucket, prefix
