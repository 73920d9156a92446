"""Every Kafka client library of the project against a real SASL_PLAINTEXT SCRAM-SHA-512 broker with ACLs: the
local broker `wastex infra up` starts when WASTEX_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT, here on ports of its own."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError
from confluent_kafka import KafkaError, KafkaException, Message
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from infra.clients import kafka_admin, kafka_producer
from infra.kafka_security import aiokafka_kwargs
from infra.services.base import ServiceError
from infra.services.kafka import KafkaService
from infra.services.process import free_ports
from infra.settings import Settings

ROOT = Path(__file__).parents[2]
WAIT_S = 90.0  # bounds every wait below: a client that hangs fails the test instead of stalling it


@pytest.fixture(scope="module")
def sasl_broker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A private SASL broker (its own state directory and ports); the settings of its super user."""
    broker_port, controller_port = free_ports(2)
    with pytest.MonkeyPatch.context() as env:
        env.delenv("WASTEX_KAFKA_BOOTSTRAP", raising=False)  # the bootstrap follows the private port
        sasl = dataclasses.replace(
            settings, state_dir=tmp_path_factory.mktemp("sasl-home"), kafka_host="127.0.0.1",
            kafka_port=broker_port, kafka_controller_port=controller_port, kafka_heap="256m",
            kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username="wastex-test", kafka_sasl_password=secrets.token_urlsafe(16))
        broker = KafkaService(sasl)
        try:
            broker.up()
            yield sasl
        finally:
            broker.down()
            shutil.rmtree(sasl.state_dir, ignore_errors=True)


def _topic(sasl: Settings) -> str:
    name = f"sasl-test.{uuid.uuid4().hex[:12]}"
    admin = kafka_admin(sasl)  # kept alive until the result: a dropped client cancels its requests
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(WAIT_S)
    return name


def _sasl_env(sasl: Settings) -> dict[str, str]:
    """What a `faust worker` sub-process needs to reach the SASL broker through the settings."""
    return {"WASTEX_HOME": str(sasl.state_dir), "WASTEX_KAFKA_PORT": str(sasl.kafka_port),
            "WASTEX_KAFKA_SECURITY_PROTOCOL": sasl.kafka_security_protocol,
            "WASTEX_KAFKA_SASL_MECHANISM": sasl.kafka_sasl_mechanism,
            "WASTEX_KAFKA_SASL_USERNAME": sasl.kafka_sasl_username,
            "WASTEX_KAFKA_SASL_PASSWORD": sasl.kafka_sasl_password}


async def _read(sasl: Settings, topic: str, expected: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, **aiokafka_kwargs(sasl), group_id=f"t-{uuid.uuid4().hex}",
                                auto_offset_reset="earliest")
    await consumer.start()
    values: list[bytes] = []
    deadline = time.monotonic() + WAIT_S
    try:
        while len(values) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            values += [record.value for records in batch.values() for record in records]
    finally:
        await consumer.stop()
    return values


