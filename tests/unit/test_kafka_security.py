"""The Kafka security settings, refused when inconsistent, and what each client library is given from them."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import certifi
import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from infra.clients import kafka_consumer, kafka_producer
from infra.kafka_security import aiokafka_kwargs, confluent_config, faust_broker, faust_credentials
from infra.services.kafka import KafkaService, local_sasl_problem
from infra.settings import Settings, load_settings

SECURITY_SETTINGS = ("WASTEX_KAFKA_SECURITY_PROTOCOL", "WASTEX_KAFKA_SASL_MECHANISM", "WASTEX_KAFKA_SASL_USERNAME",
                     "WASTEX_KAFKA_SASL_PASSWORD", "WASTEX_KAFKA_SSL_CAFILE", "WASTEX_KAFKA_BOOTSTRAP",
                     "WASTEX_KAFKA_HOST")


@pytest.fixture()
def kafka_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in SECURITY_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WASTEX_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("WASTEX_KAFKA_PORT", "19092")
    monkeypatch.setenv("WASTEX_KAFKA_CONTROLLER_PORT", "19093")
    return monkeypatch


def _sasl(env: pytest.MonkeyPatch, protocol: str = "SASL_PLAINTEXT", **extra: str) -> Settings:
    env.setenv("WASTEX_KAFKA_SECURITY_PROTOCOL", protocol)
    env.setenv("WASTEX_KAFKA_SASL_USERNAME", "wastex-app")
    env.setenv("WASTEX_KAFKA_SASL_PASSWORD", "s3cret-pw")
    for name, value in extra.items():
        env.setenv(name, value)
    return load_settings()


def test_by_default_every_client_speaks_plaintext_without_credentials(kafka_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert confluent_config(settings) == {"bootstrap.servers": "127.0.0.1:19092", "security.protocol": "PLAINTEXT"}
    assert aiokafka_kwargs(settings) == {"bootstrap_servers": "127.0.0.1:19092", "security_protocol": "PLAINTEXT"}
    assert faust_broker(settings) == {"broker": "kafka://127.0.0.1:19092", "broker_credentials": None}


def test_sasl_plaintext_gives_each_library_the_scram_user(kafka_env: pytest.MonkeyPatch) -> None:
    settings = _sasl(kafka_env)
    assert confluent_config(settings) == {
        "bootstrap.servers": "127.0.0.1:19092", "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "wastex-app", "sasl.password": "s3cret-pw"}
    assert aiokafka_kwargs(settings) == {
        "bootstrap_servers": "127.0.0.1:19092", "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "wastex-app", "sasl_plain_password": "s3cret-pw"}
    # What Faust hands its aiokafka consumers, producers and admin client.
    assert credentials_to_aiokafka_auth(faust_credentials(settings)) == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "wastex-app", "sasl_plain_password": "s3cret-pw", "ssl_context": None}


def test_sasl_ssl_verifies_the_broker_against_the_configured_authority(kafka_env: pytest.MonkeyPatch) -> None:
    settings = _sasl(kafka_env, "sasl_ssl", WASTEX_KAFKA_SASL_MECHANISM="scram-sha-256",
                     WASTEX_KAFKA_SSL_CAFILE=certifi.where())
    config = confluent_config(settings)
    assert (config["security.protocol"], config["sasl.mechanism"]) == ("SASL_SSL", "SCRAM-SHA-256")
    assert config["ssl.ca.location"] == certifi.where()
    context = aiokafka_kwargs(settings)["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SASL_SSL"


def test_sasl_ssl_without_a_ca_file_trusts_the_system_authorities(kafka_env: pytest.MonkeyPatch) -> None:
    settings = _sasl(kafka_env, "SASL_SSL")
    assert confluent_config(settings)["ssl.ca.location"] == "probe"
    assert isinstance(aiokafka_kwargs(settings)["ssl_context"], ssl.SSLContext)


def test_librdkafka_accepts_the_sasl_configuration_of_the_project_clients(kafka_env: pytest.MonkeyPatch) -> None:
    settings = _sasl(kafka_env)
    kafka_producer(settings).flush(0)
    kafka_consumer(settings, group_id="g").close()


@pytest.mark.parametrize("missing", ["WASTEX_KAFKA_SASL_USERNAME", "WASTEX_KAFKA_SASL_PASSWORD"])
def test_sasl_without_a_username_or_password_is_refused(kafka_env: pytest.MonkeyPatch, missing: str) -> None:
    kafka_env.setenv("WASTEX_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    kafka_env.setenv("WASTEX_KAFKA_SASL_USERNAME", "wastex-app")
    kafka_env.setenv("WASTEX_KAFKA_SASL_PASSWORD", "pw")
    kafka_env.delenv(missing)
    with pytest.raises(ValueError, match="needs WASTEX_KAFKA_SASL_USERNAME and WASTEX_KAFKA_SASL_PASSWORD"):
        load_settings()


def test_an_unknown_protocol_or_mechanism_is_refused(kafka_env: pytest.MonkeyPatch) -> None:
    kafka_env.setenv("WASTEX_KAFKA_SECURITY_PROTOCOL", "SSL")
    with pytest.raises(ValueError, match="WASTEX_KAFKA_SECURITY_PROTOCOL must be one of PLAINTEXT, SASL_PLAINTEXT"):
        load_settings()
    kafka_env.setenv("WASTEX_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    kafka_env.setenv("WASTEX_KAFKA_SASL_MECHANISM", "GSSAPI")
    with pytest.raises(ValueError, match="WASTEX_KAFKA_SASL_MECHANISM must be one of"):
        load_settings()


def test_a_ca_file_without_tls_or_that_does_not_exist_is_refused(kafka_env: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    kafka_env.setenv("WASTEX_KAFKA_SSL_CAFILE", certifi.where())
    with pytest.raises(ValueError, match="TLS is used only with SASL_SSL"):
        load_settings()
    with pytest.raises(ValueError, match="is not a readable file"):
        _sasl(kafka_env, "SASL_SSL", WASTEX_KAFKA_SSL_CAFILE=str(tmp_path / "missing.pem"))


def test_the_local_broker_refuses_security_it_cannot_offer(kafka_env: pytest.MonkeyPatch) -> None:
    assert local_sasl_problem(load_settings()) is None
    assert local_sasl_problem(_sasl(kafka_env)) is None
    assert "not SASL_SSL" in local_sasl_problem(_sasl(kafka_env, "SASL_SSL"))
    assert "SCRAM" in local_sasl_problem(_sasl(kafka_env, WASTEX_KAFKA_SASL_MECHANISM="PLAIN"))
    assert "quote" in local_sasl_problem(_sasl(kafka_env, WASTEX_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
                                               WASTEX_KAFKA_SASL_PASSWORD='pa"ss'))


def test_the_local_sasl_broker_authenticates_with_scram_and_authorizes_with_acls(
        kafka_env: pytest.MonkeyPatch) -> None:
    service = KafkaService(_sasl(kafka_env))
    service.home.mkdir(parents=True)
    config = service._write_config()
    lines = config.read_text().splitlines()
    assert "listeners=SASL_PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" in lines
    assert "listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT" in lines
    assert "sasl.enabled.mechanisms=SCRAM-SHA-512" in lines
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" in lines
    assert "super.users=User:wastex-app;User:ANONYMOUS" in lines
    assert stat.S_IMODE(config.stat().st_mode) == 0o600  # it holds the password


def test_the_local_broker_stays_plaintext_by_default(kafka_env: pytest.MonkeyPatch) -> None:
    service = KafkaService(load_settings())
    service.home.mkdir(parents=True)
    text = service._write_config().read_text()
    assert "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" in text.splitlines()
    assert "sasl" not in text and "authorizer" not in text
