"""The local servers, in start order."""

from __future__ import annotations

from infra.services.base import Service, ServiceError, ServiceStatus
from infra.services.kafka import KafkaService
from infra.services.minio import MinioService
from infra.services.postgres import PostgresService
from infra.services.prometheus import PrometheusService
from infra.settings import Settings


def all_services(settings: Settings) -> list[Service]:
    return [PostgresService(settings), MinioService(settings), KafkaService(settings), PrometheusService(settings)]


__all__ = ["KafkaService", "MinioService", "PostgresService", "PrometheusService", "Service", "ServiceError",
           "ServiceStatus", "all_services"]