def test_a_confluent_producer_a_faust_app_and_an_aiokafka_consumer_exchange_records_over_sasl(
        sasl_broker: Settings, tmp_path: Path) -> None:
    source, sink = _topic(sasl_broker), _topic(sasl_broker)
    env = {**os.environ, **_sasl_env(sasl_broker), "RELAY_STREAM_APP": "1", "RELAY_APP_ID": f"relay-{source}",
           "RELAY_BOOTSTRAP": sasl_broker.kafka_bootstrap, "RELAY_DATADIR": str(tmp_path / "faust"),
           "RELAY_SOURCE": source, "RELAY_SINK": sink}
    env.pop("WASTEX_KAFKA_BOOTSTRAP", None)
    log = tmp_path / "worker.log"
    with log.open("wb") as output:
        worker = subprocess.Popen(
            [sys.executable, "-m", "faust", "-A", "tests.integration.faust_relay_app", "worker", "-l", "info"],
            env=env, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        producer = kafka_producer(sasl_broker)
        for value in (b"glass", b"paper"):
            producer.produce(source, value=value)
        assert producer.flush(WAIT_S) == 0
        received = asyncio.run(_read(sasl_broker, sink, expected=2))
    finally:
        worker.terminate()
        worker.wait(60)
    assert sorted(received) == [b"GLASS", b"PAPER"], log.read_text()[-3000:]


def test_a_wrong_password_fails_with_an_authentication_error(sasl_broker: Settings,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    wrong = dataclasses.replace(sasl_broker, kafka_sasl_password="not-the-password")
    errors: list[KafkaError] = []
    producer = kafka_producer(wrong, error_cb=errors.append, log_level=0)
    producer.produce("any-topic", value=b"x")
    refusals: list[KafkaError] = []
    deadline = time.monotonic() + WAIT_S
    while not refusals and time.monotonic() < deadline:
        producer.poll(0.5)
        refusals = [error for error in errors if error.code() == KafkaError._AUTHENTICATION]
    assert refusals, errors
    assert "invalid credentials" in refusals[0].str()
    producer.purge()

    async def start_consumer() -> None:
        consumer = AIOKafkaConsumer(**aiokafka_kwargs(wrong))
        try:
            await asyncio.wait_for(consumer.start(), WAIT_S)
        finally:
            await consumer.stop()

    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        asyncio.run(start_consumer())
    assert "SaslAuthenticationFailed" in caplog.text  # aiokafka logs the cause and raises "unable to bootstrap"


def test_a_plaintext_client_cannot_use_the_sasl_listener(sasl_broker: Settings) -> None:
    plaintext = dataclasses.replace(sasl_broker, kafka_security_protocol="PLAINTEXT")
    with pytest.raises(KafkaException) as refused:
        kafka_admin(plaintext, log_level=0).list_topics(timeout=10)
    assert refused.value.args[0].code() == KafkaError._TRANSPORT

    async def start_consumer() -> None:
        consumer = AIOKafkaConsumer(**aiokafka_kwargs(plaintext))
        try:
            await asyncio.wait_for(consumer.start(), WAIT_S)
        finally:
            await consumer.stop()

    with pytest.raises(KafkaConnectionError):
        asyncio.run(start_consumer())


def test_restarting_with_another_password_than_the_storage_was_formatted_with_is_refused(
        sasl_broker: Settings) -> None:
    other = KafkaService(dataclasses.replace(sasl_broker, kafka_sasl_password="changed-since-format"))
    with pytest.raises(ServiceError, match="formatted without SCRAM-SHA-512 user 'wastex-test' and this password"):
        other.prepare()
    assert f'password="{sasl_broker.kafka_sasl_password}"' in (other.home / "server.properties").read_text()


def test_the_broker_authorizes_with_acls_a_user_writes_only_where_it_is_allowed(sasl_broker: Settings) -> None:
    allowed, forbidden = _topic(sasl_broker), _topic(sasl_broker)
    admin = kafka_admin(sasl_broker)
    user, password = f"producer-{uuid.uuid4().hex[:6]}", secrets.token_urlsafe(12)
    credential = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    for future in admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(user, credential, password.encode())]).values():
        future.result(WAIT_S)
    write = AclBinding(ResourceType.TOPIC, allowed, ResourcePatternType.LITERAL, f"User:{user}", "*",
                       AclOperation.WRITE, AclPermissionType.ALLOW)
    for future in admin.create_acls([write]).values():
        future.result(WAIT_S)

    producer_settings = dataclasses.replace(sasl_broker, kafka_sasl_username=user, kafka_sasl_password=password)
    outcomes: dict[str, KafkaError | None] = {}

    def delivered(error: KafkaError | None, message: Message) -> None:
        outcomes[message.topic()] = error

    producer = kafka_producer(producer_settings, log_level=0, **{"message.timeout.ms": 30_000})
    for topic in (allowed, forbidden):
        producer.produce(topic, value=b"x", on_delivery=delivered)
    producer.flush(WAIT_S)
    assert outcomes[allowed] is None
    assert outcomes[forbidden] is not None and outcomes[forbidden].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
