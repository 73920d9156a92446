"""Apache Kafka in KRaft mode (one combined broker and controller) on the machine's JDK."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

from infra.clients import kafka_admin
from infra.kafka_security import uses_sasl
from infra.services.base import LaunchSpec, Service
from infra.services.process import port_is_open, run_logged
from infra.settings import Settings

POM = Path(__file__).resolve().parent.parent / "kafka" / "pom.xml"
LOG4J_CONFIG = POM.parent / "log4j.properties"
MIN_JAVA = 17
LOCAL_SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
# Characters that would break the JAAS line of server.properties or the storage tool's --add-scram argument.
_UNQUOTABLE = re.compile(r'[\\",\[\]\s]')


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


def local_sasl_problem(settings: Settings) -> str | None:
    """Why the local broker cannot run with these security settings, or None when it can."""
    if not uses_sasl(settings):
        return None
    if settings.kafka_security_protocol != "SASL_PLAINTEXT":
        return (f"the local broker speaks PLAINTEXT or SASL_PLAINTEXT, not {settings.kafka_security_protocol} "
                "(it has no certificate); use SASL_PLAINTEXT here, SASL_SSL with a shared broker")
    if settings.kafka_sasl_mechanism not in LOCAL_SASL_MECHANISMS:
        return (f"the local broker keeps SCRAM users, WASTEX_KAFKA_SASL_MECHANISM={settings.kafka_sasl_mechanism} "
                f"cannot work with it: use one of {', '.join(LOCAL_SASL_MECHANISMS)}")
    for name, value in (("USERNAME", settings.kafka_sasl_username), ("PASSWORD", settings.kafka_sasl_password)):
        if _UNQUOTABLE.search(value):
            return (f"WASTEX_KAFKA_SASL_{name} holds a quote, backslash, comma, bracket or space, which the "
                    "broker's configuration cannot carry: choose one without")
    return None


def sasl_listener_config(settings: Settings) -> list[str]:
    """server.properties lines of a SASL_PLAINTEXT SCRAM listener with ACLs, the configured user its super user."""
    s = settings
    mechanism = s.kafka_sasl_mechanism
    return [
        f"listeners=SASL_PLAINTEXT://{s.kafka_host}:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
        f"advertised.listeners=SASL_PLAINTEXT://{s.kafka_host}:{s.kafka_port}",
        "inter.broker.listener.name=SASL_PLAINTEXT",
        "listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        f"sasl.enabled.mechanisms={mechanism}",
        f"sasl.mechanism.inter.broker.protocol={mechanism}",
        f"listener.name.sasl_plaintext.{mechanism.lower()}.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{s.kafka_sasl_username}" password="{s.kafka_sasl_password}";',
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        # The broker reaches its controller over the PLAINTEXT controller listener, where it has no name but
        # ANONYMOUS; the authorizer must let that through or the broker never registers. That listener is bound
        # to loopback: only this machine reaches it (a shared broker puts its controllers on SASL too).
        f"super.users=User:{s.kafka_sasl_username};User:ANONYMOUS",
    ]


def plaintext_listener_config(settings: Settings) -> list[str]:
    s = settings
    return [
        f"listeners=PLAINTEXT://{s.kafka_host}:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
        f"advertised.listeners=PLAINTEXT://{s.kafka_host}:{s.kafka_port}",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    ]


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

    @property
    def _scram_stamp(self) -> Path:
        """Which SCRAM user (and password digest) the storage was formatted with: credentials are written then."""
        return self.home / "scram-user"

    def _scram_fingerprint(self) -> str:
        s = self.settings
        digest = hashlib.sha256(f"{s.kafka_sasl_mechanism}\n{s.kafka_sasl_username}\n{s.kafka_sasl_password}"
                                .encode()).hexdigest()
        return f"{s.kafka_sasl_mechanism} {s.kafka_sasl_username} {digest}\n"

    def _write_config(self) -> Path:
        s = self.settings
        listeners = sasl_listener_config(s) if uses_sasl(s) else plaintext_listener_config(s)
        config = self.home / "server.properties"
        config.touch(mode=0o600)
        config.chmod(0o600)  # it holds the SCRAM password when SASL is on
        config.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            # A single node: its controller is never reached from elsewhere.
            f"controller.quorum.voters=1@127.0.0.1:{s.kafka_controller_port}",
            *listeners,
            "controller.listener.names=CONTROLLER",
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
        problem = local_sasl_problem(self.settings)
        if problem:
            raise self.fail(problem, with_log=False)
        self.home.mkdir(parents=True, exist_ok=True)
        formatted = (self.data_dir / "meta.properties").exists()
        if formatted:
            self._check_scram_user()
        config = self._write_config()
        if formatted:
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        scram = []
        if uses_sasl(self.settings):
            s = self.settings
            scram = ["--add-scram",
                     f'{s.kafka_sasl_mechanism}=[name="{s.kafka_sasl_username}",password="{s.kafka_sasl_password}"]']
        code = run_logged(
            [self._java(), "-cp", self._classpath(), f"-Dlog4j.configuration=file:{LOG4J_CONFIG}",
             "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config), *scram],
            self.log_file, secrets=[self.settings.kafka_sasl_password] if scram else [],
        )
        if code != 0:
            raise self.fail("formatting the KRaft storage failed")
        if scram:
            self._scram_stamp.touch(mode=0o600)
            self._scram_stamp.write_text(self._scram_fingerprint())

    def _check_scram_user(self) -> None:
        """A SASL broker on storage formatted without this SCRAM user would refuse even itself: say so first."""
        if not uses_sasl(self.settings):
            return
        stamp = self._scram_stamp
        if stamp.exists() and stamp.read_text() == self._scram_fingerprint():
            return
        raise self.fail(
            f"the Kafka storage in {self.data_dir} was formatted without {self.settings.kafka_sasl_mechanism} user "
            f"{self.settings.kafka_sasl_username!r} and this password (SCRAM users are created when the storage is "
            "formatted): set the user, mechanism and password it was formatted with, or `wastex infra reset` "
            "(deletes every topic) and `wastex infra up` again", with_log=False)

    def launch_spec(self) -> LaunchSpec:
        heap = self.settings.kafka_heap
        return LaunchSpec(
            command=[self._java(), f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                     f"-Dlog4j.configuration=file:{LOG4J_CONFIG}", f"-Dkafka.logs.dir={self.log_file.parent}",
                     "-cp", self._classpath(), "kafka.Kafka", str(self.home / "server.properties")],
            cwd=self.home,
        )

    def is_healthy(self) -> bool:
        if not port_is_open(self.host, self.settings.kafka_port):
            return False
        # log_level 0: a broker still starting up is expected here, not an error worth printing.
        admin = kafka_admin(self.settings, **{"socket.timeout.ms": 2000, "log_level": 0})
        try:
            metadata = admin.list_topics(timeout=2)
        except Exception:
            return False
        return len(metadata.brokers) > 0

