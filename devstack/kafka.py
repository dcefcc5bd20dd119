"""Kafka of the local stack: one KRaft node (broker + controller) run from the Maven jars in
``.cache/jars/kafka-broker``, listening on 127.0.0.1 only, and the contract's topics."""

from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path

from devstack import processes
from devstack.config import port_of, stack_settings
from devstack.paths import JARS_DIR, StackError, StackPaths
from fraudops.health import check_kafka
from fraudops.settings_table import BY_NAME

READY_TIMEOUT_S = 90
# partitions of each contract topic, by the setting that names it
TOPIC_PARTITIONS = {"KAFKA_TOPIC": 4, "KAFKA_ALERTS_TOPIC": 1, "KAFKA_LABELS_TOPIC": 1, "KAFKA_DECISIONS_TOPIC": 4}
# the same under the default names: {"banking-transactions": 4, "fraud-alerts": 1, ...}
DEFAULT_TOPICS = {BY_NAME[setting].default: partitions for setting, partitions in TOPIC_PARTITIONS.items()}
BROKER_PROPERTIES = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    "num.partitions": "1",
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "auto.create.topics.enable": "true",
    # large enough for the hostile-input tests (a 10 MB message must reach the quarantine)
    "message.max.bytes": "16777216",
    "replica.fetch.max.bytes": "16777216",
    "log.retention.hours": "168",
}
LOG4J_PROPERTIES = (
    "status = warn\nappender.console.type = Console\nappender.console.name = STDOUT\n"
    "appender.console.layout.type = PatternLayout\n"
    "appender.console.layout.pattern = [%d] %p %m (%c)%n\n"
    "rootLogger.level = INFO\nrootLogger.appenderRef.console.ref = STDOUT\n"
    "logger.kafka.name = kafka\nlogger.kafka.level = WARN\n"
    "logger.apache.name = org.apache.kafka\nlogger.apache.level = WARN\n"
)



def new_cluster_id() -> str:
    """A KRaft cluster id as Kafka's own Uuid.randomUuid makes it: base64url of a random UUID,
    never starting with '-' (the storage tool's command line would read it as an option)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id

def topic_partitions(cfg: dict[str, str]) -> dict[str, int]:
    """{topic name: partitions} of the contract's topics under their configured names."""
    return {cfg[setting]: partitions for setting, partitions in TOPIC_PARTITIONS.items()}


def java_classpath(name: str) -> str:
    folder = JARS_DIR / name
    if not any(folder.glob("*.jar")):
        raise StackError(f"Kafka jars missing in {folder}; fetch them with `make setup`")
    return f"{folder}/*"


def java_command(paths: StackPaths, main_class: str, *args: str, heap: str = "256m") -> list[str]:
    """``java`` running ``main_class`` from the Kafka jars, logging as <state>/kafka/log4j2.properties says."""
    return ["java", f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={paths.kafka / 'log4j2.properties'}",
            "-cp", java_classpath("kafka-broker"), main_class, *args]


def write_properties(paths: StackPaths, cfg: dict[str, str]) -> Path:
    """server.properties (and log4j2.properties) of the node; returns the former's path."""
    port = port_of(cfg["KAFKA_BROKERS"].split(",")[0], 9092)
    ctl = int(cfg["KAFKA_CONTROLLER_PORT"])
    listeners = f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctl}"
    values = {**BROKER_PROPERTIES, "controller.quorum.bootstrap.servers": f"127.0.0.1:{ctl}",
              "listeners": listeners, "advertised.listeners": listeners, "log.dirs": str(paths.kafka / "data")}
    props = paths.kafka / "server.properties"
    props.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    (paths.kafka / "log4j2.properties").write_text(LOG4J_PROPERTIES)
    return props


def start_kafka(paths: StackPaths, cfg: dict[str, str]) -> None:
    """Format the storage on the first start, start the node, wait until ready, create the topics."""
    if processes.is_ours(paths, "kafka"):
        return
    processes.ensure_port_free(port_of(cfg["KAFKA_BROKERS"].split(",")[0], 9092), "Kafka")
    processes.ensure_port_free(int(cfg["KAFKA_CONTROLLER_PORT"]), "Kafka controller")
    (paths.kafka / "data").mkdir(parents=True, exist_ok=True)
    props = write_properties(paths, cfg)
    if not (paths.kafka / "data" / "meta.properties").exists():
        cluster_id = new_cluster_id()
        subprocess.run(java_command(paths, "kafka.tools.StorageTool", "format", "--standalone",
                                    "-t", cluster_id, "-c", str(props)),
                       check=True, stdout=subprocess.DEVNULL)
    pid = processes.spawn(paths, "kafka", java_command(paths, "kafka.Kafka", str(props), heap="1g"))
    settings = stack_settings(paths, cfg)
    processes.wait_until_ready(lambda: check_kafka(settings), "kafka", READY_TIMEOUT_S, paths, pid)
    create_topics(cfg["KAFKA_BROKERS"], topic_partitions(cfg))


def create_topics(brokers: str, partitions_by_topic: dict[str, int]) -> None:
    """Create the topics that do not exist yet (replication factor 1)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": brokers})
    existing = set(admin.list_topics(timeout=10).topics)
    new = [NewTopic(name, num_partitions=n, replication_factor=1)
           for name, n in partitions_by_topic.items() if name not in existing]
    for name, future in (admin.create_topics(new) if new else {}).items():
        try:
            future.result(timeout=30)
        except Exception as exc:  # confluent_kafka raises KafkaException with the code in its text
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise StackError(f"could not create Kafka topic {name}: {exc}") from exc
