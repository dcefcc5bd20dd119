"""The local stack of real services, without Docker: PostgreSQL, Redis (alert cache and online
feature store), Kafka (KRaft) and MLflow, on 127.0.0.1. This module orders them; each service's
own module (devstack/postgres.py, redis.py, kafka.py, mlflow.py) starts it and waits for the
product's readiness check of it (fraudops.health).

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
import shutil
import subprocess
import sys

from devstack import postgres, processes
from devstack.config import stack_config, write_env_file
from devstack.kafka import start_kafka
from devstack.mlflow import start_mlflow
from devstack.paths import StackError, StackPaths, stack_paths
from devstack.redis import start_feature_store, start_redis

SERVICE_ORDER = ("postgres", "redis", "feature-store", "kafka", "mlflow")
STARTERS = {"postgres": postgres.start_postgres, "redis": start_redis, "feature-store": start_feature_store,
            "kafka": start_kafka, "mlflow": start_mlflow}
APP_PROCESSES = ("streaming", "producer", "portal", "decisions")  # started by devstack.jobs; stopped first by `down`


def up(paths: StackPaths | None = None) -> dict[str, str]:
    """Write the env file, start every service that is not running (in order), migrate."""
    paths = paths or stack_paths()
    paths.state.mkdir(parents=True, exist_ok=True)
    cfg = stack_config(paths)
    write_env_file(paths, cfg)
    for service in SERVICE_ORDER:
        started = processes.is_ours(paths, service) is None
        STARTERS[service](paths, cfg)
        if service == "postgres" and not started:
            postgres.migrate(cfg)  # new migration files reach a server that was already running
        print(f"{service:13s} {'started' if started else 'already running'}", flush=True)
    return cfg


def start_service(paths: StackPaths, service: str) -> None:
    STARTERS[service](paths, stack_config(paths))


def stop_service(paths: StackPaths, service: str) -> bool:
    """Stop one of our services; returns True when something was stopped."""
    pid = processes.is_ours(paths, service)
    if pid is None:
        paths.pid_file(service).unlink(missing_ok=True)
        return False
    if service == "postgres":
        postgres.stop_postgres(paths)
    else:
        processes.terminate(pid)
    paths.pid_file(service).unlink(missing_ok=True)
    return True


def down(paths: StackPaths | None = None) -> None:
    """Stop the application processes, then the services in reverse order (by PID; data kept)."""
    paths = paths or stack_paths()
    for name in APP_PROCESSES:
        if processes.stop_app_process(paths, name):
            print(f"{name:13s} stopped", flush=True)
    for service in reversed(SERVICE_ORDER):
        if stop_service(paths, service):
            print(f"{service:13s} stopped", flush=True)


def clean(paths: StackPaths | None = None) -> None:
    paths = paths or stack_paths()
    down(paths)
    if paths.state.exists():
        shutil.rmtree(paths.state)
    print(f"removed {paths.state}")


def status(paths: StackPaths) -> None:
    for service in SERVICE_ORDER:
        pid = processes.is_ours(paths, service)
        print(f"{service:13s} {'running pid ' + str(pid) if pid else 'stopped'}")


def verify_stopped(paths: StackPaths) -> int:
    left = processes.our_processes(paths)
    for pid, cmd in left:
        print(f"still running: pid {pid}: {cmd}")
    return 1 if left else 0


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m devstack.stack``."""
    from fraudops.cli import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m devstack.stack", formatter_class=HelpFormatter,
                                     description="local stack: PostgreSQL, Redis, Kafka, MLflow")
    parser.add_argument("command", choices=["up", "down", "clean", "status", "verify-stopped",
                                            "start-service", "stop-service"],
                        help="up: start what is not running; down: stop what the stack started; clean: down and "
                             "delete .stack; status; verify-stopped: fail if a process is left; "
                             "start-service / stop-service: one service")
    parser.add_argument("service", nargs="?", choices=SERVICE_ORDER,
                        help="the service of start-service / stop-service (default: none)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("start-service", "stop-service") and not args.service:
        parser.error("argument service: required for start-service/stop-service")
    paths = stack_paths()
    commands = {
        "up": lambda: up(paths) and print(f"env file: {paths.env_file}"),
        "down": lambda: down(paths),
        "clean": lambda: clean(paths),
        "status": lambda: status(paths),
        "verify-stopped": lambda: verify_stopped(paths),
        "start-service": lambda: start_service(paths, args.service),
        "stop-service": lambda: stop_service(paths, args.service),
    }
    try:
        result = commands[args.command]()
    except (StackError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return result if args.command == "verify-stopped" else 0


if __name__ == "__main__":
    raise SystemExit(main())
