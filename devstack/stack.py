"""The local stack of real services, without Docker: Kafka (KRaft), PostgreSQL, Redis, MLflow.

Reads: the pinned jars in .cache/jars (``make setup``), Debian's postgresql and redis-server.
Writes: everything under the state folder (``.stack/`` or FRAUDOPS_STATE_DIR): data, logs, PID
files and ``stack.env`` (generated passwords; every command of the project reads it).

Commands::

    python -m devstack.stack up        # start what is not running, wait until each answers
    python -m devstack.stack down      # stop only the processes it started (by PID); keep data
    python -m devstack.stack clean     # down, then remove the state folder
    python -m devstack.stack status    # which of our processes are alive
    python -m devstack.stack verify-stopped   # non-zero if any process of ours still runs
    python -m devstack.stack start-service redis / stop-service redis
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from fraudops.settings import PROJECT_ROOT, default_env_file, default_state_dir, read_env_file

JARS_DIR = PROJECT_ROOT / ".cache" / "jars"
SERVICE_ORDER = ("postgres", "redis", "kafka", "mlflow")
TOPICS = {"banking-transactions": 4, "fraud-alerts": 1, "transaction-labels": 1}


class StackError(RuntimeError):
    """A stack operation failed; the message says which service and what to do."""


@dataclass(frozen=True)
class StackPaths:
    state: Path
    env_file: Path

    def __getattr__(self, name: str) -> Path:  # logs, pids, postgres, redis, kafka, mlflow
        if name in {"logs", "pids", "postgres", "redis", "kafka", "mlflow"}:
            return self.state / name
        raise AttributeError(name)

    def pid_file(self, service: str) -> Path:
        return self.state / "pids" / f"{service}.pid"

    def log_file(self, service: str) -> Path:
        return self.state / "logs" / f"{service}.log"


def stack_paths(env: dict[str, str] | None = None) -> StackPaths:
    env = dict(os.environ if env is None else env)
    return StackPaths(state=default_state_dir(env).resolve(), env_file=default_env_file(env))


# ---------------------------------------------------------------- configuration and secrets

def _port_from(value: str, default: int) -> int:
    try:
        return int(value.rsplit(":", 1)[1]) if ":" in value else default
    except ValueError as exc:
        raise StackError(f"cannot read a port from {value!r}") from exc


def stack_config(paths: StackPaths) -> dict[str, str]:
    """The stack's variables: existing env file values, else generated (passwords) or defaults."""
    current = read_env_file(paths.env_file)
    env = {**current, **{k: v for k, v in os.environ.items() if k in _DEFAULTS}}

    def pick(key: str, default: str) -> str:
        return env.get(key) or default

    cfg = {key: pick(key, default) for key, default in _DEFAULTS.items()}
    for key in _SECRETS:
        cfg[key] = env.get(key) or secrets.token_urlsafe(24)
    cfg["MLFLOW_TRACKING_URI"] = pick("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{cfg['MLFLOW_PORT']}")
    return cfg


_DEFAULTS = {
    "KAFKA_BROKERS": "127.0.0.1:9092",
    "KAFKA_CONTROLLER_PORT": "9093",
    "KAFKA_TOPIC": "banking-transactions",
    "KAFKA_ALERTS_TOPIC": "fraud-alerts",
    "KAFKA_LABELS_TOPIC": "transaction-labels",
    "POSTGRES_HOST": "127.0.0.1",
    "POSTGRES_PORT": "5432",
    "POSTGRES_USER": "fraud",
    "POSTGRES_DB": "frauddb",
    "REDIS_HOST": "127.0.0.1",
    "REDIS_PORT": "6379",
    "MLFLOW_PORT": "5000",
    "MODEL_NAME": "fraud-detector",
    "MODEL_URI": "models:/fraud-detector/Production",
}
_SECRETS = ("POSTGRES_PASSWORD", "POSTGRES_SUPERUSER_PASSWORD", "MLFLOW_DB_PASSWORD", "REDIS_PASSWORD")


