"""A real cluster on this machine: Spark standalone (a master and 2 workers) and a 3-node Kafka
KRaft cluster, all on 127.0.0.1, beside the local stack (which keeps PostgreSQL, Redis, MLflow).

* Kafka: 3 nodes, each broker + controller (static quorum of 3 voters), from the same jars as the
  local stack (.cache/jars/kafka-broker); brokers on 29092-29094, controllers on 29192-29194.
  Topics (the stack's three names) with replication factor 3 and min.insync.replicas 2: one node
  may die without losing a write or stopping producers that use acks=all.
* Spark: ``spark-class org.apache.spark.deploy.master.Master`` on spark://127.0.0.1:7077 (UI
  8080) and two ``...worker.Worker`` (1 core, 1 GB each; UIs 8081, 8082), from the venv's pyspark.

Reads: the jars of ``make setup``; CLUSTER_KAFKA_PORT (29092), CLUSTER_SPARK_PORT (7077),
CLUSTER_SPARK_UI_PORT (8080) to move the ports. Writes: only under ``.stack/cluster/`` (data,
logs, PID files, ``cluster.env`` with the cluster's KAFKA_BROKERS).

Commands::

    python -m devstack.cluster up        # start what is not running, wait until all answer
    python -m devstack.cluster down      # stop only what it started (by PID); harmless twice
    python -m devstack.cluster status
    python -m devstack.cluster clean     # down, then remove .stack/cluster
    python -m devstack.cluster submit-args   # the spark-submit options for this cluster
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from devstack.kafka import DEFAULT_TOPICS as TOPICS
from devstack.kafka import java_command, new_cluster_id
from devstack.paths import StackError, StackPaths, stack_paths
from devstack.processes import (
    cmdline,
    ensure_port_free,
    is_alive,
    port_in_use,
    read_pid,
    spawn,
    terminate,
    wait_until,
)

KAFKA_NODES = 3
SPARK_WORKERS = 2
REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2
LOOPBACK = "127.0.0.1"
VENV_BIN = Path(sys.executable).parent
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


@dataclass(frozen=True)
class ClusterConfig:
    """Where the cluster lives and listens. Tests build one with free ports and a private folder."""

    state: Path
    kafka_ports: tuple[int, ...] = (29092, 29093, 29094)
    controller_ports: tuple[int, ...] = (29192, 29193, 29194)
    spark_port: int = 7077
    spark_ui_port: int = 8080
    worker_ui_ports: tuple[int, ...] = (8081, 8082)
    worker_cores: int = 1
    worker_memory: str = "1g"
    executor_memory: str = "1g"

    @property
    def paths(self) -> StackPaths:
        return StackPaths(state=self.state, env_file=self.state / "cluster.env")

    @property
    def master_url(self) -> str:
        return f"spark://{LOOPBACK}:{self.spark_port}"

    @property
    def kafka_brokers(self) -> str:
        return ",".join(f"{LOOPBACK}:{port}" for port in self.kafka_ports)

    def kafka_node(self, node: int) -> str:
        return f"kafka-{node}"

    def spark_worker(self, worker: int) -> str:
        return f"spark-worker-{worker}"

    @property
    def processes(self) -> list[str]:
        """Every process of the cluster, in start order."""
        return ([self.kafka_node(n) for n in range(1, KAFKA_NODES + 1)] + ["spark-master"]
                + [self.spark_worker(w) for w in range(1, SPARK_WORKERS + 1)])


def cluster_config(env: dict[str, str] | None = None) -> ClusterConfig:
    """The default cluster: state in <stack state>/cluster, ports from CLUSTER_* variables."""
    env = dict(os.environ if env is None else env)
    kafka = int(env.get("CLUSTER_KAFKA_PORT", "29092"))
    ui = int(env.get("CLUSTER_SPARK_UI_PORT", "8080"))
    return ClusterConfig(
        state=stack_paths(env).state / "cluster",
        kafka_ports=tuple(kafka + i for i in range(KAFKA_NODES)),
        controller_ports=tuple(kafka + 100 + i for i in range(KAFKA_NODES)),
        spark_port=int(env.get("CLUSTER_SPARK_PORT", "7077")),
        spark_ui_port=ui,
        worker_ui_ports=tuple(ui + 1 + i for i in range(SPARK_WORKERS)),
    )


def spark_submit_args(cfg: ClusterConfig) -> list[str]:
    """The options that send a job to this cluster: one 1-core executor on each worker, the
    driver reachable on loopback (the local job's line with these instead of --master local[2])."""
    return ["--master", cfg.master_url,
            "--total-executor-cores", str(SPARK_WORKERS * cfg.worker_cores),
            "--executor-cores", str(cfg.worker_cores), "--executor-memory", cfg.executor_memory,
            "--conf", f"spark.driver.host={LOOPBACK}", "--conf", f"spark.driver.bindAddress={LOOPBACK}"]


# ---------------------------------------------------------------- processes

_MARKERS = {"kafka": "kafka.Kafka", "spark-master": MASTER_CLASS, "spark-worker": WORKER_CLASS}


def running_pid(cfg: ClusterConfig, name: str) -> int | None:
    """The PID of our live ``name`` process (its command line names our folder), else None."""
    pid = read_pid(cfg.paths, name)
    if pid is None or not is_alive(pid):
        return None
    cmd = cmdline(pid)
    marker = _MARKERS[name.rsplit("-", 1)[0] if name[-1].isdigit() else name]
    return pid if marker in cmd and str(cfg.state) in cmd else None


def running(cfg: ClusterConfig) -> dict[str, int]:
    """{process name: pid} of the cluster's live processes."""
    return {name: pid for name in cfg.processes if (pid := running_pid(cfg, name))}


def kill(cfg: ClusterConfig, name: str) -> int:
    """SIGKILL one node and everything it started (a worker's executor and Python workers):
    what a machine failure looks like. Returns the PID that was killed."""
    pid = running_pid(cfg, name)
    if pid is None:
        raise StackError(f"{name} is not running")
    os.killpg(pid, signal.SIGKILL)
    return pid


def _stop_all(cfg: ClusterConfig, names: list[str], timeout: float = 30.0) -> list[str]:
    """SIGTERM every one at once (a Kafka node's controlled shutdown needs its peers), wait,
    SIGKILL what is left; PID files go away. Returns the names that were running."""
    pids = {name: pid for name in names if (pid := running_pid(cfg, name))}
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in pids.values():
        terminate(pid, timeout=max(0.0, deadline - time.monotonic()))  # SIGKILL after the deadline
    for pid in pids.values():
        _end_group(pid, timeout=10)  # a worker's executor and Python workers too
    for name in names:
        cfg.paths.pid_file(name).unlink(missing_ok=True)
    return list(pids)


# ---------------------------------------------------------------- Kafka

def _kafka_dir(cfg: ClusterConfig, node: int) -> Path:
    return cfg.state / "kafka" / f"node-{node}"


def _kafka_properties(cfg: ClusterConfig, node: int) -> Path:
    port, ctl = cfg.kafka_ports[node - 1], cfg.controller_ports[node - 1]
    voters = ",".join(f"{n}@{LOOPBACK}:{p}" for n, p in enumerate(cfg.controller_ports, start=1))
    folder = _kafka_dir(cfg, node)
    props = folder / "server.properties"
    props.write_text("\n".join([
        "process.roles=broker,controller",
        f"node.id={node}",
        f"controller.quorum.voters={voters}",
        f"listeners=PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{ctl}",
        f"advertised.listeners=PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{ctl}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={folder / 'data'}",
        "num.partitions=1",
        f"default.replication.factor={REPLICATION_FACTOR}",
        f"min.insync.replicas={MIN_INSYNC_REPLICAS}",
        f"offsets.topic.replication.factor={REPLICATION_FACTOR}",
        "offsets.topic.num.partitions=5",
        f"transaction.state.log.replication.factor={REPLICATION_FACTOR}",
        f"transaction.state.log.min.isr={MIN_INSYNC_REPLICAS}",
        "transaction.state.log.num.partitions=5",
        f"share.coordinator.state.topic.replication.factor={REPLICATION_FACTOR}",
        f"share.coordinator.state.topic.min.isr={MIN_INSYNC_REPLICAS}",
        "unclean.leader.election.enable=false",
        # a dead node is fenced (its partitions get new leaders) within seconds
        "broker.heartbeat.interval.ms=1000",
        "broker.session.timeout.ms=6000",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=true",
        "message.max.bytes=16777216",
        "replica.fetch.max.bytes=16777216",
        "log.retention.hours=168",
    ]) + "\n")
    return props


def _kafka_log4j(cfg: ClusterConfig) -> None:
    # devstack.kafka.java_command points log4j at <state>/kafka/log4j2.properties
    (cfg.state / "kafka" / "log4j2.properties").write_text(
        "status = warn\nappender.console.type = Console\nappender.console.name = STDOUT\n"
        "appender.console.layout.type = PatternLayout\n"
        "appender.console.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = INFO\nrootLogger.appenderRef.console.ref = STDOUT\n"
        "logger.kafka.name = kafka\nlogger.kafka.level = WARN\n"
        "logger.apache.name = org.apache.kafka\nlogger.apache.level = WARN\n"
        "logger.controller.name = org.apache.kafka.controller\nlogger.controller.level = INFO\n"
    )


def start_kafka_node(cfg: ClusterConfig, node: int) -> int:
    """Start node ``node`` (1..3) if it is not running; format its storage on the first start."""
    name = cfg.kafka_node(node)
    pid = running_pid(cfg, name)
    if pid:
        return pid
    for port in (cfg.kafka_ports[node - 1], cfg.controller_ports[node - 1]):
        ensure_port_free(port, f"{name} of the cluster")
    (_kafka_dir(cfg, node) / "data").mkdir(parents=True, exist_ok=True)
    _kafka_log4j(cfg)
    props = _kafka_properties(cfg, node)
    paths = cfg.paths
    if not (_kafka_dir(cfg, node) / "data" / "meta.properties").exists():
        id_file = cfg.state / "kafka" / "cluster.id"
        if not id_file.exists():
            id_file.write_text(new_cluster_id() + "\n")
        subprocess.run(java_command(paths, "kafka.tools.StorageTool", "format", "-t", id_file.read_text().strip(),
                             "-c", str(props)),
                       check=True, capture_output=True)  # the output is in the exception on failure
    return spawn(paths, name, java_command(paths, "kafka.Kafka", str(props), heap="384m"))


def kafka_brokers_alive(cfg: ClusterConfig) -> int:
    """How many brokers the cluster's metadata lists (registered and not fenced)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": cfg.kafka_brokers, "socket.timeout.ms": 3000, "log_level": 0})
    return len(admin.list_topics(timeout=3).brokers)


def create_topics(cfg: ClusterConfig, partitions_by_topic: dict[str, int], timeout: float = 30.0) -> list[str]:
    """Create the missing topics with replication factor 3 and min.insync.replicas 2."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": cfg.kafka_brokers})
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [NewTopic(name, int(n), REPLICATION_FACTOR, config={"min.insync.replicas": str(MIN_INSYNC_REPLICAS)})
              for name, n in partitions_by_topic.items() if name not in existing]
    created = []
    for name, future in (admin.create_topics(wanted, operation_timeout=timeout) if wanted else {}).items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise StackError(f"could not create topic {name} on the cluster: {exc.args[0]}") from None
    return created


