"""How a Kafka client reaches and authenticates to the broker: the one place that turns the settings
(WASTEX_KAFKA_BOOTSTRAP, WASTEX_KAFKA_SECURITY_PROTOCOL, WASTEX_KAFKA_SASL_*, WASTEX_KAFKA_SSL_CAFILE) into the
arguments of each client library the project uses: confluent-kafka, aiokafka and Faust.

Every client the project builds starts from these, so none is left speaking PLAINTEXT to a SASL broker.
"""

from __future__ import annotations

import ssl
from typing import Any

import faust

from infra.settings import Settings


def uses_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol.startswith("SASL_")


def uses_tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol == "SASL_SSL"


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of a SASL_SSL connection (the CA file's authorities, else the system's); None without TLS."""
    if not uses_tls(settings):
        return None
    return ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)


def confluent_config(settings: Settings) -> dict[str, Any]:
    """confluent-kafka (librdkafka) properties: the bootstrap servers and how to authenticate."""
    config: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap,
                              "security.protocol": settings.kafka_security_protocol}
    if uses_sasl(settings):
        config.update({"sasl.mechanism": settings.kafka_sasl_mechanism,
                       "sasl.username": settings.kafka_sasl_username,
                       "sasl.password": settings.kafka_sasl_password})
    if uses_tls(settings):
        # "probe": librdkafka looks for the system's CA bundle, as Python's default context does.
        config["ssl.ca.location"] = settings.kafka_ssl_cafile or "probe"
    return config


def aiokafka_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of AIOKafkaConsumer / AIOKafkaProducer / AIOKafkaAdminClient."""
    kwargs: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap,
                              "security_protocol": settings.kafka_security_protocol}
    if uses_sasl(settings):
        # aiokafka takes the SCRAM user in its "plain" arguments too.
        kwargs.update({"sasl_mechanism": settings.kafka_sasl_mechanism,
                       "sasl_plain_username": settings.kafka_sasl_username,
                       "sasl_plain_password": settings.kafka_sasl_password})
    if uses_tls(settings):
        kwargs["ssl_context"] = ssl_context(settings)
    return kwargs


def faust_credentials(settings: Settings) -> faust.SASLCredentials | None:
    """Faust's `broker_credentials`; None for PLAINTEXT. A TLS context makes Faust speak SASL_SSL."""
    if not uses_sasl(settings):
        return None
    return faust.SASLCredentials(username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
                                 mechanism=settings.kafka_sasl_mechanism, ssl_context=ssl_context(settings))


def faust_broker(settings: Settings) -> dict[str, Any]:
    """`broker` and `broker_credentials` of a `faust.App`."""
    return {"broker": f"kafka://{settings.kafka_bootstrap}", "broker_credentials": faust_credentials(settings)}