def write_env_file(paths: StackPaths, cfg: dict[str, str]) -> None:
    paths.env_file.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Written by `make stack-up` (devstack.stack). Local secrets: never commit this file."]
    lines += [f"{key}={cfg[key]}" for key in sorted(cfg)]
    tmp = paths.env_file.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.chmod(0o600)
    tmp.replace(paths.env_file)


# ---------------------------------------------------------------- processes

def read_pid(paths: StackPaths, service: str) -> int | None:
    try:
        return int(paths.pid_file(service).read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def is_ours(paths: StackPaths, service: str) -> int | None:
    """The PID of our running ``service`` (its command line names our state folder), else None."""
    if service == "postgres":
        pid_path = paths.postgres / "data" / "postmaster.pid"
        try:
            pid = int(pid_path.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
    else:
        pid = read_pid(paths, service)
    if pid is None:
        return None
    marker = _MARKERS[service]
    cmd = _cmdline(pid)
    return pid if cmd and marker in cmd and _state_marker(paths, service) in cmd else None


_MARKERS = {"postgres": "postgres", "redis": "redis-server", "kafka": "kafka.Kafka", "mlflow": "mlflow"}


def _state_marker(paths: StackPaths, service: str) -> str:
    # every process we start names a path under the state folder on its command line
    return str(paths.state)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def ensure_port_free(port: int, service: str) -> None:
    if port_in_use(port):
        raise StackError(
            f"port {port} for {service} is already taken by another process; stop it or set "
            f"another port for {service} (see README, 'Configuration')"
        )


def spawn(paths: StackPaths, service: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start ``argv`` detached, output to the service's log, PID to its PID file."""
    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.pids.mkdir(parents=True, exist_ok=True)
    log = open(paths.log_file(service), "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, env={**os.environ, **(env or {})}, cwd=str(PROJECT_ROOT),
    )
    log.close()
    paths.pid_file(service).write_text(f"{proc.pid}\n")
    return proc.pid


def wait_until(check, service: str, timeout: float, paths: StackPaths, pid: int | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - not ready yet
            last = str(exc)
        if pid is not None and not _alive(pid):
            break
        time.sleep(0.5)
    tail = _log_tail(paths.log_file(service))
    raise StackError(f"{service} did not become ready within {timeout:.0f}s ({last}); log tail:\n{tail}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def terminate(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.2)


# ---------------------------------------------------------------- PostgreSQL

def pg_bin(name: str) -> str:
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    if not candidates:
        raise StackError(f"PostgreSQL's {name} not found; install it with `make setup`")
    return str(candidates[0])


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def start_postgres(paths: StackPaths, cfg: dict[str, str]) -> None:
    port = int(cfg["POSTGRES_PORT"])
    data = paths.postgres / "data"
    if is_ours(paths, "postgres"):
        return
    ensure_port_free(port, "PostgreSQL")
    if not (data / "PG_VERSION").exists():
        _initdb(paths, cfg)
    run_dir = paths.postgres / "run"
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={run_dir}"
    subprocess.run(
        _as_postgres([pg_bin("pg_ctl"), "-D", str(data), "-l", str(paths.log_file("postgres")),
                      "-o", opts, "-w", "-t", "60", "start"]),
        check=True, stdout=subprocess.DEVNULL,
    )
    wait_until(lambda: _pg_connect(cfg, "postgres", cfg["POSTGRES_SUPERUSER_PASSWORD"], "postgres"),
               "postgres", 60, paths)
    _ensure_pg_roles(cfg)


def _initdb(paths: StackPaths, cfg: dict[str, str]) -> None:
    data = paths.postgres / "data"
    for sub in ("data", "run"):
        (paths.postgres / sub).mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    pwfile = paths.postgres / "pwfile"
    pwfile.write_text(cfg["POSTGRES_SUPERUSER_PASSWORD"] + "\n")
    pwfile.chmod(0o600)
    if os.geteuid() == 0:
        shutil.chown(paths.postgres, "postgres", "postgres")
        for path in (data, paths.postgres / "run", pwfile):
            shutil.chown(path, "postgres", "postgres")
        log = paths.log_file("postgres")
        log.touch()
        shutil.chown(log, "postgres", "postgres")
    try:
        subprocess.run(
            _as_postgres([pg_bin("initdb"), "-D", str(data), "--username=postgres",
                          f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8",
                          "--locale=C.UTF-8"]),
            check=True, stdout=subprocess.DEVNULL,
        )
    finally:
        pwfile.unlink(missing_ok=True)


def _pg_connect(cfg: dict[str, str], user: str, password: str, dbname: str):
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=int(cfg["POSTGRES_PORT"]), user=user,
                            password=password, dbname=dbname, connect_timeout=3)
    conn.autocommit = True
    return conn


def _ensure_pg_roles(cfg: dict[str, str]) -> None:
    """Application role + database and the `mlflow` role + database (idempotent)."""
    from psycopg2 import sql

    wanted = [(cfg["POSTGRES_USER"], cfg["POSTGRES_PASSWORD"], cfg["POSTGRES_DB"]),
              ("mlflow", cfg["MLFLOW_DB_PASSWORD"], "mlflow")]
    conn = _pg_connect(cfg, "postgres", cfg["POSTGRES_SUPERUSER_PASSWORD"], "postgres")
    try:
        with conn.cursor() as cur:
            for role, password, db in wanted:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(sql.SQL(verb + " ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)))
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                if not cur.fetchone():
                    cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(db), sql.Identifier(role)))
    finally:
        conn.close()


def stop_postgres(paths: StackPaths) -> None:
    if is_ours(paths, "postgres"):
        subprocess.run(_as_postgres([pg_bin("pg_ctl"), "-D", str(paths.postgres / "data"),
                                     "-m", "fast", "-w", "stop"]),
                       check=False, stdout=subprocess.DEVNULL)


# ---------------------------------------------------------------- Redis

def start_redis(paths: StackPaths, cfg: dict[str, str]) -> None:
    if is_ours(paths, "redis"):
        return
    port = int(cfg["REDIS_PORT"])
    ensure_port_free(port, "Redis")
    redis_server = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(redis_server).exists():
        raise StackError("redis-server not found; install it with `make setup`")
    paths.redis.mkdir(parents=True, exist_ok=True)
    conf = paths.redis / "redis.conf"
    conf.write_text(
        f"bind 127.0.0.1\nport {port}\nprotected-mode yes\nrequirepass {cfg['REDIS_PASSWORD']}\n"
        f"dir {paths.redis}\ndaemonize no\nsave 60 1000\nappendonly no\nlogfile \"\"\n"
        # keep the config path in the process title, so stack-down can recognise our server
        'proc-title-template "{title} {listen-addr} {config-file}"\n'
    )
    conf.chmod(0o600)
    pid = spawn(paths, "redis", [redis_server, str(conf)])
    wait_until(lambda: _redis_ping(cfg), "redis", 30, paths, pid)


def _redis_ping(cfg: dict[str, str]) -> bool:
    import redis

    client = redis.Redis(host="127.0.0.1", port=int(cfg["REDIS_PORT"]), password=cfg["REDIS_PASSWORD"],
                         socket_timeout=2, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    finally:
        client.close()


# ---------------------------------------------------------------- Kafka

def _java_classpath(name: str) -> str:
    folder = JARS_DIR / name
    if not any(folder.glob("*.jar")):
        raise StackError(f"Kafka jars missing in {folder}; fetch them with `make setup`")
    return f"{folder}/*"


def _kafka_properties(paths: StackPaths, cfg: dict[str, str]) -> Path:
    port = _port_from(cfg["KAFKA_BROKERS"].split(",")[0], 9092)
    ctl = int(cfg["KAFKA_CONTROLLER_PORT"])
    props = paths.kafka / "server.properties"
    props.write_text("\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.bootstrap.servers=127.0.0.1:{ctl}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctl}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctl}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={paths.kafka / 'data'}",
        "num.partitions=1",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=true",
        # large enough for the hostile-input tests (a 10 MB message must reach the quarantine)
        "message.max.bytes=16777216",
        "replica.fetch.max.bytes=16777216",
        "log.retention.hours=168",
    ]) + "\n")
    log4j = paths.kafka / "log4j2.properties"
    log4j.write_text(
        "status = warn\nappender.console.type = Console\nappender.console.name = STDOUT\n"
        "appender.console.layout.type = PatternLayout\n"
        "appender.console.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = INFO\nrootLogger.appenderRef.console.ref = STDOUT\n"
        "logger.kafka.name = kafka\nlogger.kafka.level = WARN\n"
        "logger.apache.name = org.apache.kafka\nlogger.apache.level = WARN\n"
    )
    return props


def _java(paths: StackPaths, main_class: str, *args: str, heap: str = "256m") -> list[str]:
    return ["java", f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={paths.kafka / 'log4j2.properties'}",
            "-cp", _java_classpath("kafka-broker"), main_class, *args]


def start_kafka(paths: StackPaths, cfg: dict[str, str]) -> None:
    if is_ours(paths, "kafka"):
        return
    port = _port_from(cfg["KAFKA_BROKERS"].split(",")[0], 9092)
    ensure_port_free(port, "Kafka")
    ensure_port_free(int(cfg["KAFKA_CONTROLLER_PORT"]), "Kafka controller")
    (paths.kafka / "data").mkdir(parents=True, exist_ok=True)
    props = _kafka_properties(paths, cfg)
    if not (paths.kafka / "data" / "meta.properties").exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        subprocess.run(_java(paths, "kafka.tools.StorageTool", "format", "--standalone",
                             "-t", cluster_id, "-c", str(props)),
                       check=True, stdout=subprocess.DEVNULL)
    pid = spawn(paths, "kafka", _java(paths, "kafka.Kafka", str(props), heap="1g"))
    wait_until(lambda: _kafka_ready(cfg), "kafka", 90, paths, pid)
    _create_topics(cfg)


def _kafka_ready(cfg: dict[str, str]) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": cfg["KAFKA_BROKERS"], "socket.timeout.ms": 3000})
    meta = admin.list_topics(timeout=3)
    return bool(meta.brokers)


def _create_topics(cfg: dict[str, str]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": cfg["KAFKA_BROKERS"]})
    names = {cfg["KAFKA_TOPIC"]: TOPICS["banking-transactions"],
             cfg["KAFKA_ALERTS_TOPIC"]: TOPICS["fraud-alerts"],
             cfg["KAFKA_LABELS_TOPIC"]: TOPICS["transaction-labels"]}
    existing = set(admin.list_topics(timeout=10).topics)
    new = [NewTopic(name, num_partitions=n, replication_factor=1)
           for name, n in names.items() if name not in existing]
    for name, future in (admin.create_topics(new) if new else {}).items():
        try:
            future.result(timeout=30)
        except Exception as exc:  # noqa: BLE001
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise StackError(f"could not create Kafka topic {name}: {exc}") from exc


# ---------------------------------------------------------------- MLflow

def start_mlflow(paths: StackPaths, cfg: dict[str, str]) -> None:
    if is_ours(paths, "mlflow"):
        return
    port = int(cfg["MLFLOW_PORT"])
    ensure_port_free(port, "MLflow")
    artifacts = paths.mlflow / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    backend = (f"postgresql+psycopg2://mlflow:{cfg['MLFLOW_DB_PASSWORD']}@127.0.0.1:"
               f"{cfg['POSTGRES_PORT']}/mlflow")
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    argv = [mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
            "--artifacts-destination", str(artifacts)]
    pid = spawn(paths, "mlflow", argv, env={"MLFLOW_BACKEND_STORE_URI": backend})
    wait_until(lambda: _http_ok(f"http://127.0.0.1:{port}/health"), "mlflow", 120, paths, pid)


def _http_ok(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - loopback only
        return resp.status == 200


# ---------------------------------------------------------------- commands

STARTERS = {"postgres": start_postgres, "redis": start_redis, "kafka": start_kafka, "mlflow": start_mlflow}


def up(paths: StackPaths | None = None) -> dict[str, str]:
    paths = paths or stack_paths()
    paths.state.mkdir(parents=True, exist_ok=True)
    cfg = stack_config(paths)
    write_env_file(paths, cfg)
    for service in SERVICE_ORDER:
        started = is_ours(paths, service) is None
        STARTERS[service](paths, cfg)
        if service == "postgres":
            _migrate(cfg)
        print(f"{service:9s} {'started' if started else 'already running'}", flush=True)
    return cfg


def _migrate(cfg: dict[str, str]) -> None:
    from fraudops.db import apply_migrations

    conn = _pg_connect(cfg, cfg["POSTGRES_USER"], cfg["POSTGRES_PASSWORD"], cfg["POSTGRES_DB"])
    conn.autocommit = False
    try:
        apply_migrations(conn)
    finally:
        conn.close()


def stop_service(paths: StackPaths, service: str) -> bool:
    """Stop one of our services; returns True when something was stopped."""
    pid = is_ours(paths, service)
    if pid is None:
        paths.pid_file(service).unlink(missing_ok=True)
        return False
    if service == "postgres":
        stop_postgres(paths)
    else:
        terminate(pid)
    paths.pid_file(service).unlink(missing_ok=True)
    return True


def start_service(paths: StackPaths, service: str) -> None:
    cfg = stack_config(paths)
    STARTERS[service](paths, cfg)


def down(paths: StackPaths | None = None) -> None:
    paths = paths or stack_paths()
    for service in ("streaming", "producer", *reversed(SERVICE_ORDER)):
        if service in STARTERS:
            stopped = stop_service(paths, service)
        else:
            stopped = _stop_app_process(paths, service)
        if stopped:
            print(f"{service:9s} stopped", flush=True)


def _stop_app_process(paths: StackPaths, name: str) -> bool:
    """Stop an application process started by the Makefile (e.g. the streaming job)."""
    pid = read_pid(paths, name)
    running = pid is not None and _alive(pid) and str(PROJECT_ROOT) in _cmdline(pid)
    if running:
        terminate(pid)
    paths.pid_file(name).unlink(missing_ok=True)
    return running


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def our_processes(paths: StackPaths | None = None) -> list[tuple[int, str]]:
    """Live processes of ours: their command line names our state folder, or they run in the
    project folder (MLflow's workers, the streaming job's Python workers). Our own ancestors
    (make, the CI shell) are left out."""
    paths = paths or stack_paths()
    skip = _ancestors()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in skip or not _alive(int(proc.name)):
            continue
        cmd = _cmdline(int(proc.name))
        try:
            cwd = os.readlink(proc / "cwd")
        except OSError:
            cwd = ""
        in_project = cwd == str(PROJECT_ROOT) or cwd.startswith(str(PROJECT_ROOT) + "/")
        if cmd and (str(paths.state) in cmd or in_project):
            found.append((int(proc.name), cmd[:160]))
    return found


def clean(paths: StackPaths | None = None) -> None:
    paths = paths or stack_paths()
    down(paths)
    if paths.state.exists():
        shutil.rmtree(paths.state)
    print(f"removed {paths.state}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="local stack: Kafka, PostgreSQL, Redis, MLflow")
    parser.add_argument("command", choices=["up", "down", "clean", "status", "verify-stopped",
                                            "start-service", "stop-service"])
    parser.add_argument("service", nargs="?", choices=SERVICE_ORDER)
    args = parser.parse_args(argv)
    paths = stack_paths()
    try:
        if args.command == "up":
            up(paths)
            print(f"env file: {paths.env_file}")
        elif args.command == "down":
            down(paths)
        elif args.command == "clean":
            clean(paths)
        elif args.command == "status":
            for service in SERVICE_ORDER:
                pid = is_ours(paths, service)
                print(f"{service:9s} {'running pid ' + str(pid) if pid else 'stopped'}")
        elif args.command == "verify-stopped":
            left = our_processes(paths)
            for pid, cmd in left:
                print(f"still running: pid {pid}: {cmd}")
            return 1 if left else 0
        elif args.command in ("start-service", "stop-service"):
            if not args.service:
                parser.error("argument service: required for start-service/stop-service")
            if args.command == "start-service":
                start_service(paths, args.service)
            else:
                stop_service(paths, args.service)
    except (StackError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