def partition_leaders(cfg: ClusterConfig, topic: str) -> dict[int, int]:
    """{partition: node id of its leader} of ``topic`` (-1 while it has none)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": cfg.kafka_brokers, "log_level": 0})
    meta = admin.list_topics(topic, timeout=10).topics[topic]
    return {p.id: p.leader for p in meta.partitions.values()}


# ---------------------------------------------------------------- Spark standalone

def _spark_env() -> dict[str, str]:
    return {"SPARK_LOCAL_IP": LOOPBACK, "SPARK_DAEMON_MEMORY": "256m",
            "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}


def _spark_properties(cfg: ClusterConfig) -> Path:
    folder = cfg.state / "spark"
    folder.mkdir(parents=True, exist_ok=True)
    props = folder / "spark-defaults.conf"
    props.write_text("spark.master.rest.enabled false\nspark.ui.reverseProxy false\n"
                     "spark.worker.cleanup.enabled true\n")
    return props


def start_spark_master(cfg: ClusterConfig) -> int:
    pid = running_pid(cfg, "spark-master")
    if pid:
        return pid
    for port in (cfg.spark_port, cfg.spark_ui_port):
        ensure_port_free(port, "the Spark master")
    argv = [str(VENV_BIN / "spark-class"), MASTER_CLASS, "--host", LOOPBACK, "--port", str(cfg.spark_port),
            "--webui-port", str(cfg.spark_ui_port), "--properties-file", str(_spark_properties(cfg))]
    return spawn(cfg.paths, "spark-master", argv, env=_spark_env())


def start_spark_worker(cfg: ClusterConfig, worker: int) -> int:
    name = cfg.spark_worker(worker)
    pid = running_pid(cfg, name)
    if pid:
        return pid
    ensure_port_free(cfg.worker_ui_ports[worker - 1], f"{name} of the cluster")
    work = cfg.state / "spark" / name
    work.mkdir(parents=True, exist_ok=True)
    argv = [str(VENV_BIN / "spark-class"), WORKER_CLASS, "--host", LOOPBACK,
            "--cores", str(cfg.worker_cores), "--memory", cfg.worker_memory,
            "--webui-port", str(cfg.worker_ui_ports[worker - 1]), "--work-dir", str(work),
            "--properties-file", str(_spark_properties(cfg)), cfg.master_url]
    return spawn(cfg.paths, name, argv, env=_spark_env())


def spark_workers_alive(cfg: ClusterConfig) -> int:
    """How many workers the master lists as ALIVE (its UI's JSON)."""
    url = f"http://{LOOPBACK}:{cfg.spark_ui_port}/json/"
    with urllib.request.urlopen(url, timeout=3) as resp:  # loopback only
        state = json.load(resp)
    return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")


# ---------------------------------------------------------------- commands

def write_env_file(cfg: ClusterConfig) -> None:
    cfg.paths.env_file.write_text(
        "# Written by `make cluster-up` (devstack.cluster): the cluster's Kafka; PostgreSQL, Redis and\n"
        f"# MLflow stay those of .stack/stack.env. Spark master: {cfg.master_url}\n"
        f"KAFKA_BROKERS={cfg.kafka_brokers}\n"
    )


def up(cfg: ClusterConfig | None = None, topics: dict[str, int] | None = None) -> ClusterConfig:
    """Start what is not running and wait until 3 brokers and 2 workers answer; create ``topics``
    (default: the stack's three topics) with replication factor 3."""
    cfg = cfg or cluster_config()
    cfg.state.mkdir(parents=True, exist_ok=True)
    paths = cfg.paths
    pids = {cfg.kafka_node(n): start_kafka_node(cfg, n) for n in range(1, KAFKA_NODES + 1)}
    pids["spark-master"] = start_spark_master(cfg)
    wait_until(lambda: port_in_use(cfg.spark_port), "spark-master", 120, paths, pids["spark-master"])
    for w in range(1, SPARK_WORKERS + 1):  # after the master listens: no registration back-off
        pids[cfg.spark_worker(w)] = start_spark_worker(cfg, w)
    for n in range(1, KAFKA_NODES + 1):
        name = cfg.kafka_node(n)
        wait_until(lambda: port_in_use(cfg.kafka_ports[n - 1]), name, 120, paths, pids[name])  # noqa: B023
    wait_until(lambda: kafka_brokers_alive(cfg) == KAFKA_NODES, "kafka-1", 120, paths)
    create_topics(cfg, topics if topics is not None else _stack_topics())
    wait_until(lambda: spark_workers_alive(cfg) == SPARK_WORKERS, "spark-master", 120, paths)
    write_env_file(cfg)
    return cfg


def _stack_topics() -> dict[str, int]:
    from fraudops.settings import load_settings

    settings = load_settings()
    return {settings.kafka_topic: TOPICS["banking-transactions"],
            settings.kafka_alerts_topic: TOPICS["fraud-alerts"],
            settings.kafka_labels_topic: TOPICS["transaction-labels"]}


def down(cfg: ClusterConfig | None = None) -> list[str]:
    """Stop the job started by ``make stream-cluster-bg``, the workers (with their executors),
    the master and the Kafka nodes: only our processes, by PID. Returns what was stopped."""
    cfg = cfg or cluster_config()
    stopped = _stop_job(cfg)
    stopped += _stop_all(cfg, [cfg.spark_worker(w) for w in range(1, SPARK_WORKERS + 1)])
    stopped += _stop_all(cfg, ["spark-master"])
    stopped += _stop_all(cfg, [cfg.kafka_node(n) for n in range(1, KAFKA_NODES + 1)])
    return stopped


JOB = "streaming"


def _job_alive(pid: int | None) -> bool:
    """Whether ``pid`` is our spark-submit job (the script execs java ...SparkSubmit ... the job)."""
    cmd = cmdline(pid) if pid is not None and is_alive(pid) else ""
    return "SparkSubmit" in cmd or "spark-submit" in cmd


def start_job(cfg: ClusterConfig, argv: list[str]) -> int:
    """Run ``argv`` (the spark-submit line) in the background; ``down`` stops it first."""
    pid = read_pid(cfg.paths, JOB)
    if _job_alive(pid):
        print(f"the cluster job already runs (pid {pid}); log: {cfg.paths.log_file(JOB)}")
        return pid
    pid = spawn(cfg.paths, JOB, argv)
    print(f"cluster job started (pid {pid}); log: {cfg.paths.log_file(JOB)}")
    return pid


def _stop_job(cfg: ClusterConfig) -> list[str]:
    pid = read_pid(cfg.paths, JOB)
    alive = _job_alive(pid)
    if alive:
        terminate(pid, timeout=60)
        _end_group(pid)  # the job's Python driver is the JVM's child: never leave it behind
    cfg.paths.pid_file(JOB).unlink(missing_ok=True)
    return [JOB] if alive else []


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of the process group ``pgid``."""
    members = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(proc.name))
    return members


def _end_group(pgid: int, timeout: float = 30.0) -> None:
    """Wait until no live process of group ``pgid`` is left; SIGKILL the group after ``timeout``.
    (A zombie leader, e.g. the unreaped child of the process that started the cluster, counts as gone.)"""
    deadline = time.monotonic() + timeout
    while _group_members(pgid) and time.monotonic() < deadline + 5:
        if time.monotonic() > deadline:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                return
        time.sleep(0.2)


def clean(cfg: ClusterConfig | None = None) -> None:
    cfg = cfg or cluster_config()
    down(cfg)
    shutil.rmtree(cfg.state, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m devstack.cluster`` (start-job's command follows ``--``)."""
    from fraudops.cli import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m devstack.cluster", formatter_class=HelpFormatter,
                                     description="a local Spark standalone + 3-node Kafka cluster")
    parser.add_argument("command", choices=["up", "down", "status", "clean", "submit-args", "start-job"],
                        help="up / down / status / clean the cluster; submit-args: spark-submit's options "
                             "for it; start-job: run the command after -- in the background")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = build_parser()
    args = parser.parse_args(own)
    cfg = cluster_config()
    try:
        if args.command == "up":
            started = time.monotonic()
            already = running(cfg)
            up(cfg)
            print(f"cluster up in {time.monotonic() - started:.1f}s "
                  f"({'already running' if len(already) == len(cfg.processes) else 'started'}): "
                  f"Spark {cfg.master_url} (UI http://{LOOPBACK}:{cfg.spark_ui_port}), "
                  f"Kafka {cfg.kafka_brokers}; env file {cfg.paths.env_file}")
        elif args.command == "down":
            stopped = down(cfg)
            print(f"cluster stopped: {', '.join(stopped)}" if stopped else "cluster: nothing running")
        elif args.command == "status":
            live = running(cfg)
            for name in cfg.processes:
                print(f"{name:15s} {'running pid ' + str(live[name]) if name in live else 'stopped'}")
            return 0 if len(live) == len(cfg.processes) else 1
        elif args.command == "clean":
            clean(cfg)
            print(f"removed {cfg.state}")
        elif args.command == "submit-args":
            print(" ".join(spark_submit_args(cfg)))
        elif args.command == "start-job":
            if not command:
                parser.error("start-job: give the spark-submit command after --")
            start_job(cfg, command)
    except (StackError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
