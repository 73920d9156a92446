"""`up` fails with a message naming the cause and the log when a toolchain is missing or a build fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.services.base import ServiceError
from infra.services.kafka import KafkaService
from infra.services.minio import MinioService
from infra.settings import load_settings


@pytest.fixture()
def isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("WASTEX_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("WASTEX_CACHE_DIR", str(tmp_path / "cache"))
    return load_settings()


def _path_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tools: dict[str, str]) -> None:
    """A PATH holding only the given fake tools (name -> shell body)."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    for name, body in tools.items():
        tool = bindir / name
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))


def test_kafka_without_a_jdk_says_so(isolated_settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _path_with(monkeypatch, tmp_path, {})
    with pytest.raises(ServiceError, match="JDK missing"):
        KafkaService(isolated_settings).install()


def test_kafka_with_an_old_jdk_says_so(isolated_settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _path_with(monkeypatch, tmp_path, {"java": 'echo \'openjdk version "1.8.0_392"\' >&2'})
    with pytest.raises(ServiceError, match=r"JDK too old: .* is Java 8"):
        KafkaService(isolated_settings).install()


def test_a_failed_minio_build_names_the_build_log(isolated_settings, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    _path_with(monkeypatch, tmp_path, {"go": "echo 'go: module lookup disabled' >&2; exit 1"})
    with pytest.raises(ServiceError) as failure:
        MinioService(isolated_settings).install()
    message = str(failure.value)
    assert "build failed: go install github.com/minio/minio@" in message
    assert "minio-build.log" in message
    assert "go: module lookup disabled" in message


def test_minio_without_go_says_so(isolated_settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _path_with(monkeypatch, tmp_path, {})
    with pytest.raises(ServiceError, match="Go toolchain missing"):
        MinioService(isolated_settings).install()


def test_a_cached_minio_build_is_reused_without_go(isolated_settings, monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    service = MinioService(isolated_settings)
    service.shared_binary.parent.mkdir(parents=True)
    service.shared_binary.write_bytes(b"built once")
    _path_with(monkeypatch, tmp_path, {})
    service.install()
    assert service.binary.read_bytes() == b"built once"
