"""Provisioning brings topics made by an older release to the config their spec names now."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from infra.clients import kafka_admin
from infra.deployment import create_deployment, drop_deployment
from infra.provision import align_topic_configs
from infra.settings import Settings
from schemas.topics import CAMERAS_DRIFT, IMAGES_CAPTURED


@pytest.fixture()
def deployment(settings: Settings) -> Iterator[Settings]:
    isolated = create_deployment(settings)
    try:
        yield isolated
    finally:
        drop_deployment(isolated)


def _configs(isolated: Settings, name: str) -> dict[str, str]:
    admin, resource = kafka_admin(isolated), ConfigResource(ConfigResource.Type.TOPIC, name)
    described = admin.describe_configs([resource], request_timeout=30)[resource].result()
    return {key: entry.value for key, entry in described.items()}


def _set(isolated: Settings, name: str, values: dict[str, str]) -> None:
    entries = [ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET) for key, value in values.items()]
    resource = ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=entries)
    admin = kafka_admin(isolated)  # kept: a client collected before its futures resolve cancels them
    for future in admin.incremental_alter_configs([resource], request_timeout=30).values():
        future.result()
    _wait_applied(isolated, name, values)


def _wait_applied(isolated: Settings, name: str, values: dict[str, str]) -> None:
    deadline = time.monotonic() + 10  # the broker applies a change through its metadata log, a moment later
    while any(_configs(isolated, name).get(key) != value for key, value in values.items()):
        assert time.monotonic() < deadline, f"{values} not applied to {name}"
        time.sleep(0.1)


def test_a_drift_topic_left_on_the_old_delete_policy_is_compacted_and_a_site_setting_outside_the_spec_stays(
        deployment: Settings) -> None:
    drift = CAMERAS_DRIFT.full_name(deployment.topic_prefix)
    assert align_topic_configs(deployment) == []  # freshly created topics already match
    _set(deployment, drift, {"cleanup.policy": "delete", "retention.ms": str(30 * 24 * 3600 * 1000),
                             "max.message.bytes": "2000000"})

    assert align_topic_configs(deployment) == [drift]

    _wait_applied(deployment, drift, CAMERAS_DRIFT.config)
    assert _configs(deployment, drift)["max.message.bytes"] == "2000000"
    assert align_topic_configs(deployment) == []


def test_a_shortened_image_retention_is_set_back_to_the_spec(deployment: Settings) -> None:
    captured = IMAGES_CAPTURED.full_name(deployment.topic_prefix)
    _set(deployment, captured, {"retention.ms": "60000"})

    assert align_topic_configs(deployment) == [captured]
    _wait_applied(deployment, captured, {"retention.ms": IMAGES_CAPTURED.config["retention.ms"]})
