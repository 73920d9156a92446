"""An isolated deployment on the shared servers: its own topic prefix and its own database."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
import uuid
from contextlib import closing
from pathlib import Path

import psycopg2
import requests
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from infra.clients import kafka_consumer
from infra.db.migrate import upgrade_to_head
from infra.provision import ensure_topics
from infra.settings import Settings
from schemas.codec import decode_event
from schemas.events import Event

WASTEX = str(Path(sys.executable).with_name("wastex"))


def _run_outside_transaction(settings: Settings, statement: str) -> None:
    """CREATE and DROP DATABASE refuse to run inside a transaction."""
    with closing(psycopg2.connect(host=settings.postgres_host, port=settings.postgres_port,
                                  user=settings.postgres_user, password=settings.postgres_password,
                                  dbname="postgres")) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement)


def create_deployment(settings: Settings) -> Settings:
    name = f"t{uuid.uuid4().hex[:10]}"
    isolated = dataclasses.replace(settings, topic_prefix=f"{name}.", postgres_db=name)
    _run_outside_transaction(settings, f'CREATE DATABASE "{name}"')
    upgrade_to_head(isolated)
    ensure_topics(isolated)
    return isolated


def drop_deployment(isolated: Settings) -> None:
    admin = AdminClient({"bootstrap.servers": isolated.kafka_bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(isolated.topic_prefix)]
    if names:
        for future in admin.delete_topics(names).values():
            future.result()
    _run_outside_transaction(isolated, f'DROP DATABASE IF EXISTS "{isolated.postgres_db}" WITH (FORCE)')


def environment(isolated: Settings, **extra: str) -> dict[str, str]:
    return {**os.environ, "WASTEX_TOPIC_PREFIX": isolated.topic_prefix, "WASTEX_POSTGRES_DB": isolated.postgres_db,
            **extra}


class WorkerProcess:
    """`wastex worker scoring` as a subprocess, logging to a file."""

    def __init__(self, isolated: Settings, name: str, web_port: int, log_dir: Path, **env: str) -> None:
        self.name, self.web_port = name, web_port
        self.log_path = log_dir / f"{name}.log"
        self._env = environment(isolated, WASTEX_HOME=str(isolated.state_dir), **env)
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([WASTEX, "worker", "scoring", "--name", self.name, "--web-port",
                                         str(self.web_port), "--loglevel", "info"],
                                        env=self._env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        return self

    def wait_serving(self, timeout_s: float = 120) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log_tail()
            try:
                health = requests.get(f"http://127.0.0.1:{self.web_port}/health/", timeout=1).json()
                if health["model_version"]:
                    return health
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"{self.name} not serving after {timeout_s} s\n{self.log_tail()}")

    def stop(self, kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(60)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class TopicReader:
    """Reads validated events from topics of a deployment, from their start, with one consumer."""

    def __init__(self, isolated: Settings, *names: str) -> None:
        self._consumer = kafka_consumer(isolated, group_id=f"reader-{uuid.uuid4().hex}")
        partitions = []
        for name in names:
            topic = f"{isolated.topic_prefix}{name}"
            metadata = self._consumer.list_topics(topic, timeout=10).topics[topic]
            partitions += [TopicPartition(topic, p, 0) for p in metadata.partitions]
        self._consumer.assign(partitions)
        self._prefix = isolated.topic_prefix
        self.events: dict[str, list[Event]] = {name: [] for name in names}

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for message in self._consumer.consume(500, 0.2):
                if not message.error():
                    self.events[message.topic().removeprefix(self._prefix)].append(decode_event(message.value()))

    def close(self) -> None:
        self._consumer.close()

