"""Apache Kafka in KRaft mode (one combined broker and controller) on the machine's JDK."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

from infra.services.base import LaunchSpec, Service
from infra.services.process import port_is_open, run_logged

POM = Path(__file__).resolve().parent.parent / "kafka" / "pom.xml"
LOG4J_CONFIG = POM.parent / "log4j.properties"
MIN_JAVA = 17


def pinned_kafka_version() -> str:
    """The Kafka version pinned in infra/kafka/pom.xml (the one place it is written)."""
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(POM).getroot().find("m:properties/m:kafka.version", namespace)
    if node is None or not node.text:
        raise RuntimeError(f"{POM} has no <kafka.version> property")
    return node.text.strip()


def java_major_version(java: str) -> int:
    output = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', output)
    if not match:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


class KafkaService(Service):
    name = "kafka"

    @property
    def host(self) -> str:
        return self.settings.kafka_host

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.settings.kafka_port, self.settings.kafka_controller_port)

    @property
    def libs_dir(self) -> Path:
        return self.home / "libs"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise self.fail(f"JDK missing: no `java` on PATH (Kafka needs Java {MIN_JAVA}+; "
                            "apt-get install openjdk-17-jre-headless)", with_log=False)
        major = java_major_version(java)
        if major < MIN_JAVA:
            raise self.fail(f"JDK too old: {java} is Java {major}, Kafka needs {MIN_JAVA}+", with_log=False)
        return java

    def install(self) -> None:
        self._java()
        version = pinned_kafka_version()
        stamp = self.libs_dir / f".kafka-{version}"
        if stamp.exists():
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise self.fail("Maven missing: no `mvn` on PATH to resolve Kafka from Maven Central "
                            "(apt-get install maven)", with_log=False)
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        build_log = self.log_file.with_name("kafka-install.log")
        code = run_logged(
            [mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
             f"-DoutputDirectory={self.libs_dir}"],
            build_log,
        )
        if code != 0 or not any(self.libs_dir.glob("kafka_2.13-*.jar")):
            raise self.install_failed(f"resolving Kafka {version} with Maven failed", build_log)
        stamp.touch()

    def _write_config(self) -> Path:
        s = self.settings
        config = self.home / "server.properties"
        config.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{s.kafka_host}:{s.kafka_controller_port}",
            f"listeners=PLAINTEXT://{s.kafka_host}:{s.kafka_port},CONTROLLER://{s.kafka_host}:{s.kafka_controller_port}",
            f"advertised.listeners=PLAINTEXT://{s.kafka_host}:{s.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.data_dir}",
            # A single broker: internal topics must not wait for replicas that never come.
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "num.partitions=3",
            # Topics come from schemas/topics.py; a mistyped name must fail, not create a topic.
            "auto.create.topics.enable=false",
            "group.initial.rebalance.delay.ms=0",
            "log.retention.hours=168",
            "",
        ]))
        return config

    def _classpath(self) -> str:
        return f"{self.libs_dir}/*"

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        code = run_logged(
            [self._java(), "-cp", self._classpath(), f"-Dlog4j.configuration=file:{LOG4J_CONFIG}",
             "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)],
            self.log_file,
        )
        if code != 0:
            raise self.fail("formatting the KRaft storage failed")

    def launch_spec(self) -> LaunchSpec:
        heap = self.settings.kafka_heap
        return LaunchSpec(
            command=[self._java(), f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                     f"-Dlog4j.configuration=file:{LOG4J_CONFIG}", f"-Dkafka.logs.dir={self.log_file.parent}",
                     "-cp", self._classpath(), "kafka.Kafka", str(self.home / "server.properties")],
            cwd=self.home,
        )

    def is_healthy(self) -> bool:
        from confluent_kafka.admin import AdminClient

        if not port_is_open(self.host, self.settings.kafka_port):
            return False
        # log_level 0: a broker still starting up is expected here, not an error worth printing.
        admin = AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap, "socket.timeout.ms": 2000,
                             "log_level": 0})
        try:
            metadata = admin.list_topics(timeout=2)
        except Exception:
            return False
        return len(metadata.brokers) > 0

